"""Real containers, as root: the memory knobs only cgroup v1 has
(``swappiness``, ``disableOOMKiller``, ``kernelTCP``) read back from the
container's memory cgroup, and ``memory.kernel`` ignored with its warning
in the create event, as runc 1.1 ignores it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

MEMORY = Path("/sys/fs/cgroup/memory")
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
