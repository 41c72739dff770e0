"""The bundle ``runc spec`` writes on this host, run by runlog and by runc.

Slurm's guide (and most tutorials) make bundles with ``runc spec``: its
config.json asks for ambient capabilities without an inheritable set, runs
``sh`` on a terminal, has a read-only root and no cgroupsPath. The bundles
here are that file as runc wrote it, with only the rootfs filled with
busybox (and, for the capability check, only ``args`` changed), and the
same bundle goes through runc side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    # runc writes the bundle: without it there is nothing to run.
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

# `runc spec`'s capabilities, the same three in every set it writes but
# inheritable, in number order: all three ambient ones are dropped.
DROPPED = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
RUNC_SPEC_HEX = "0000000020000420"  # bits 5, 10 and 29
NO_CAPS_HEX = "0000000000000000"


def runc_spec_bundle(directory: Path, args: list[str] | None = None) -> Path:
    """A busybox rootfs and config.json exactly as ``runc spec`` writes it
    (``args`` replaced only if given, nothing else in it changed)."""
    make_busybox_bundle(str(directory))
    (directory / "config.json").unlink()
    subprocess.run(["runc", "spec"], cwd=directory, check=True, capture_output=True)
    if args is not None:
        path = directory / "config.json"
        spec = json.loads(path.read_text())
        assert spec["process"]["args"] == ["sh"]
        spec["process"]["args"] = args
        path.write_text(json.dumps(spec, indent="\t"))
    return directory


def cgroups_of(parent: str, cid: str) -> list[Path]:
    """The container's directories in every hierarchy that has one."""
    return [d for d in Path("/sys/fs/cgroup").glob(f"*/{parent}{cid}") if d.is_dir()]


def status_field(text: str, field: str) -> str:
    """``field``'s value in the /proc/PID/status text a terminal echoed back."""
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return line.split()[1]
    raise AssertionError(f"no {field} in {text!r}")


def test_runc_spec_bundle_runs_with_its_ambient_capabilities_dropped(
    runlog: Any, runc: Any, consoles: Callable[[str], Any], tmp_path: Path
) -> None:
    # Only args changed: print the capability sets (after a marker, so the
    # terminal's echo of nothing typed cannot be mistaken for them).
    args = ["sh", "-c", "echo sets; grep Cap /proc/self/status"]
    b = runc_spec_bundle(tmp_path / "bundle", args)
    with keep_default_cgroup_parent():
        ours = consoles("runlog.sock")
        runlog("create", "caps", "-b", str(b), "--console-socket", str(ours.path), check=True)
        runlog("start", "caps", check=True)
        assert runlog.wait_status("caps", "stopped")["exitCode"] == 0
        seen = ours.wait_for("CapAmb:")
        runlog("delete", "caps", check=True)
        theirs = consoles("runc.sock")
        runc("create", "caps", "-b", str(b), "--console-socket", str(theirs.path))
        runc("start", "caps")
        runc_seen = theirs.wait_for("CapAmb:")
        runc("delete", "--force", "caps")
    for field in ("CapPrm", "CapEff", "CapBnd"):
        assert status_field(seen, field) == status_field(runc_seen, field) == RUNC_SPEC_HEX
    # The kernel raises no ambient capability that is not inheritable: none.
    for field in ("CapInh", "CapAmb"):
        assert status_field(seen, field) == status_field(runc_seen, field) == NO_CAPS_HEX
    spawn = runlog.payload("caps", "create")["actions"][1]
    assert spawn["action"] == "process.spawn_init"
    assert spawn["result"]["ambient_dropped"] == DROPPED
    assert spawn["result"]["warning"] == (
        "capabilities: ambient: dropped CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE "
        "(not in the inheritable set); the kernel raises an ambient capability only if "
        "it is also permitted and inheritable"
    )
    assert runlog.events("caps") == [
        ("create", "created", "ok"),
        ("start", "running", "ok"),
        ("exit", "stopped", "ok"),
        ("delete", "deleted", "ok"),
    ]
    assert not cgroups_of("runlog/", "caps")
    assert not cgroups_of("", "caps")


def lifecycle(
    run: Callable[..., subprocess.CompletedProcess[str]],
    state: Callable[[str], dict[str, Any]],
    cid: str,
    bundle: Path,
    console: Any,
) -> dict[str, Any]:
    """create/start/state/kill/delete of ``runc spec``'s unchanged bundle
    with one runtime (``run(*args, check=...)``, ``state(cid)``); what each
    step showed."""
    seen: dict[str, Any] = {}
    run("create", cid, "-b", str(bundle), "--console-socket", str(console.path), check=True)
    seen["created"] = state(cid)
    run("start", cid, check=True)
    seen["running"] = state(cid)
    # The interactive shell on the terminal, from inside the container,
    # once it has shown its prompt.
    console.wait_for("# ")
    console.type("grep CapAmb /proc/self/status; echo done-$((6*7))\n")
    seen["terminal"] = console.wait_for("done-42")
    run("kill", cid, "KILL", check=True)
    deadline = time.monotonic() + 10
    while state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    seen["stopped"] = state(cid)
    run("delete", cid, check=True)
    seen["after"] = run("state", cid, check=False)
    seen["list"] = run("list", "-q", check=True).stdout.split()
    return seen


def test_runc_spec_bundle_unchanged_through_the_lifecycle(
    runlog: Any, runc: Any, consoles: Callable[[str], Any], tmp_path: Path
) -> None:
    b = runc_spec_bundle(tmp_path / "bundle")
    with keep_default_cgroup_parent():
        mine = lifecycle(runlog, runlog.state, "plain", b, consoles("runlog.sock"))
        assert not cgroups_of("runlog/", "plain")
        reference = lifecycle(runc, runc.state, "plain", b, consoles("runc.sock"))
        assert not cgroups_of("", "plain")
    for got in (mine, reference):
        assert got["created"]["status"] == "created"
        assert got["created"]["pid"] > 0
        assert got["running"]["status"] == "running"
        assert got["running"]["pid"] == got["created"]["pid"]
        assert got["stopped"]["status"] == "stopped"
        # The shell's own sets, read on its terminal: no ambient capability.
        assert "CapAmb:\t0000000000000000" in got["terminal"]
        assert got["after"].returncode != 0
        assert "plain" not in got["list"]
    # runlog's state has every field runc's has.
    assert set(mine["created"]) >= set(reference["created"])
    assert runlog.events("plain") == [
        ("create", "created", "ok"),
        ("start", "running", "ok"),
        ("kill", "running", "ok"),
        ("exit", "stopped", "ok"),
        ("delete", "deleted", "ok"),
        ("state", None, "rejected"),  # asked after the delete
    ]
    spawn = runlog.payload("plain", "create")["actions"][1]["result"]
    assert spawn["ambient_dropped"] == DROPPED
