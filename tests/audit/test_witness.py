"""The witness: what root recorded of a log catches the log's owner rewriting
it whole (every hash computed again), with the first altered position; a
deleted log is said to be deleted; a record root does not own is refused.
The witness runs in-process here; tests/runtime/test_runtime_witness.py
runs it as a command, beside a real user and real containers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.audit.witness import Record, Witness, record_path
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor
from tests.tamper import tamper

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the witness runs as root")


def append(log: Path, count: int, start: int = 0) -> None:
    actor = Actor(1000, 7, "cli", "alice", 1000, {})
    with SQLiteStore(str(log), synchronous="OFF") as store:
        for i in range(start, start + count):
            store.append(NewEvent(f"c{i % 3}", "kill", "running", None, "ok", actor, "d" * 64))


def verify(log: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "--db", str(log), "audit", "--verify", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def place(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    witness = tmp_path / "witness"
    log = tmp_path / "events.db"
    append(log, 8)
    yield log, witness
    shutil.rmtree(witness, ignore_errors=True)


def witnessed(log: Path, witness: Path) -> Witness:
    seen = Witness(str(witness))
    seen.add(str(log))
    seen.look_all()
    return seen


@pytest.mark.parametrize(
    ("kind", "position", "says"),
    [
        ("edited", 5, "event 5 is not the event the witness saw"),
        ("deleted", 5, "event 5 was witnessed but is not in the log (removed)"),
        ("inserted", 5, "event 5 is not the event the witness saw"),
        ("truncated", 6, "event 6 was witnessed but is not in the log (removed)"),
    ],
)
def test_a_log_rewritten_whole_verifies_alone_but_not_against_its_witness(
    place: tuple[Path, Path], kind: str, position: int, says: str
) -> None:
    log, witness = place
    witnessed(log, witness)
    fine = verify(log, "--witness", str(witness))
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "8 events as witnessed, to event 8" in fine.stdout
    tamper(str(log), kind, position)
    alone = verify(log)  # no witness: the recomputed chain holds
    assert alone.returncode == 0 and "chain intact" in alone.stdout, alone.stdout
    caught = verify(log, "--witness", str(witness))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "chain intact" in caught.stdout  # the chain alone cannot tell
    assert says in caught.stdout, caught.stdout


def test_events_after_the_last_witnessed_are_said_and_then_witnessed(
    place: tuple[Path, Path],
) -> None:
    log, witness = place
    seen = witnessed(log, witness)
    append(log, 2, start=8)
    done = verify(log, "--witness", str(witness))
    assert done.returncode == 0
    assert "8 events as witnessed, to event 8; 2 events since, not yet witnessed" in done.stdout
    assert seen.look_all() == 2
    assert "10 events as witnessed, to event 10\n" in verify(log, "--witness", str(witness)).stdout


def test_the_witness_stops_following_an_altered_log_and_says_so_once(
    place: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, witness = place
    seen = witnessed(log, witness)
    tamper(str(log), "edited", 3)
    append(log, 2, start=8)
    assert seen.look_all() == 0 and seen.look_all() == 0
    err = capsys.readouterr().err
    assert err.count("event 8 differs from what it witnessed") == 1, err
    record = Record.read(record_path(str(witness), str(log)))
    assert record.lives[-1].last_id == 8  # nothing of the altered log recorded


def test_a_pruned_log_still_agrees_with_its_witness(place: tuple[Path, Path]) -> None:
    log, witness = place
    seen = witnessed(log, witness)
    with sqlite3.connect(log) as conn:
        (cut,) = conn.execute("SELECT time_ns FROM events WHERE id = 5").fetchone()
    from engine.eventlog.prune import prune_sqlite

    prune_sqlite(str(log), int(cut))
    append(log, 1, start=8)
    assert seen.look_all() == 1
    done = verify(log, "--witness", str(witness))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 events as witnessed, to event 9" in done.stdout


def test_a_deleted_log_is_said_to_be_and_an_old_history_put_back_is_caught(
    place: tuple[Path, Path], tmp_path: Path
) -> None:
    log, witness = place
    seen = witnessed(log, witness)
    shutil.copyfile(log, tmp_path / "old.db")
    for name in (log, Path(f"{log}-wal"), Path(f"{log}-shm")):
        name.unlink(missing_ok=True)
    gone = verify(log, "--witness", str(witness))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "log deleted; last witnessed head event 8" in gone.stdout
    assert verify(log).returncode == 1  # without the witness: no such log
    seen.look_all()  # the witness sees it gone: that life ends
    append(log, 2)  # a new log at the path: a new life
    seen.look_all()
    new = verify(log, "--witness", str(witness))
    assert new.returncode == 0, new.stdout
    assert "log deleted at" in new.stdout and "last witnessed head event 8" in new.stdout
    assert "2 events as witnessed, to event 2" in new.stdout
    # The old log put back in place of the new: dated before the deletion.
    for name in (log, Path(f"{log}-wal"), Path(f"{log}-shm")):
        name.unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "old.db", log)
    back = verify(log, "--witness", str(witness))
    assert back.returncode == 1
    assert "event 1 is dated before the log the witness saw here was deleted" in back.stdout


def test_a_record_or_directory_root_does_not_own_is_not_trusted(
    place: tuple[Path, Path],
) -> None:
    log, witness = place
    witnessed(log, witness)
    record = record_path(str(witness), str(log))
    os.chown(record, 1000, 1000)
    done = verify(log, "--witness", str(witness))
    assert done.returncode == 1 and "owned by uid 1000, not root: not trusted" in done.stderr
    os.chown(record, 0, 0)
    witness.chmod(0o777)
    done = verify(log, "--witness", str(witness))
    assert done.returncode == 1 and "writable by others (mode 0777)" in done.stderr
    witness.chmod(0o755)
    assert verify(log, "--witness", str(witness)).returncode == 0
    missing = verify(log, "--witness", str(witness / "nowhere"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
