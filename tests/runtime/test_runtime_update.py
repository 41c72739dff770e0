"""``runlog update``: runc's flags and ``-r FILE`` change the container's
real cgroup files; the event has the values before and after."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.cgroups.mounts import parse_proc_cgroup

pytestmark = [pytest.mark.root]

Bundle = Callable[..., Path]


def _cgroup_file(pid: int, controller: str, name: str) -> Path:
    """The file ``name`` of the cgroup ``pid`` is in (v1 ``controller``, else v2)."""
    own = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    if controller in own:
        return Path(f"/sys/fs/cgroup/{controller}{own[controller]}/{name}")
    if "" in own:
        mount = "/sys/fs/cgroup/unified" if Path("/sys/fs/cgroup/unified").is_dir() else ""
        return Path(f"{mount or '/sys/fs/cgroup'}{own['']}/{name}")
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _updates(db: Path, cid: str) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT outcome, payload FROM events WHERE container_id = ? AND "trigger" = ? '
            "ORDER BY seq",
            (cid, "update"),
        ).fetchall()
    return [(str(o), json.loads(p)) for o, p in rows]


def test_update_changes_the_cgroup_files_and_records_before_and_after(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    runlog("run", "-d", "u-1", "-b", str(bundle(["sleep", "60"])), check=True)
    pid = runlog.state("u-1")["pid"]
    memory = _cgroup_file(pid, "memory", "memory.limit_in_bytes")
    pids = _cgroup_file(pid, "pids", "pids.max")
    quota = _cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
    if not (memory.exists() and pids.exists() and quota.exists()):
        pytest.skip("this test reads cgroup v1 memory, pids and cpu files")
    runlog(
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "u-1",
        check=True,
    )
    assert memory.read_text().strip() == str(64 << 20)
    assert pids.read_text().strip() == "50"
    assert quota.read_text().strip() == "50000"
    (tmp_path / "r.json").write_text(
        json.dumps({"memory": {"limit": 128 << 20}, "pids": {"limit": -1}})
    )
    runlog("update", "-r", str(tmp_path / "r.json"), "u-1", check=True)
    assert memory.read_text().strip() == str(128 << 20)
    assert pids.read_text().strip() == "max"
    (first, one), (second, two) = _updates(runlog.db, "u-1")
    assert (first, second) == ("ok", "ok")
    result = one["actions"][0]["result"]
    assert result["after"]["memory.limit_in_bytes"] == str(64 << 20)
    assert result["before"]["pids.max"] == "max" and result["after"]["pids.max"] == "50"
    assert two["actions"][0]["result"]["before"]["memory.limit_in_bytes"] == str(64 << 20)
    assert two["request"]["resources"] == {"memory": {"limit": 128 << 20}, "pids": {"limit": -1}}
    assert runlog.state("u-1")["status"] == "running"
    # What runlog does not set is refused, and recorded.
    blkio = runlog("update", "--blkio-weight", "100", "u-1")
    assert blkio.returncode == 1 and "blockIO" in blkio.stderr
    bad = runlog("update", "--memory", "lots", "u-1")
    assert bad.returncode == 1 and "invalid value for --memory" in bad.stderr
    runlog("kill", "u-1", "KILL", check=True)
    runlog.wait_status("u-1", "stopped")
    stopped = runlog("update", "--pids-limit", "10", "u-1")
    assert stopped.returncode == 1 and "container not running" in stopped.stderr
    outcomes = [o for o, _ in _updates(runlog.db, "u-1")]
    # blkio failed in the machine; a bad value refused on the command line;
    # a stopped container refused by the machine
    assert outcomes == ["ok", "ok", "failed", "rejected", "rejected"]
    runlog("delete", "u-1", check=True)


def test_update_sets_swap_shares_and_cpusets(runlog: Any, bundle: Bundle) -> None:
    runlog("run", "-d", "u-2", "-b", str(bundle(["sleep", "60"])), check=True)
    pid = runlog.state("u-2")["pid"]
    files = {
        "--cpu-share": (_cgroup_file(pid, "cpu", "cpu.shares"), "512", "512"),
        "--cpuset-cpus": (_cgroup_file(pid, "cpuset", "cpuset.cpus"), "0", "0"),
        "--cpuset-mems": (_cgroup_file(pid, "cpuset", "cpuset.mems"), "0", "0"),
        "--memory-swap": (
            _cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes"),
            "96m",
            str(96 << 20),
        ),
    }
    present = {flag: f for flag, f in files.items() if f[0].exists()}
    if not present:
        pytest.skip("no cgroup v1 cpu, cpuset or swap-accounting files here")
    args = [a for flag, (_, value, _) in present.items() for a in (flag, value)]
    if "--memory-swap" in present:
        args += ["--memory", "64m"]  # swap is memory plus swap: not below it
    runlog("update", *args, "u-2", check=True)
    for flag, (path, _, expected) in present.items():
        assert path.read_text().strip() == expected, flag
    ((outcome, payload),) = _updates(runlog.db, "u-2")
    after = payload["actions"][0]["result"]["after"]
    assert outcome == "ok"
    for path, _, expected in present.values():
        assert after[path.name] == expected, path.name
    runlog("delete", "--force", "u-2", check=True)
