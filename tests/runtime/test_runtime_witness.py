"""A real unprivileged user's log, witnessed by root's `runlog witness
--follow`: the user rewrites their own log whole (every hash computed
again, tests/tamper.py), and `audit --verify`, run by root and by the user,
names the first altered position; the user can read the witness's record
but not write it; a deleted log is said to be deleted."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.audit.witness import Record, record_path
from tests.runtime.conftest import REPO, Runlog
from tests.runtime.users import User, UserRunlog, make_user, rootless_bundle, user_dir

pytestmark = pytest.mark.root

_BACKUP = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))"


@pytest.fixture(scope="module")
def dora() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("making a user needs root")
    with make_user("rlwit", 2991) as user:
        yield user


@pytest.fixture
def site(dora: User, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A node's layout: logs/{user}/events.db (each user's, 0700), the
    witness's directory, and a site configuration naming both."""
    base = Path(tempfile.mkdtemp(prefix="runlog-site-", dir="/tmp"))
    base.chmod(0o755)
    (base / "logs").mkdir(mode=0o755)
    (base / "logs" / dora.name).mkdir(mode=0o700)
    os.chown(base / "logs" / dora.name, dora.uid, dora.gid)
    config = base / "runlog.toml"
    config.write_text(f'db = "{base}/logs/{{user}}/events.db"\nwitness = "{base}/witness"\n')
    config.chmod(0o644)
    monkeypatch.setenv("RUNLOG_CONFIG", str(config))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _until(what: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _newest(log: Path) -> int:
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def _witnessed(record: Path) -> int:
    if not record.exists():
        return 0
    life = Record.read(record).current
    return 0 if life is None else life.last_id


class Following:
    """`runlog witness --follow` as root, stopped (SIGINT) on leaving."""

    def __enter__(self) -> Following:
        argv = [sys.executable, "-m", "engine", "witness", "--follow"]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.out, self.err = self.proc.communicate(timeout=20)
        assert "Traceback" not in self.err, self.err


def test_a_users_rewritten_log_does_not_verify_against_roots_witness(
    runlog: Runlog, site: Path, dora: User
) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make bench-deps): it writes the user's bundle")
    log = site / "logs" / dora.name / "events.db"
    witness = site / "witness"
    record = record_path(str(witness), str(log))
    with user_dir(dora) as place:
        as_dora = UserRunlog(dora, place / "root", log, place)
        made = rootless_bundle(dora, place / "bundle", ["true"])
        as_root = Runlog(runlog.root, log, runlog.cwd)

        def run(cid: str) -> None:
            done = as_dora("run", "-b", str(made), cid)
            assert done.returncode == 0, done.stderr

        def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
            return dora.run(list(argv), cwd=REPO, env=dora.env(PYTHONPATH=str(REPO)))

        run("u1")
        with Following() as witnessing:
            _until(lambda: _witnessed(record) == _newest(log) > 0)
            run("u2")  # seen as it is recorded (inotify)
            _until(lambda: _witnessed(record) == _newest(log))
        assert "witnessed" in witnessing.out
        events = _newest(log)
        assert events >= 8

        # The record: root's, the user's group may read it; not the user's to write.
        st = record.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, dora.gid, 0o640)
        assert as_user("cat", str(record)).returncode == 0
        assert as_user("sh", "-c", f"echo 'E 99 x' >> '{record}'").returncode != 0
        assert as_user("rm", "-f", str(record)).returncode != 0
        assert as_user("mv", str(record), str(place / "gone")).returncode != 0
        # Nor is a witness of the user's own making taken for one.
        fake = place / "witness"
        assert as_user("mkdir", str(fake)).returncode == 0
        assert as_user("cp", str(record), str(fake / record.name)).returncode == 0
        own = as_dora("audit", "--verify", "--witness", str(fake))
        assert own.returncode == 1 and "not root: not trusted" in own.stderr, own.stderr

        fine = as_root("audit", "--verify")
        assert fine.returncode == 0, fine.stdout + fine.stderr
        assert f"{events} events as witnessed, to event {events}" in fine.stdout

        backup = place / "backup.db"
        assert as_user(sys.executable, "-c", _BACKUP, str(log), str(backup)).returncode == 0
        for kind, position, says in (
            ("edited", 3, "event 3 is not the event the witness saw"),
            ("deleted", 4, "event 4 was witnessed but is not in the log (removed)"),
            ("inserted", 5, "event 5 is not the event the witness saw"),
            ("truncated", events - 1, f"event {events - 1} was witnessed but is not in the log"),
        ):
            done = as_user(sys.executable, "-m", "tests.tamper", str(log), kind, str(position))
            assert done.returncode == 0, done.stderr
            for who in (as_root, as_dora):
                caught = who("audit", "--verify")
                assert caught.returncode == 1, (kind, caught.stdout, caught.stderr)
                assert "chain intact" in caught.stdout, caught.stdout  # recomputed: holds alone
                assert says in caught.stdout, (kind, caught.stdout)
            put_back = as_user(sys.executable, "-c", _BACKUP, str(backup), str(log))
            assert put_back.returncode == 0, put_back.stderr
            assert as_dora("audit", "--verify").returncode == 0

        # A user may delete their own log: said so, with what was witnessed.
        with Following():
            time.sleep(0.5)  # watching
            assert as_user("rm", "-f", str(log), f"{log}-wal", f"{log}-shm").returncode == 0
            _until(lambda: Record.read(record).current is None)
            gone = as_root("audit", "--verify")
            assert gone.returncode == 0, gone.stdout + gone.stderr
            assert "log deleted at" in gone.stdout
            assert f"last witnessed head event {events}" in gone.stdout
            run("u3")  # a new log at the path: a new life, witnessed from its start
            _until(lambda: _witnessed(record) == _newest(log) > 0)
        new = as_dora("audit", "--verify")
        assert new.returncode == 0, new.stdout + new.stderr
        assert f"to event {_newest(log)}" in new.stdout
