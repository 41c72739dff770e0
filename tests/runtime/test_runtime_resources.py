"""Real containers, as root: the cgroup v1 settings runc writes and runlog
now writes too, read back from the container's cgroups.

The memory knobs only cgroup v1 has (``swappiness``, ``disableOOMKiller``,
``kernelTCP``), with ``memory.kernel`` ignored with its warning in the
create event, as runc 1.1 ignores it; ``blockIO`` throttles, and a
``blockIO`` weight or ``network`` class the host cannot take failing the
create as runc's fails, leaving nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

MEMORY = Path("/sys/fs/cgroup/memory")
BLKIO = Path("/sys/fs/cgroup/blkio")
MiB = 1024 * 1024


def action_result(runlog: Any, cid: str, action: str) -> dict[str, Any]:
    [result] = [
        a["result"] for a in runlog.payload(cid, "create")["actions"] if a["action"] == action
    ]
    return dict(result)


def test_swappiness_oom_killer_and_tcp_memory_are_in_the_v1_cgroup(
    runlog: Any, bundle: Any
) -> None:
    wanted = ("memory.swappiness", "memory.oom_control", "memory.kmem.tcp.limit_in_bytes")
    missing = [name for name in wanted if not (MEMORY / name).exists()]
    if missing:
        pytest.skip(f"no cgroup v1 memory hierarchy with {', '.join(missing)} on this host")

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["memory"] = {
            "limit": 64 * MiB,
            "swappiness": 10,
            "disableOOMKiller": True,
            "kernel": 32 * MiB,
            "kernelTCP": 16 * MiB,
        }

    b = bundle(["sleep", "60"], edit)
    runlog("create", "t-mem", "-b", str(b), check=True)
    cgroups_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    cgroup = MEMORY / cgroups_path.lstrip("/")
    assert (cgroup / "memory.swappiness").read_text().strip() == "10"
    assert "oom_kill_disable 1" in (cgroup / "memory.oom_control").read_text().splitlines()
    assert int((cgroup / "memory.kmem.tcp.limit_in_bytes").read_text()) == 16 * MiB
    assert int((cgroup / "memory.limit_in_bytes").read_text()) == 64 * MiB
    assert action_result(runlog, "t-mem", "cgroup.create") == {
        "warning": "linux.resources.memory.kernel ignored: kernel memory limits are "
        "deprecated (runc 1.1 ignores them too)"
    }
    runlog("delete", "--force", "t-mem", check=True)


def test_swappiness_out_of_range_is_refused_and_leaves_nothing(runlog: Any, bundle: Any) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["memory"] = {"swappiness": 101}

    out = runlog("create", "t-swap", "-b", str(bundle(["true"], edit)))
    assert out.returncode == 1
    assert "linux.resources.memory.swappiness: invalid memory swappiness value: 101" in out.stderr
    assert not (runlog.root / "t-swap").exists()
    assert [e[2] for e in runlog.events("t-swap")] in (["rejected"], ["failed"])


def a_disk() -> tuple[int, int]:
    """major, minor of a whole disk of the host (throttles take no partition)."""
    for disk in sorted(Path("/sys/block").iterdir()):
        if not disk.name.startswith(("loop", "ram", "zram")):
            major, minor = (disk / "dev").read_text().split(":")
            return int(major), int(minor)
    pytest.skip("no disk on this host to throttle")


def test_block_io_throttles_are_in_the_v1_cgroup(runlog: Any, bundle: Any) -> None:
    if not (BLKIO / "blkio.throttle.read_bps_device").exists():
        pytest.skip("no cgroup v1 blkio hierarchy with throttles on this host")
    major, minor = a_disk()

    def edit(spec: dict[str, Any]) -> None:
        device = {"major": major, "minor": minor}
        spec["linux"]["resources"]["blockIO"] = {
            "throttleReadBpsDevice": [{**device, "rate": 8 * MiB}],
            "throttleWriteIOPSDevice": [{**device, "rate": 300}],
        }

    b = bundle(["sleep", "60"], edit)
    runlog("create", "t-blkio", "-b", str(b), check=True)
    cgroups_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    cgroup = BLKIO / cgroups_path.lstrip("/")
    read_bps = (cgroup / "blkio.throttle.read_bps_device").read_text().split()
    assert read_bps == [f"{major}:{minor}", str(8 * MiB)]
    write_iops = (cgroup / "blkio.throttle.write_iops_device").read_text().split()
    assert write_iops == [f"{major}:{minor}", "300"]
    assert action_result(runlog, "t-blkio", "cgroup.create") == {}
    runlog("delete", "--force", "t-blkio", check=True)


def test_what_the_host_cannot_take_fails_the_create_and_leaves_nothing(
    runlog: Any, bundle: Any
) -> None:
    """runc fails these here too: a blkio weight without CFQ or BFQ, a
    net_cls class without a net_cls hierarchy."""
    cases = []
    weights = [BLKIO / name for name in ("blkio.weight", "blkio.bfq.weight")]
    if BLKIO.exists() and not any(path.exists() for path in weights):
        cases.append(("blockIO", {"weight": 500}, "blkio.bfq.weight does not exist"))
    if not Path("/sys/fs/cgroup/net_cls").exists():
        cases.append(("network", {"classID": 1048577}, "net_cls"))
    if not cases:
        pytest.skip("this host takes blockIO weights and network classes")
    for n, (key, value, message) in enumerate(cases):

        def edit(spec: dict[str, Any], key: str = key, value: object = value) -> None:
            spec["linux"]["resources"][key] = value

        cid = f"t-cannot{n}"
        out = runlog("create", cid, "-b", str(bundle(["true"], edit)))
        assert out.returncode == 1
        assert message in out.stderr
        assert not (runlog.root / cid).exists()
        assert runlog.events(cid) == [("create", None, "failed")]
