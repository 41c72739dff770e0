"""Every command against a log that cannot serve: one line, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _corrupt(db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)


def _newer(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")


def _fifo(db: Path) -> None:
    os.mkfifo(db)


def _directory(db: Path) -> None:
    db.mkdir()


def _not_sqlite(db: Path) -> None:
    db.write_text("hello\n")


LOGS: dict[str, Callable[[Path], None]] = {
    "corrupt": _corrupt,
    "newer schema": _newer,
    "fifo": _fifo,
    "directory": _directory,
    "not sqlite": _not_sqlite,
}

COMMANDS = [
    ["state", "missing"],
    ["start", "missing"],
    ["kill", "missing", "KILL"],
    ["delete", "missing"],
    ["delete", "--force", "missing"],
    ["pause", "missing"],
    ["resume", "missing"],
    ["exec", "missing", "true"],
    ["update", "--pids-limit", "10", "missing"],
    ["ps", "missing"],
    ["wait", "missing"],
    ["ctl", "missing", '{"op": "state"}'],
    ["events", "--stats", "missing"],
    ["list"],
    ["history", "missing"],
    ["audit"],
    ["replay", "--all"],
    ["events", "missing"],
    ["db", "current"],
    ["fly", "missing"],
]


@pytest.mark.parametrize("log", sorted(LOGS))
def test_every_command_ends_in_one_line(tmp_path: Path, log: str) -> None:
    db = tmp_path / "events.db"
    LOGS[log](db)
    if db.is_file():
        db.chmod(0o600)  # private already: no note about tightening it
    base = [sys.executable, "-m", "engine", "--root", str(tmp_path / "root"), "--db", str(db)]
    for command in COMMANDS:
        done = subprocess.run(
            [*base, *command],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in done.stderr, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) <= 2, (command, done.stderr)  # the error, and a note
        codes = (0, 1, 255) if command[0] == "exec" else (0, 1)  # exec: runc's 255
        assert done.returncode in codes, (command, done.returncode, done.stderr)
