"""Refusals the command line makes before any monitor is asked: each is an
event, each a one-line error; and answering one never waits on the log."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parent.parent


def _events(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT container_id, "trigger", outcome FROM events ORDER BY id'
        ).fetchall()
    return [(str(c), str(t), str(o)) for c, t, o in rows]


@pytest.fixture
def flags(tmp_path: Path) -> list[str]:
    (tmp_path / "root" / "c").mkdir(parents=True)  # a container's state directory
    return ["--root", str(tmp_path / "root"), "--db", str(tmp_path / "events.db")]


@pytest.mark.parametrize(
    ("argv", "trigger", "words"),
    [
        (["kill", "c", "SIGBOGUS"], "kill", "unknown signal: SIGBOGUS"),
        (["fly", "c"], "fly", "unknown command 'fly'"),
        (["start", "--bogus", "c"], "start", "flag provided but not defined: --bogus"),
        (["pause", "c", "d"], "pause", '"pause" requires exactly 1 argument(s)'),
        # Every verb's own bad flag, for an existing container.
        *(
            ([verb, "--bogus", "c"], verb, "flag provided but not defined: --bogus")
            for verb in (
                "create",
                "run",
                "state",
                "kill",
                "delete",
                "pause",
                "resume",
                "exec",
                "update",
                "checkpoint",
                "restore",
                "ps",
                "events",
            )
        ),
        (["exec", "-x", "c", "true"], "exec", "flag provided but not defined: -x"),
        (["exec", "--tty=maybe", "c", "true"], "exec", "invalid boolean value 'maybe'"),
        (["exec", "c"], "exec", "process args cannot be empty"),
        (["exec", "--user", "c"], "exec", '"exec" requires a minimum of 1 argument(s)'),
        # Values refused before the monitor is asked.
        (["update", "--memory", "lots", "c"], "update", "invalid size: 'lots'"),
        (["update", "--cpu-share", "x", "c"], "update", "'x' is not an integer"),
        (["update", "-r", "/nonexistent/r.json", "c"], "update", "open /nonexistent/r.json"),
        (["events", "--interval", "x", "c"], "events", 'invalid value "x" for flag -interval'),
        (["kill", "c", "TERM", "x"], "kill", '"kill" requires a maximum of 2 argument(s)'),
    ],
)
def test_a_refusal_naming_a_container_is_recorded(
    flags: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    trigger: str,
    words: str,
) -> None:
    assert main([*flags, *argv]) == 1
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert _events(tmp_path / "events.db") == [("c", trigger, "rejected")]


@pytest.mark.parametrize("cid", ["x" * 256, "x" * 1024, "a/b", "..", "x" * 5000])
def test_an_invalid_id_is_refused_in_one_line_and_recorded(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], cid: str
) -> None:
    assert main([*flags, "state", cid]) == 1
    err = capsys.readouterr().err
    assert err.startswith("invalid container id ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert main([*flags, "create", cid]) == 1
    capsys.readouterr()
    recorded = _events(tmp_path / "events.db")
    assert [(t, o) for _c, t, o in recorded] == [("state", "rejected"), ("create", "rejected")]
    assert recorded[0][0] == cid[:1024]


def test_the_longest_id_runc_allows_is_accepted(flags: list[str]) -> None:
    from engine.layout import MAX_ID, is_valid_id

    assert is_valid_id("x" * MAX_ID) and not is_valid_id("x" * (MAX_ID + 1))


def test_state_of_a_missing_id_does_not_wait_on_the_write_lock(
    flags: list[str], tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    assert main([*flags, "state", "first"]) == 1  # the log exists
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "engine", *flags, "state", "missing"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=30,
            check=False,
        )
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 1
    assert done.stderr.strip() == "container missing: container does not exist"
    assert took < 3, took
    # Recorded once the lock was free, by a process nobody waited for.
    deadline = time.monotonic() + 10
    while ("missing", "state", "rejected") not in _events(db):
        assert time.monotonic() < deadline, _events(db)
        time.sleep(0.05)


def test_a_config_nested_too_deep_is_refused_in_one_line(flags: list[str], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    depth = 100_000
    (bundle / "config.json").write_text(
        '{"ociVersion": "1.0.0", "annotations": {"a": ' + "[" * depth + "]" * depth + "}}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "engine", *flags, "create", "--bundle", str(bundle), "deep"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().endswith("config.json: invalid JSON: nested too deep")
    assert len(done.stderr.strip().splitlines()) == 1
    assert ("deep", "create", "rejected") in _events(tmp_path / "events.db")
    assert not (tmp_path / "root" / "deep").exists()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["state", "c"], 1),
        (["kill", "c", "KILL"], 1),
        (["pause", "c"], 1),
        (["update", "--pids-limit", "10", "c"], 1),
        (["delete", "--force", "c"], 1),
        (["events", "--stats", "c"], 1),
        (["ps", "c"], 1),
        (["attach", "c"], 1),
        (["wait", "c"], 1),
        (["exec", "c", "true"], 255),
    ],
)
def test_another_users_refusal_is_one_line_saying_it_is_not_recorded(
    tmp_path: Path, argv: list[str], code: int
) -> None:
    """A root (0700) and a log this user may not read, as another user's
    are: the refusal cannot be recorded, and the one line of the error says
    so, naming the container, with runc's exit code (exec: 255)."""
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    root = tmp_path / "root"
    (root / "c").mkdir(parents=True)
    root.chmod(0o700)
    db = tmp_path / "log" / "events.db"
    db.parent.mkdir(mode=0o700)
    sqlite3.connect(db).close()
    tmp_path.chmod(0o711)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "--root", str(root), "--db", str(db), *argv],
        user=65534,
        group=65534,
        extra_groups=[],
        env={"PYTHONPATH": str(REPO), "HOME": "/nonexistent", "PATH": os.environ["PATH"]},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f"container c: stat {root}/c: permission denied" in lines[0] or (
        f"container c: open {root}/c/" in lines[0]
    ), lines[0]
    assert lines[0].endswith(
        f" (not recorded: event log {db}: cannot be read: Permission denied)"
    ), lines[0]
