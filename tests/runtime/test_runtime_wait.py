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
        if bind:
            doc = runlog.wait_status(cid, "stopped")
            assert doc["status"] == "stopped", doc
            # Recorded as the waiter's kill, SIGKILL to every process.
            [(outcome, pid, payload)] = _kills(runlog, cid)
            assert (outcome, pid) == ("ok", proc.pid), payload
            assert '"signal": 9' in json.dumps(payload) and '"all": true' in json.dumps(payload)
        else:
            # An unbound waiter is only a waiter.
            time.sleep(0.5)
            assert runlog.state(cid)["status"] == "running"
            assert _kills(runlog, cid) == []
        runlog("delete", "--force", cid, check=True)
