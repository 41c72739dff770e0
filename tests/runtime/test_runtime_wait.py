"""``runlog wait --bind``: the container tied to the waiting process, for a
scheduler that signals only the processes it started (Slurm 22.05's
create/start mode, whose step tracks ``RunTimeStart``'s process tree: the
monitor and the init are not in it). Signals to the waiter reach the init;
a waiter killed before the init ends takes the container with it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.runtime.conftest import REPO

Bundle = Callable[..., Path]


def _waiter(runlog: Any, cid: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    proc = subprocess.Popen(
        [*argv, "wait", "--bind", cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    # Until the monitor holds the wait: the waiter's connection is open.
    monitor = runlog.state(cid)["pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _connected(proc.pid):
        time.sleep(0.05)
    assert monitor and _connected(proc.pid), proc.stderr.read() if proc.stderr else ""
    return proc


def _connected(pid: int) -> bool:
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def _kills(runlog: Any, cid: str) -> list[tuple[str, int, Any]]:
    """The container's kill events: outcome, who asked (pid), payload."""
    with sqlite3.connect(runlog.db) as conn:
        rows = conn.execute(
            "SELECT outcome, actor_pid, payload FROM events "
            'WHERE container_id = ? AND "trigger" = ? ORDER BY seq',
            (cid, "kill"),
        ).fetchall()
    return [(str(o), int(p), json.loads(d)) for o, p, d in rows]


def test_signals_to_a_bound_waiter_reach_the_init(runlog: Any, bundle: Bundle) -> None:
    b = str(bundle(["sh", "-c", "trap 'exit 143' TERM; sleep 300 & wait"]))
    runlog("run", "-d", "t-bound", "-b", b, check=True)
    proc = _waiter(runlog, "t-bound")
    try:
        time.sleep(0.3)  # the shell has set its trap
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (143, "143\n"), err
    assert runlog.state("t-bound")["status"] == "stopped"
    runlog("delete", "t-bound", check=True)


def test_a_killed_bound_waiter_takes_the_container_along(runlog: Any, bundle: Bundle) -> None:
    # pid 1 without a handler ignores SIGTERM: only SIGKILL ends it, which
    # the waiter cannot forward.
    b = str(bundle(["sleep", "300"]))
    for bind in (True, False):
        cid = f"t-killed-{int(bind)}"
        runlog("run", "-d", cid, "-b", b, check=True)
        if bind:
            proc = _waiter(runlog, cid)
        else:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "--root", str(runlog.root),
                 "--db", str(runlog.db), "wait", cid],
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            time.sleep(1)
        proc.kill()
        proc.communicate(timeout=10)
        _killed_along_if_bound(runlog, cid, proc.pid, bind)


def _killed_along_if_bound(runlog: Any, cid: str, pid: int, bind: bool) -> None:
    """After the client ``pid`` was killed: bound, the container is killed by
    a kill recorded as that client's (SIGKILL to every process); not bound,
    it runs on and nobody killed it. Then it is deleted."""
    if bind:
        doc = runlog.wait_status(cid, "stopped", timeout=20)
        assert doc["status"] == "stopped", doc
        [(outcome, by, payload)] = _kills(runlog, cid)
        assert (outcome, by) == ("ok", pid), payload
        assert '"signal": 9' in json.dumps(payload) and '"all": true' in json.dumps(payload)
    else:
        time.sleep(0.5)
        assert runlog.state(cid)["status"] == "running"
        assert _kills(runlog, cid) == []
    runlog("delete", "--force", cid, check=True)


# -- start --bind: the bond made before the start ----------------------------


def _starter(runlog: Any, cid: str, bind: bool = True) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    return subprocess.Popen(
        [*argv, "start", *(["--bind"] if bind else []), cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _triggers(runlog: Any, cid: str) -> list[tuple[str, str, int | None]]:
    with sqlite3.connect(runlog.db) as conn:
        rows = conn.execute(
            'SELECT "trigger", outcome, actor_pid FROM events WHERE container_id = ? ORDER BY seq',
            (cid,),
        ).fetchall()
    return [(str(t), str(o), p) for t, o, p in rows]


def _until(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_start_bind_starts_and_exits_with_the_init(runlog: Any, bundle: Bundle) -> None:
    b = str(bundle(["sh", "-c", "echo out; exit 3"]))
    runlog("create", "t-sb", "-b", b, check=True)
    proc = _starter(runlog, "t-sb")
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (3, "3\n"), err
    assert runlog.state("t-sb")["status"] == "stopped"
    triggers = [t for t, o, _p in _triggers(runlog, "t-sb") if o == "ok"]
    assert triggers[:3] == ["create", "start", "exit"], triggers
    runlog("delete", "t-sb", check=True)


def test_start_bind_killed_during_the_start_takes_the_container_along(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path
) -> None:
    """Killed while the monitor is still in the start (a slow poststart
    hook): the bond was made with the start, so the container is killed
    with it, by a kill recorded as the starter's. A plain ``start`` killed
    there (the first half of ``start && exec wait --bind``) leaves the
    container running, bound to nothing."""
    for bind in (True, False):
        cid = f"t-sbk-{int(bind)}"
        mark = tmp_path / f"in-poststart-{int(bind)}"
        edit = shell_hook(f"slow{int(bind)}", f"touch {mark}; sleep 3\n", "poststart")
        b = str(bundle(["sleep", "300"], edit))
        runlog("create", cid, "-b", b, check=True)
        proc = _starter(runlog, cid, bind)
        try:
            _until(mark.exists, "the poststart hook never ran")
            proc.kill()
            proc.communicate(timeout=10)
            # The monitor finishes the start (the hook's 3 s), then acts.
            runlog.wait_status(cid, "stopped" if bind else "running", timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        _killed_along_if_bound(runlog, cid, proc.pid, bind)


def test_start_bind_forwards_a_signal_that_comes_during_the_start(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path
) -> None:
    mark = tmp_path / "in-poststart"
    edit = shell_hook("slow", f"touch {mark}; sleep 2\n", "poststart")
    b = str(bundle(["sh", "-c", "trap 'exit 143' TERM; sleep 300 & wait"], edit))
    runlog("create", "t-sbt", "-b", b, check=True)
    proc = _starter(runlog, "t-sbt")
    try:
        _until(mark.exists, "the poststart hook never ran")
        time.sleep(0.3)  # the shell has set its trap
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (143, "143\n"), err
    [(outcome, pid, payload)] = _kills(runlog, "t-sbt")
    assert (outcome, pid) == ("ok", proc.pid) and '"signal": 15' in json.dumps(payload), payload
    runlog("delete", "t-sbt", check=True)


def test_start_bind_killed_before_its_request_leaves_the_container_created(
    runlog: Any, bundle: Bundle
) -> None:
    b = str(bundle(["sleep", "300"]))
    runlog("create", "t-sbc", "-b", b, check=True)
    proc = _starter(runlog, "t-sbc")
    proc.kill()  # before the interpreter is even up
    proc.communicate(timeout=10)
    time.sleep(0.3)
    assert runlog.state("t-sbc")["status"] == "created"
    assert [t for t, _o, _p in _triggers(runlog, "t-sbc")] == ["create"]
    runlog("delete", "--force", "t-sbc", check=True)


def test_start_bind_refused_answers_with_why_and_binds_nothing(
    runlog: Any, bundle: Bundle, shell_hook: Any
) -> None:
    # Already running: refused, as start is (runc's words and exit code).
    b = str(bundle(["sleep", "300"]))
    runlog("run", "-d", "t-sbr", "-b", b, check=True)
    proc = _starter(runlog, "t-sbr")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == "", (out, err)
    assert err.strip() == runlog("start", "t-sbr").stderr.strip(), err
    assert "t-sbr" in err and len(err.strip().splitlines()) == 1, err
    # Nothing was bound: the refused starter is gone, the container runs on.
    time.sleep(0.3)
    assert runlog.state("t-sbr")["status"] == "running"
    assert _kills(runlog, "t-sbr") == []
    runlog("delete", "--force", "t-sbr", check=True)
    # A start that fails (a poststart hook that fails stops the container,
    # spec 1.3): the start's error, not an exit status.
    edit = shell_hook("fail", "exit 7\n", "poststart")
    b = str(bundle(["sleep", "300"], edit))
    runlog("create", "t-sbf", "-b", b, check=True)
    proc = _starter(runlog, "t-sbf")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode not in (0, 137) and out == "", (proc.returncode, out, err)
    assert "t-sbf" in err and "poststart" in err, err
    assert runlog.state("t-sbf")["status"] == "stopped"
    runlog("delete", "t-sbf", check=True)
