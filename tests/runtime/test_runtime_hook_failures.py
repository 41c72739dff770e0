"""Real containers whose hooks fail: what goes on, what stops, what is left.

runtime.md: a poststop hook that fails is a warning, and the remaining
hooks and the lifecycle continue; a poststart hook that fails stops the
container (spec 1.3), which ``state`` then says at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]


def hook_script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def action(payload: dict[str, Any], label: str) -> dict[str, Any]:
    """One action's record in an ok event's payload."""
    found = [a for a in payload["actions"] if a["action"] == label]
    assert len(found) == 1, payload
    record: dict[str, Any] = found[0]
    return record


def test_poststop_hooks_after_two_failing_ones_still_run(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    log = tmp_path / "poststop.log"
    first = hook_script(tmp_path, "first", f"echo first >> {log}\necho busy >&2\nexit 1\n")
    second = hook_script(tmp_path, "second", f"echo second >> {log}\necho gone >&2\nexit 2\n")
    third = hook_script(tmp_path, "third", f"cat > {tmp_path}/third.json\necho third >> {log}\n")

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"poststop": [{"path": p} for p in (first, second, third)]}

    runlog("create", "t-poststop", "-b", str(bundle(["true"], edit)), check=True)
    runlog("start", "t-poststop", check=True)
    assert runlog.wait_status("t-poststop", "stopped")["status"] == "stopped"
    out = runlog("delete", "t-poststop")
    assert out.returncode == 0, out.stderr  # the lifecycle goes on: deleted
    assert log.read_text().split() == ["first", "second", "third"]
    assert json.loads((tmp_path / "third.json").read_text())["status"] == "stopped"
    assert runlog("list", "-q", check=True).stdout.split() == []
    assert runlog.events("t-poststop")[-1] == ("delete", "deleted", "ok")
    hook = action(runlog.payload("t-poststop", "delete"), "hook(poststop, warn)")["result"]
    assert [run["exit_code"] for run in hook["runs"]] == [1, 2, 0]
    assert [run["path"] for run in hook["runs"]] == [first, second, third]
    assert hook["warning"] == (
        f"poststop hook {first} exited with status 1: busy; "
        f"poststop hook {second} exited with status 2: gone"
    )


def _poststart_fails(tmp_path: Path) -> Callable[[dict[str, Any]], None]:
    seen = tmp_path / "poststart.json"
    hook = hook_script(tmp_path, "refuse", f"cat > {seen}\necho 'not registered' >&2\nexit 1\n")

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"poststart": [{"path": hook}]}

    return edit


def test_a_failing_poststart_hook_leaves_the_container_stopped_at_once(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    runlog("create", "t-poststart", "-b", str(bundle(["sleep", "60"], _poststart_fails(tmp_path))))
    pid = runlog.state("t-poststart")["pid"]
    out = runlog("start", "t-poststart")
    assert out.returncode == 1
    assert out.stderr.strip().endswith("exited with status 1: not registered")
    assert json.loads((tmp_path / "poststart.json").read_text())["status"] == "running"
    # At once, not after a poll: the start's undo stopped it, and its end is
    # recorded before start's error is answered.
    state = runlog.state("t-poststart")
    assert (state["status"], state["pid"], state["exitCode"]) == ("stopped", 0, 128 + 9)
    assert gone(pid)
    listed = runlog("list", "--format", "json", check=True).stdout
    assert [(c["id"], c["status"]) for c in json.loads(listed)] == [("t-poststart", "stopped")]
    assert runlog.events("t-poststart") == [
        ("create", "created", "ok"),
        ("start", None, "failed"),
        ("exit", "stopped", "ok"),
    ]
    failed = runlog.payload("t-poststart", "start")
    assert failed["action"] == "hook(poststart, abort)"
    assert failed["undone"] == ["process.release"]
    ended = runlog.payload("t-poststart", "exit")
    assert action(ended, "process.collect_status")["result"] == {"signal": 9}
    # The lifecycle continues at delete, which leaves nothing (the fixture
    # checks processes, mounts, cgroups and state directories).
    runlog("delete", "t-poststart", check=True)
    assert runlog("list", "-q", check=True).stdout.split() == []
    assert runlog.events("t-poststart")[-1] == ("delete", "deleted", "ok")


def test_run_with_a_failing_poststart_hook_leaves_nothing(
    runlog: Any, runc: Any, bundle: Bundle, tmp_path: Path
) -> None:
    b = bundle(["sleep", "60"], _poststart_fails(tmp_path))
    out = runlog("run", "t-run", "-b", str(b))
    assert out.returncode == 1
    assert "not registered" in out.stderr
    # As runc's run destroys a container it could not start: nothing listed.
    assert runlog("list", "-q", check=True).stdout.split() == []
    assert runlog("state", "t-run").returncode != 0
    assert not (runlog.root / "t-run").exists()
    assert [e[:2] for e in runlog.events("t-run")] == [
        ("create", "created"),
        ("start", None),
        ("exit", "stopped"),
        ("delete", "deleted"),
        ("state", None),
    ]
    # runc on the same bundle: its run fails and leaves nothing either.
    (tmp_path / "poststart.json").unlink()
    theirs = runc("run", "-d", "-b", str(b), "t-run", check=False)
    assert theirs.returncode == 1
    assert "not registered" in theirs.stderr
    assert runc("list", "-q").stdout.split() == []
    assert os.path.exists(tmp_path / "poststart.json")
