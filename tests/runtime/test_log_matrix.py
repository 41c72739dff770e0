"""Every command against an event log that cannot serve, with real containers.

For each fault - a full disk (a small tmpfs), a read-only mount, a FIFO, a
directory or a corrupt file where the log should be, a schema newer than
this runlog's, another process holding the write lock longer than runlog
waits - every command runs against containers in the states it needs and
must end in success or one line, never a traceback, within the lock's
bound. Once the fault is lifted, the real world, ``state`` and the log
agree for every container, ``delete --force`` leaves nothing, and
``replay --all`` exits 0.

How each fault reaches whom: a full disk and a held lock reach every
process, the containers' monitors too. A read-only mount reaches those
that open the log after it (commands, new monitors): a file already open
for writing keeps its mount writable (the kernel refuses to make it
read-only until it is closed). A newer schema is written into the log
itself, which every process reads on opening it; monitors opened it
before. A FIFO, a directory or a corrupt file is where the commands are
told the log is (``--db``): the running monitors keep the log they opened.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.test_runtime_faults import (
    SLEEP,
    assert_agree,
    fill,
    held_lock,
    replays_clean,
    tmpfs,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]

FAULTS = ["full", "read-only", "fifo", "directory", "corrupt", "newer schema", "locked"]

#: (container, what makes it, the command run against the faulty log).
#: "B" stands for a bundle of its own; "ID" for the container.
CASES: list[tuple[str, list[list[str]], list[str]]] = [
    ("create", [], ["create", "--bundle", "B", "ID"]),
    ("run", [], ["run", "--detach", "--bundle", "B", "ID"]),
    ("start", [["create"]], ["start", "ID"]),
    ("state", [["create"], ["start"]], ["state", "ID"]),
    ("missing", [], ["state", "ID"]),
    ("kill", [["create"], ["start"]], ["kill", "ID", "KILL"]),
    ("pause", [["create"], ["start"]], ["pause", "ID"]),
    ("resume", [["create"], ["start"], ["pause"]], ["resume", "ID"]),
    ("delete", [["create"], ["start"], ["kill", "KILL"]], ["delete", "ID"]),
    ("force", [["create"], ["start"]], ["delete", "--force", "ID"]),
    ("exec", [["create"], ["start"]], ["exec", "ID", "true"]),
    ("update", [["create"], ["start"]], ["update", "--pids-limit", "100", "ID"]),
    ("stats", [["create"], ["start"]], ["events", "--stats", "ID"]),
    ("ps", [["create"], ["start"]], ["ps", "ID"]),
    ("wait", [["create"], ["start"], ["kill", "KILL"]], ["wait", "ID"]),
    ("ctl", [["create"], ["start"]], ["ctl", "ID", '{"op": "state"}']),
    (
        "spool",
        [["create"], ["start"]],
        ["ctl", "--spool", "--timeout", "20", "ID", '{"op": "state"}'],
    ),
    ("orphan", [["create"], ["start"], ["MONITOR"]], ["state", "ID"]),
    ("orphankill", [["create"], ["start"], ["MONITOR"]], ["kill", "ID", "KILL"]),
    ("orphanforce", [["create"], ["start"], ["MONITOR"]], ["delete", "--force", "ID"]),
    ("list", [], ["list"]),
    ("history", [["create"]], ["history", "ID"]),
    ("audit", [], ["audit"]),
    ("replay", [], ["replay", "--all"]),
    ("db", [], ["db", "current"]),
    ("unknown", [["create"]], ["fly", "ID"]),
]


@pytest.fixture
def place(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The log's directory: an 8 MiB tmpfs for "full", else a directory."""
    directory = tmp_path / "log"
    directory.mkdir(mode=0o700)
    if request.node.callspec.params["fault"] != "full":
        yield directory
        return
    with tmpfs(directory, mode="0700"):
        yield directory


def _set_up(runlog: Any, bundle: Bundle) -> dict[str, list[str]]:
    """Every case's container in its state; each case's command, ready."""
    commands: dict[str, list[str]] = {}
    for cid, steps, command in CASES:
        path = str(bundle(SLEEP))
        for step in steps:
            if step == ["MONITOR"]:
                info = json.loads((runlog.root / cid / "runtime.json").read_text())
                os.kill(info["monitor_pid"], signal.SIGKILL)
                monitor = Path(f"/proc/{info['monitor_pid']}")
                assert wait_for(lambda monitor=monitor: not monitor.exists())
                continue
            args = ["--bundle", path] if step[0] == "create" else []
            runlog(step[0], *args, cid, *step[1:], check=True)
            if step[0] == "kill":
                assert runlog.wait_status(cid, "stopped")["status"] == "stopped"
        commands[cid] = [path if w == "B" else cid if w == "ID" else w for w in command]
    return commands


@contextmanager
def _fault(fault: str, runlog: Any, tmp_path: Path) -> Iterator[None]:
    """The log made faulty for what runs inside; lifted after."""
    db = runlog.db
    with sqlite3.connect(db) as conn:  # all of it in the file, none in the -wal
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if fault == "full":
        filler = fill(db.parent)
        try:
            yield
        finally:
            filler.unlink()
    elif fault == "read-only":
        directory = str(db.parent)
        subprocess.run(["mount", "--bind", "-o", "ro", directory, directory], check=True)
        try:
            yield
        finally:
            # Lifted as an admin would: read-write again. A monitor that
            # woke meanwhile holds the log open through this mount, so it
            # is detached lazily; it stays the same directory.
            subprocess.run(["mount", "-o", "remount,bind,rw", directory], check=True)
            subprocess.run(["umount", "--lazy", directory], check=True)
    elif fault == "newer schema":
        with sqlite3.connect(db) as conn:
            (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        try:
            yield
        finally:
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE alembic_version SET version_num = ?", (head,))
    elif fault == "locked":
        from engine.eventlog.sqlite import LOCK_WAIT

        with held_lock(db, LOCK_WAIT + 15):
            yield
    else:
        bad = tmp_path / "bad" / "events.db"
        bad.parent.mkdir(mode=0o700)
        if fault == "fifo":
            os.mkfifo(bad, 0o600)
        elif fault == "directory":
            bad.mkdir()
        else:  # corrupt: SQLite's header, then nothing it can read
            bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
            bad.chmod(0o600)
        runlog.db = bad
        try:
            yield
        finally:
            runlog.db = db


def _run_all(
    runlog: Any, commands: dict[str, list[str]], together: bool
) -> dict[str, tuple[float, subprocess.CompletedProcess[str]]]:
    results: dict[str, tuple[float, subprocess.CompletedProcess[str]]] = {}

    def call(cid: str) -> None:
        began = time.monotonic()
        done = runlog(*commands[cid], timeout=60)
        results[cid] = (time.monotonic() - began, done)

    if not together:
        for cid in commands:
            call(cid)
        return results
    threads = [threading.Thread(target=call, args=(cid,)) for cid in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _monitors(runlog: Any, commands: dict[str, list[str]]) -> dict[str, int]:
    """The live monitor of each case's container."""
    found = {}
    for cid in commands:
        try:
            info = json.loads((runlog.root / cid / "runtime.json").read_text())
        except FileNotFoundError:
            continue
        if Path(f"/proc/{info['monitor_pid']}").exists():
            found[cid] = info["monitor_pid"]
    return found


@pytest.mark.parametrize("monitors", ["awake", "rested"])
@pytest.mark.parametrize("fault", FAULTS)
def test_every_command_against_a_faulty_log(
    runlog: Any,
    bundle: Bundle,
    tmp_path: Path,
    place: Path,
    fault: str,
    monitors: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``rested``: every monitor rests (a lean process, engine.runtime.monitor.lean)
    when the fault comes, so the command wakes it and it opens the log again."""
    from engine.eventlog.sqlite import LOCK_WAIT
    from engine.runtime.monitor.handover import resting

    monkeypatch.setenv("RUNLOG_MONITOR_LEAN", "0" if monitors == "rested" else "off")
    runlog.db = place / "events.db"
    commands = _set_up(runlog, bundle)
    before = _monitors(runlog, commands)
    if monitors == "rested":
        assert wait_for(lambda: all(map(resting, before.values()))), before
    with _fault(fault, runlog, tmp_path):
        # A held lock makes each writer wait: all at once, as a busy node would.
        results = _run_all(runlog, commands, together=fault == "locked")
    # No monitor ends of the fault (a deleted container's does).
    gone = {cid for cid, pid in before.items() if not Path(f"/proc/{pid}").exists()}
    assert gone <= {"delete", "force"}, gone
    for cid, (took, done) in results.items():
        what = (cid, commands[cid], done.returncode, done.stderr)
        assert "Traceback" not in done.stderr, what
        # The error, and at most a note (what was not recorded, and why).
        assert len(done.stderr.strip().splitlines()) <= 2, what
        # wait: the init's status; exec: runc's 255 for "exec failed".
        codes = {"wait": (0, 1, 137), "exec": (0, 1, 255)}.get(cid, (0, 1))
        assert done.returncode in codes, what
        assert took < LOCK_WAIT + 10, what
    # The fault lifted: the monitors write their journals into the log (a
    # container without one has its journal written by the next command
    # that records for it), and the world, `state` and the log agree on
    # every container.
    for cid in commands:
        journal = runlog.root / cid / "journal"
        if (runlog.root / cid / "state.json").exists() and not cid.startswith("orphan"):
            assert wait_for(lambda journal=journal: not journal.exists()), cid
    for cid in commands:
        statedir = runlog.root / cid
        if statedir.exists() and not (statedir / "state.json").exists():
            # A delete the log refused left its journal where the state was:
            # delete --force writes it into the log (docs/faults.md).
            assert [p.name for p in statedir.iterdir()] == ["journal"], cid
            runlog("delete", "--force", cid, check=True)
        assert_agree(runlog, cid)
    for cid in commands:
        deleted = runlog("delete", "--force", cid)
        assert deleted.returncode == 0, (cid, deleted.stderr)
        assert not (runlog.root / cid).exists(), cid
        assert assert_agree(runlog, cid) is None
    replays_clean(runlog)
