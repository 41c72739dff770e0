"""``--cgroup-manager=disabled`` as root, with real containers: no cgroup of
the container's own (its processes stay in the caller's cgroups, as crun's
``disabled`` leaves them), every verb that needs none working, and the ones
that need one refused, recorded, with nothing left."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import Runlog, cgroup_parent

pytestmark = pytest.mark.root

Bundle = Callable[..., Path]


def _cgroups(pid: int | str) -> dict[str, str]:
    """hierarchy -> path, from /proc/PID/cgroup."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().split()
    return {name: path for _n, name, path in (line.split(":", 2) for line in lines)}


def test_a_container_without_a_cgroup_of_its_own(
    runlog: Runlog, bundle: Bundle, tmp_path: Path
) -> None:
    b = bundle(["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"])
    runlog("--cgroup-manager=disabled", "create", "-b", str(b), "d1", check=True)
    runlog("start", "d1", check=True)
    pid = runlog.state("d1")["pid"]
    # The caller's cgroups (create's, this test's), in every hierarchy;
    # nothing made under the bundle's cgroupsPath.
    assert _cgroups(pid) == _cgroups("self")
    parent = cgroup_parent(tmp_path).strip("/")
    assert list(Path("/sys/fs/cgroup").glob(f"*/{parent}")) == []
    [made] = [
        a["result"]
        for a in runlog.payload("d1", "create")["actions"]
        if a["action"] == "cgroup.create"
    ]
    assert made["cgroups"] == [] and made["cgroup_manager"] == "disabled", made
    # Each hierarchy this process is in (cgroup2's line named "unified").
    mine = {c or "unified" for names in _cgroups("self") for c in names.split(",")}
    assert set(made["cgroups_skipped"]) == mine, made
    # exec joins no cgroup, and runs.
    got = runlog("exec", "d1", "cat", "/proc/self/cgroup", check=True)
    assert sorted(got.stdout.split()) == sorted(Path("/proc/self/cgroup").read_text().split())
    # pause needs a freezer of the container's own: refused as runc refuses it.
    refused = runlog("pause", "d1")
    assert refused.returncode == 1
    assert "cannot toggle freezer: cgroups not configured for container" in refused.stderr
    assert runlog.events("d1")[-1] == ("pause", None, "rejected")
    assert runlog.state("d1")["status"] == "running"
    # kill --all without a cgroup to list: the init, whose pid namespace ends with it.
    runlog("kill", "--all", "d1", "TERM", check=True)
    assert runlog.wait_status("d1", "stopped")["status"] == "stopped"
    runlog("delete", "d1", check=True)
    triggers = [(t, o) for t, _d, o in runlog.events("d1")]
    assert triggers == [
        ("create", "ok"),
        ("start", "ok"),
        ("exec", "ok"),
        ("exec_exit", "ok"),
        ("pause", "rejected"),
        ("kill", "ok"),
        ("exit", "ok"),
        ("delete", "ok"),
    ]
    exit_event = runlog.payload("d1", "exit")
    assert exit_event["actions"][0]["result"]["exit_code"] == 3, exit_event


def test_a_limit_it_cannot_enforce_is_refused_and_nothing_is_left(
    runlog: Runlog, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def limited(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}}

    b = bundle(["true"], limited)
    message = (
        "create d2: cgroup.create: CgroupError: cannot set memory limit: "
        "--cgroup-manager=disabled gives the container no cgroup"
    )
    _refused_at_create(runlog, b, "d2", message, "failed")
    # The variable says the same as the flag.
    monkeypatch.setenv("RUNLOG_CGROUP_MANAGER", "disabled")
    got = runlog("create", "-b", str(b), "d3")
    assert got.returncode == 1 and "--cgroup-manager=disabled" in got.stderr, got.stderr
    assert not (runlog.root / "d3").exists()


def _refused_at_create(runlog: Runlog, b: Path, cid: str, message: str, outcome: str) -> None:
    """``create --cgroup-manager=disabled`` of ``b`` fails with ``message``
    alone on stderr, recorded as ``outcome``, and leaves no state directory."""
    got = runlog("--cgroup-manager=disabled", "create", "-b", str(b), cid)
    assert got.returncode == 1
    assert got.stderr.strip().splitlines() == [message]
    assert not (runlog.root / cid).exists()
    assert [o for _t, _d, o in runlog.events(cid)] == [outcome]


def test_a_container_in_the_hosts_pid_namespace_is_refused(runlog: Runlog, bundle: Bundle) -> None:
    """Without a cgroup, the container's processes are ended through its
    init: only a pid namespace of its own makes that reach them all."""

    def host_pids(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"
        ]

    b = bundle(["true"], host_pids)
    message = (
        "container d4: --cgroup-manager=disabled needs a new pid namespace (linux.namespaces: "
        "pid, without a path): with no cgroup of its own, the container's processes are "
        "ended through its init"
    )
    _refused_at_create(runlog, b, "d4", message, "rejected")
    # With its cgroup, the same bundle runs.
    runlog("create", "-b", str(b), "d5", check=True)
    runlog("delete", "--force", "d5", check=True)
