"""Faults, with real containers: an event log on a full disk or read-only.

Whatever a command returns, the container's real state, what ``state``
prints and the log agree: an action whose event the log refuses is undone,
or kept in the container's journal and written into the log once it can be.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]
SLEEP = ["sleep", "1000"]


@contextmanager
def tmpfs(mount: Path, mode: str = "0755") -> Iterator[Path]:
    """An 8 MiB tmpfs on the directory ``mount``, unmounted afterwards (the
    test skips where none can be mounted)."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=8m,mode={mode}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    with tmpfs(mount) as disk:
        yield disk


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory``; the filler's path. The log's
    write-ahead log is emptied first: SQLite reuses its frames, so the next
    write must grow it."""
    with sqlite3.connect(directory / "events.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def freezer(cid: str, runlog: Any) -> str:
    """The container's freezer as runlog uses it, read from the files: v1's
    state where there is a v1 freezer (a hybrid host), else cgroup v2's."""
    import json

    info = json.loads((runlog.root / cid / "runtime.json").read_text())
    paths = info["cgroup_paths"]
    if "freezer" in paths:
        return Path(paths["freezer"], "freezer.state").read_text().strip().lower()
    text = Path(paths["unified"], "cgroup.freeze").read_text().strip()
    return "frozen" if text == "1" else "thawed"


def events(runlog: Any, cid: str) -> list[tuple[str, str | None, str]]:
    return list(runlog.events(cid))


def logged_state(runlog: Any, cid: str) -> str | None:
    """The state the log has ``cid`` in (None: never created)."""
    with sqlite3.connect(runlog.db) as conn:
        row = conn.execute("SELECT state FROM containers WHERE id = ?", (cid,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def real_state(runlog: Any, cid: str) -> str | None:
    """What the world shows of ``cid``: None without a state directory, else
    ``stopped`` once the init has ended (a zombie has), ``paused`` or
    ``running``/``created`` (the two differ only in the log) by the freezer."""
    import json

    statedir = runlog.root / cid
    if not (statedir / "runtime.json").exists():
        return None
    info = json.loads((statedir / "runtime.json").read_text())
    pid = info.get("init_pid")
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        ended = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")
    except (OSError, TypeError):
        ended = True
    if ended:
        return "stopped"
    return "paused" if freezer(cid, runlog) == "frozen" else "running"


def assert_agree(runlog: Any, cid: str) -> str | None:
    """The invariant: the real world, ``state`` and the log agree on ``cid``;
    the status they agree on (None: no container)."""
    shown = runlog("state", cid)
    assert "Traceback" not in shown.stderr, shown.stderr
    logged = logged_state(runlog, cid)
    real = real_state(runlog, cid)
    if shown.returncode != 0:
        assert logged in (None, "deleted"), (logged, shown.stderr)
        assert real is None, (real, shown.stderr)
        return None
    import json

    status = json.loads(shown.stdout)["status"]
    assert status == logged, (status, logged)
    assert real == ("running" if status == "created" else status), (real, status)
    return str(status)


def replays_clean(runlog: Any) -> None:
    replay = runlog("replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_full_disk_undoes_pause_and_journals_kill(
    runlog: Any, bundle: Bundle, small_disk: Path
) -> None:
    runlog.db = small_disk / "events.db"
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    runlog("start", "c", check=True)
    filler = fill(small_disk)
    try:
        paused = runlog("pause", "c")
        assert paused.returncode == 1, paused
        assert "database or disk is full" in paused.stderr
        assert "Traceback" not in paused.stderr
        assert "cgroup.freeze" in paused.stderr  # undone, and says so
        assert freezer("c", runlog) == "thawed"
        assert runlog.state("c")["status"] == "running"

        killed = runlog("kill", "c", "KILL")
        assert killed.returncode == 0, killed.stderr  # delivered, and journaled
        assert runlog.wait_status("c", "stopped")["status"] == "stopped"
        assert (runlog.root / "c" / "journal").exists()
        assert ("kill", "running", "ok") not in events(runlog, "c")
    finally:
        filler.unlink()
    # The monitor writes the journal into the log once it takes writes.
    assert wait_for(lambda: not (runlog.root / "c" / "journal").exists())
    history = events(runlog, "c")
    assert history[-3:] == [
        ("pause", None, "failed"),
        ("kill", "running", "ok"),
        ("exit", "stopped", "ok"),
    ]
    runlog("delete", "c", check=True)
    assert events(runlog, "c")[-1] == ("delete", "deleted", "ok")
    replay = runlog("replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_create_against_a_full_log_leaves_nothing_and_says_why(
    runlog: Any, bundle: Bundle, small_disk: Path
) -> None:
    runlog.db = small_disk / "events.db"
    runlog("create", "--bundle", str(bundle(SLEEP)), "first", check=True)
    runlog("delete", "--force", "first", check=True)
    filler = fill(small_disk)
    try:
        created = runlog("create", "--bundle", str(bundle(SLEEP)), "c")
        assert created.returncode == 1
        assert "database or disk is full" in created.stderr, created.stderr
        assert "Traceback" not in created.stderr
        assert not (runlog.root / "c").exists()
    finally:
        filler.unlink()
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)  # the id is free
    runlog("delete", "--force", "c", check=True)


def test_a_read_only_log_refuses_create_and_leaves_nothing(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    runlog("create", "--bundle", str(bundle(SLEEP)), "first", check=True)
    runlog("delete", "--force", "first", check=True)
    with sqlite3.connect(runlog.db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    runlog.db.chmod(0o444)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.rename(runlog.db, ro / "events.db")
    runlog.db = ro / "events.db"
    subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], check=True)
    try:
        created = runlog("create", "--bundle", str(bundle(SLEEP)), "c")
        assert created.returncode == 1
        assert "Traceback" not in created.stderr
        assert "read" in created.stderr, created.stderr  # read-only, in SQLite's words
        assert not (runlog.root / "c").exists()
        state = runlog("state", "missing")
        assert state.returncode == 1 and "Traceback" not in state.stderr, state.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_a_read_only_log_after_the_monitor_died_one_line_each(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    """Case 2: the log made read-only under a container whose monitor then
    dies: kill, state, ctl --spool and delete --force each end in one line
    (delete --force in success), with no traceback; delete --force leaves
    no state directory, and once the log is writable the id is free."""
    import json
    import signal

    ro = tmp_path / "ro"
    ro.mkdir()
    runlog.db = ro / "events.db"
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    runlog("start", "c", check=True)
    monitor = json.loads((runlog.root / "c" / "runtime.json").read_text())["monitor_pid"]
    with sqlite3.connect(runlog.db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], check=True)
    try:
        os.kill(monitor, signal.SIGKILL)
        assert wait_for(lambda: not Path(f"/proc/{monitor}").exists())
        for command in (
            ["kill", "c", "KILL"],
            ["state", "c"],
            ["ctl", "--spool", "--timeout", "2", "c", '{"op": "state"}'],
            ["delete", "--force", "c"],
        ):
            done = runlog(*command)
            assert "Traceback" not in done.stderr, (command, done.stderr)
            assert len(done.stderr.strip().splitlines()) <= 2, (command, done.stderr)
            assert done.returncode in (0, 1), (command, done)
        assert done.returncode == 0, done.stderr  # delete --force, journaled
        assert [p.name for p in (runlog.root / "c").iterdir()] == ["journal"]
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    runlog("delete", "--force", "c", check=True)  # the journal into the log
    assert not (runlog.root / "c").exists()
    assert runlog.events("c")[-1] == ("delete", "deleted", "ok")
    replays_clean(runlog)
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)  # the id is free
    runlog("delete", "--force", "c", check=True)


CREATE_POINTS = [
    "create:after:cgroup.create",
    "create:after:process.spawn_init",
    "create:after:hook(prestart, abort)",
    "create:after:hook(createContainer, abort)",
    "create:recorded",
]


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_a_monitor_killed_during_create_leaves_nothing(
    runlog: Any, bundle: Bundle, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(bundle(SLEEP))
    monkeypatch.setenv("RUNLOG_FAULT", point)
    created = runlog("create", "--bundle", path, "c")
    monkeypatch.delenv("RUNLOG_FAULT")
    assert created.returncode == 1
    assert "the monitor died during create" in created.stderr
    assert "Traceback" not in created.stderr
    assert not (runlog.root / "c").exists()
    assert assert_agree(runlog, "c") is None
    replays_clean(runlog)
    # The id can be used again, and the log replays clean.
    runlog("create", "--bundle", path, "c", check=True)
    runlog("delete", "--force", "c", check=True)
    replays_clean(runlog)


def test_delete_force_takes_away_what_a_dead_create_left(runlog: Any, bundle: Bundle) -> None:
    import json
    import signal

    path = str(bundle(SLEEP))
    runlog("create", "--bundle", path, "c", check=True)
    info = json.loads((runlog.root / "c" / "runtime.json").read_text())
    os.kill(info["monitor_pid"], signal.SIGKILL)
    (runlog.root / "c" / "state.json").unlink()  # as a create killed before it wrote it
    cgroups = [p for p in info["cgroup_paths"].values() if os.path.isdir(p)]
    assert cgroups
    deleted = runlog("delete", "--force", "c")
    assert deleted.returncode == 0, deleted.stderr
    assert not (runlog.root / "c").exists()
    assert not [p for p in cgroups if os.path.isdir(p)]
    assert runlog.events("c")[-2:] == [("exit", "stopped", "ok"), ("delete", "deleted", "ok")]
    # A bare state directory, too.
    (runlog.root / "d").mkdir()
    assert runlog("delete", "--force", "d").returncode == 0
    assert not (runlog.root / "d").exists()
    runlog("create", "--bundle", path, "c", check=True)
    runlog("delete", "--force", "c", check=True)
    replay = runlog("replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket", "unwritable"])
def test_create_against_a_log_that_is_no_file_leaves_nothing(
    runlog: Any, bundle: Bundle, tmp_path: Path, kind: str
) -> None:
    import socket

    target = tmp_path / "bad" / "events.db"
    target.parent.mkdir()
    holder = None
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "socket":
        holder = socket.socket(socket.AF_UNIX)
        holder.bind(str(target))
    else:
        target.parent.chmod(0o500)  # root may write anyway: read-only bind below
        subprocess.run(["mount", "--bind", "-o", "ro", target.parent, target.parent], check=True)
    runlog.db = target
    try:
        created = runlog("create", "--bundle", str(bundle(SLEEP)), "c", timeout=20)
    finally:
        if kind == "unwritable":
            subprocess.run(["umount", str(target.parent)], check=False)
        if holder is not None:
            holder.close()
    assert created.returncode == 1
    assert str(target) in created.stderr, created.stderr
    assert "Traceback" not in created.stderr
    assert len(created.stderr.strip().splitlines()) == 1
    assert not (runlog.root / "c").exists()


def test_a_created_container_whose_monitor_died_is_stopped_and_deletes(
    runlog: Any, bundle: Bundle
) -> None:
    import json
    import signal

    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    info = json.loads((runlog.root / "c" / "runtime.json").read_text())
    os.kill(info["monitor_pid"], signal.SIGKILL)
    # The init, waiting for start, ends with its monitor: a zombie at most.
    assert runlog.wait_status("c", "stopped")["status"] == "stopped"
    deleted = runlog("delete", "c")  # no --force: stopped, as runc has it
    assert deleted.returncode == 0, deleted.stderr
    assert not (runlog.root / "c").exists()
    assert runlog.events("c")[-2:] == [("exit", "stopped", "ok"), ("delete", "deleted", "ok")]


NOBODY = 65534


def _nobody_reads(path: Path) -> str:
    """What ``nobody`` gets opening ``path``: "read" or the error's name."""
    code = (
        "import os, sys\n"
        f"os.setgid({NOBODY}); os.setgroups([]); os.setuid({NOBODY})\n"
        "try:\n    open(sys.argv[1], 'rb').read(1); print('read')\n"
        "except OSError as err:\n    print(type(err).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_log_and_the_state_are_private(runlog: Any, bundle: Bundle) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="runlog-private-", dir="/tmp"))
    try:
        base.chmod(0o755)
        runlog.db = base / "log" / "events.db"
        runlog.root = base / "run"
        runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
        runlog("pause", "c")  # something in the write-ahead log
        logdir = runlog.db.parent
        assert logdir.stat().st_mode & 0o777 == 0o700
        files = [runlog.db, Path(f"{runlog.db}-wal"), Path(f"{runlog.db}-shm")]
        assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
        assert runlog.root.stat().st_mode & 0o777 == 0o700
        statedir = runlog.root / "c"
        assert statedir.stat().st_mode & 0o777 == 0o711  # as runc's
        for name in ("state.json", "runtime.json"):
            assert (statedir / name).stat().st_mode & 0o777 == 0o600
        # Even with the directories opened by hand, nobody reads the files.
        for directory in (logdir, runlog.root):
            directory.chmod(0o755)
        for path in [*files, statedir / "state.json", statedir / "runtime.json"]:
            assert _nobody_reads(path) == "PermissionError", path
        for directory in (logdir, runlog.root):
            directory.chmod(0o700)
        runlog("delete", "--force", "c", check=True)
        # A log made readable is made private again at the next open, with a note.
        for path in files:
            if path.exists():
                path.chmod(0o644)
        created = runlog("create", "--bundle", str(bundle(SLEEP)), "d", check=True)
        assert "made private (0600)" in created.stderr
        assert runlog.db.stat().st_mode & 0o777 == 0o600
        runlog("delete", "--force", "d", check=True)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


_HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@contextmanager
def held_lock(db: Path, seconds: float) -> Iterator[None]:
    """Another process holds the log's write lock (BEGIN IMMEDIATE) for
    ``seconds``; what runs inside must end before it lets go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
        assert holder.poll() is None, "the lock was let go before every command ended"
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_every_command_against_a_log_locked_longer_than_the_wait(
    runlog: Any, bundle: Bundle
) -> None:
    """Another process holds the log's write lock (BEGIN IMMEDIATE) for
    longer than runlog waits (engine.eventlog.sqlite.LOCK_WAIT): every
    command ends within that bound in success or one line; what could be
    undone is (pause, resume, create), what could not is journaled (kill,
    delete); once the lock is gone the journals reach the log, and the
    world, `state` and the log agree and replay clean."""
    import threading

    from engine.eventlog.sqlite import LOCK_WAIT

    setup = {
        "created": [],
        "running": ["start"],
        "paused": ["start", "pause"],
        "killed": ["start"],
        "stopped": ["start", "kill", "KILL"],
        "forced": ["start"],
        "polled": ["start"],
    }
    for cid, commands in setup.items():  # a bundle, and so a cgroup, each
        runlog("create", "--bundle", str(bundle(SLEEP)), cid, check=True)
        for command in _commands(commands):
            runlog(command[0], cid, *command[1:], check=True)
    assert runlog.wait_status("stopped", "stopped")["status"] == "stopped"
    calls = {
        "new": ["create", "--bundle", str(bundle(SLEEP)), "new"],
        "created": ["start", "created"],
        "running": ["pause", "running"],
        "paused": ["resume", "paused"],
        "killed": ["kill", "killed", "KILL"],
        "stopped": ["delete", "stopped"],
        "forced": ["delete", "--force", "forced"],
        "polled": ["state", "polled"],
        "missing": ["state", "missing"],
    }
    hold = LOCK_WAIT + 12
    results: dict[str, tuple[float, subprocess.CompletedProcess[str]]] = {}
    with held_lock(runlog.db, hold):

        def call(name: str) -> None:
            began = time.monotonic()
            done = runlog(*calls[name], timeout=hold + 30)
            results[name] = (time.monotonic() - began, done)

        threads = [threading.Thread(target=call, args=(name,)) for name in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for name, (took, done) in results.items():
        assert "Traceback" not in done.stderr, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 1, (name, done.stderr)
        assert took < LOCK_WAIT + 8, (name, took)
    assert results["missing"][0] < 5 and results["polled"][0] < 5
    assert results["polled"][1].returncode == 0
    for name in ("new", "running", "paused"):  # undone, and said why
        done = results[name][1]
        assert done.returncode == 1 and "locked by another process" in done.stderr, (name, done)
    for name in ("killed", "stopped", "forced"):  # done, and journaled
        assert results[name][1].returncode == 0, (name, results[name][1].stderr)
    assert not (runlog.root / "new").exists()
    # The lock gone: the monitors write their journals into the log.
    for cid in ("created", "running", "paused", "killed", "polled"):
        assert wait_for(lambda cid=cid: not (runlog.root / cid / "journal").exists()), cid
        assert_agree(runlog, cid)
    assert assert_agree(runlog, "running") == "running"
    assert assert_agree(runlog, "paused") == "paused"
    assert runlog.wait_status("killed", "stopped")["status"] == "stopped"
    assert assert_agree(runlog, "killed") == "stopped"
    for cid in ("stopped", "forced"):  # a journal left where the state was
        runlog("delete", "--force", cid, check=True)
        assert assert_agree(runlog, cid) is None
        assert logged_state(runlog, cid) == "deleted"
    replays_clean(runlog)


@pytest.fixture
def reading_group() -> Iterator[tuple[str, int]]:
    """A group made for the test (name, gid), removed after."""
    import grp
    import shutil

    if shutil.which("groupadd") is None:
        pytest.skip("groupadd is missing (Debian: passwd)")
    name = f"runlogrd{os.getpid() % 100000}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name, grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def _as_nobody(runlog: Any, groups: list[int], *args: str) -> subprocess.CompletedProcess[str]:
    """``runlog ARGS`` as ``nobody``, with ``groups`` as its only groups."""
    from tests.runtime.conftest import REPO

    argv = [sys.executable, "-m", "engine", "--root", "/nonexistent", "--db", str(runlog.db)]
    return subprocess.run(
        [*argv, *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=groups,
        env={"PYTHONPATH": str(REPO), "HOME": "/nonexistent", "PATH": os.environ["PATH"]},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_group_the_admin_names_may_read_the_log(
    runlog: Any,
    bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    reading_group: tuple[str, int],
) -> None:
    """RUNLOG_LOG_GROUP (log_group in the site configuration): the log and
    its -wal/-shm 0640 and the group's, its directory 0750; a member reads
    root's log with history and audit, anyone else does not. Without the
    setting, the log is made private again."""
    import tempfile

    name, gid = reading_group
    base = Path(tempfile.mkdtemp(prefix="runlog-group-", dir="/tmp"))
    try:
        base.chmod(0o755)
        runlog.db = base / "log" / "events.db"
        monkeypatch.setenv("RUNLOG_LOG_GROUP", name)
        runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
        runlog("start", "c", check=True)
        runlog("pause", "c", check=True)  # something in the write-ahead log
        logdir = runlog.db.parent
        files = [runlog.db, Path(f"{runlog.db}-wal"), Path(f"{runlog.db}-shm")]
        assert (logdir.stat().st_mode & 0o777, logdir.stat().st_gid) == (0o750, gid)
        assert {(f.stat().st_mode & 0o777, f.stat().st_gid) for f in files} == {(0o640, gid)}
        member = _as_nobody(runlog, [gid], "history", "c")
        assert member.returncode == 0, member.stderr
        assert "pause" in member.stdout and "Traceback" not in member.stderr
        audited = _as_nobody(runlog, [gid], "audit")
        assert audited.returncode == 0, audited.stderr
        assert "c" in audited.stdout
        for command in (["history", "c"], ["audit"]):
            other = _as_nobody(runlog, [], *command)
            assert other.returncode == 1, other
            assert "Traceback" not in other.stderr
            assert len(other.stderr.strip().splitlines()) == 1, other.stderr
            assert str(runlog.db) in other.stderr
        assert _nobody_reads(runlog.db) == "PermissionError"
        runlog("delete", "--force", "c", check=True)
        # The setting gone: the next open makes the log private again.
        monkeypatch.delenv("RUNLOG_LOG_GROUP")
        created = runlog("create", "--bundle", str(bundle(SLEEP)), "d", check=True)
        assert "made private (0600)" in created.stderr
        assert {f.stat().st_mode & 0o777 for f in files if f.exists()} == {0o600}
        assert _as_nobody(runlog, [gid], "history", "c").returncode == 1
        runlog("delete", "--force", "d", check=True)
        # An unknown group is one line naming the setting.
        monkeypatch.setenv("RUNLOG_LOG_GROUP", "no-such-group-here")
        refused = runlog("create", "--bundle", str(bundle(SLEEP)), "e")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "log_group 'no-such-group-here': no such group" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert not (runlog.root / "e").exists()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_the_spool_answers_what_is_no_regular_file_and_removes_it(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    import json

    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    runlog("start", "c", check=True)
    time.sleep(0.5)  # the monitor watches the spool by now
    spool = runlog.root / "c" / "requests"
    secret = tmp_path / "secret"
    secret.write_text('{"op": "pause"}')
    (spool / "link").symlink_to(secret)
    os.mkfifo(spool / "fifo")
    os.link(secret, spool / "hard")
    for name, kind in (("link", "symbolic link"), ("fifo", "FIFO"), ("hard", "hard link")):
        reply = spool / f"{name}.reply"
        assert wait_for(reply.exists), name
        answer = json.loads(reply.read_text())
        assert answer["ok"] is False
        assert "is not a regular file" in answer["error"] and kind in answer["error"]
        assert not (spool / name).exists() and not (spool / name).is_symlink()
    assert secret.read_text() == '{"op": "pause"}'  # never followed
    assert runlog.state("c")["status"] == "running"
    refused = [e for e in runlog.events("c") if e[2] == "rejected"]
    assert len(refused) == 3
    runlog("delete", "--force", "c", check=True)


# (the fault, the commands before the one it falls in, that command)
STEP_FAULTS = [
    ("start:after:hook(startContainer, abort)", [], ["start"]),
    ("start:after:process.release", [], ["start"]),
    ("start:recorded", [], ["start"]),
    ("pause:after:cgroup.freeze", ["start"], ["pause"]),
    ("pause:recorded", ["start"], ["pause"]),
    ("resume:after:cgroup.thaw", ["start", "pause"], ["resume"]),
    ("resume:recorded", ["start", "pause"], ["resume"]),
    ("kill:after:process.signal", ["start"], ["kill", "KILL"]),
    ("kill:recorded", ["start"], ["kill", "KILL"]),
    ("delete:after:cgroup.destroy", ["start", "kill", "KILL"], ["delete"]),
    ("delete:after:state.remove", ["start", "kill", "KILL"], ["delete"]),
    ("delete:recorded", ["start", "kill", "KILL"], ["delete"]),
]


def _commands(words: list[str]) -> list[list[str]]:
    """["start", "kill", "KILL"] -> [["start"], ["kill", "KILL"]]."""
    out: list[list[str]] = []
    for word in words:
        if word.isupper():
            out[-1].append(word)
        else:
            out.append([word])
    return out


@pytest.mark.parametrize(("point", "before", "faulted"), STEP_FAULTS)
def test_a_monitor_killed_at_a_step_boundary(
    runlog: Any,
    bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    before: list[str],
    faulted: list[str],
) -> None:
    """The monitor SIGKILLed at each step of each command: the command ends
    in one line, ``state`` answers, ``delete --force`` leaves nothing, the
    id is free again, and the log agrees with the world at the end (no
    container), `replay --all` exits 0 after each step."""
    path = str(bundle(SLEEP))
    monkeypatch.setenv("RUNLOG_FAULT", point)  # the monitor inherits it
    runlog("create", "--bundle", path, "c", check=True)
    monkeypatch.delenv("RUNLOG_FAULT")
    for command in _commands(before):
        runlog(*command[:1], "c", *command[1:], check=True)
        if command[0] == "kill":
            runlog.wait_status("c", "stopped")
    done = runlog(faulted[0], "c", *faulted[1:], timeout=30)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr
    # Right after the command, and again once the monitor's end is seen:
    # the world, `state` and the log agree, and the log replays clean.
    assert_agree(runlog, "c")
    replays_clean(runlog)
    assert_agree(runlog, "c")
    deleted = runlog("delete", "--force", "c")
    assert deleted.returncode == 0, deleted.stderr
    assert not (runlog.root / "c").exists()
    assert assert_agree(runlog, "c") is None
    runlog("create", "--bundle", path, "c", check=True)  # the id is free again
    runlog("delete", "--force", "c", check=True)
    assert logged_state(runlog, "c") == "deleted"
    replays_clean(runlog)


@pytest.mark.parametrize(
    ("point", "before", "faulted", "status", "trigger"),
    [
        ("pause:after:cgroup.freeze", ["start"], "pause", "paused", "pause"),
        ("resume:after:cgroup.thaw", ["start", "pause"], "resume", "running", "resume"),
    ],
)
def test_the_freezer_written_by_a_monitor_killed_before_its_event(
    runlog: Any,
    bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    before: list[str],
    faulted: str,
    status: str,
    trigger: str,
) -> None:
    """The monitor SIGKILLed right after it wrote the freezer, before the
    event: `state` and the log both follow the freezer - the change is
    recorded through the machine, as one nobody asked runlog for - and the
    container is deleted, frozen or not."""
    path = str(bundle(SLEEP))
    monkeypatch.setenv("RUNLOG_FAULT", point)
    runlog("create", "--bundle", path, "c", check=True)
    monkeypatch.delenv("RUNLOG_FAULT")
    for command in before:
        runlog(command, "c", check=True)
    done = runlog(faulted, "c")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    for _ in range(3):  # and stays so, asked again
        assert assert_agree(runlog, "c") == status
    with sqlite3.connect(runlog.db) as conn:
        last = conn.execute(
            'SELECT "trigger", dest, outcome, actor_transport FROM events '
            "WHERE container_id = 'c' AND outcome = 'ok' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert last == (trigger, status, "ok", "external")
    replays_clean(runlog)
    runlog("delete", "--force", "c", check=True)
    assert assert_agree(runlog, "c") is None
    replays_clean(runlog)


# (the command whose client is killed once it has asked, the commands
# before it, the status the monitor leaves the container in)
CLIENT_FAULTS = [
    (["start"], [], "running"),
    (["pause"], ["start"], "paused"),
    (["resume"], ["start", "pause"], "running"),
    (["kill", "KILL"], ["start"], "stopped"),
    (["delete"], ["start", "kill", "KILL"], None),
]


@pytest.mark.parametrize(("faulted", "before", "status"), CLIENT_FAULTS)
def test_a_client_killed_once_it_has_asked(
    runlog: Any,
    bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    faulted: list[str],
    before: list[str],
    status: str | None,
) -> None:
    """The command SIGKILLed once its request is sent: the monitor carries
    it out, records it and lives on; the world, `state` and the log agree."""
    path = str(bundle(SLEEP))
    runlog("create", "--bundle", path, "c", check=True)
    for command in _commands(before):
        runlog(*command[:1], "c", *command[1:], check=True)
        if command[0] == "kill":
            runlog.wait_status("c", "stopped")
    monkeypatch.setenv("RUNLOG_FAULT", f"{faulted[0]}:sent")
    done = runlog(faulted[0], "c", *faulted[1:])
    monkeypatch.delenv("RUNLOG_FAULT")
    assert done.returncode == -9, done
    if status is None:
        assert wait_for(lambda: not (runlog.root / "c").exists())
    else:
        assert runlog.wait_status("c", status)["status"] == status
    assert assert_agree(runlog, "c") == status
    assert logged_state(runlog, "c") == (status or "deleted")
    replays_clean(runlog)
    if status is not None:
        runlog("state", "c", check=True)  # the monitor still answers
        runlog("delete", "--force", "c", check=True)
    runlog("create", "--bundle", path, "c", check=True)  # the id is free again
    runlog("delete", "--force", "c", check=True)
    replays_clean(runlog)


def test_a_delete_the_full_log_refuses_is_journaled_then_written(
    runlog: Any, bundle: Bundle, small_disk: Path
) -> None:
    runlog.db = small_disk / "events.db"
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    runlog("kill", "c", "KILL", check=True)
    assert runlog.wait_status("c", "stopped")["status"] == "stopped"
    filler = fill(small_disk)
    try:
        deleted = runlog("delete", "c")
        assert deleted.returncode == 0, deleted.stderr  # done, and kept in the journal
        assert [p.name for p in (runlog.root / "c").iterdir()] == ["journal"]
        assert runlog("state", "c").returncode == 1
    finally:
        filler.unlink()
    assert runlog("delete", "--force", "c").returncode == 0
    assert not (runlog.root / "c").exists()
    assert runlog.events("c")[-1] == ("delete", "deleted", "ok")
    replay = runlog("replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_create_command_killed_after_claiming_the_id(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create SIGKILLed once it has claimed the id: its monitor-to-be exits,
    a bare state directory is left, and delete --force frees the id."""
    path = str(bundle(SLEEP))
    monkeypatch.setenv("RUNLOG_FAULT", "create:claimed")
    killed = runlog("create", "--bundle", path, "c")
    monkeypatch.delenv("RUNLOG_FAULT")
    assert killed.returncode == -9
    assert runlog("state", "c").returncode == 1
    assert runlog("delete", "--force", "c").returncode == 0
    assert not (runlog.root / "c").exists()
    runlog("create", "--bundle", path, "c", check=True)
    runlog("delete", "--force", "c", check=True)
    replay = runlog("replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_create_command_killed_once_the_monitor_was_told(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create SIGKILLed once its monitor has the request: the monitor goes
    on and creates the container (its report dropped), which is then as
    any created container - the world, `state` and the log agree, start
    and delete work - and the id is free after."""
    path = str(bundle(SLEEP))
    monkeypatch.setenv("RUNLOG_FAULT", "create:sent")
    killed = runlog("create", "--bundle", path, "c")
    monkeypatch.delenv("RUNLOG_FAULT")
    assert killed.returncode == -9
    assert wait_for((runlog.root / "c" / "state.json").exists)
    assert assert_agree(runlog, "c") == "created"
    runlog("start", "c", check=True)
    assert assert_agree(runlog, "c") == "running"
    runlog("delete", "--force", "c", check=True)
    assert assert_agree(runlog, "c") is None
    runlog("create", "--bundle", path, "c", check=True)
    runlog("delete", "--force", "c", check=True)
    replays_clean(runlog)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_state_answered_from_the_file_is_recorded_where_queries_are(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    """Queries are events only with RUNLOG_RECORD_QUERIES; then one the CLI
    answers from state.json is recorded too, as the monitor's are."""
    import json
    import signal

    if recorded:
        monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    monitor = json.loads((runlog.root / "c" / "runtime.json").read_text())["monitor_pid"]
    os.kill(monitor, signal.SIGSTOP)
    try:
        out = runlog("state", "c")  # the monitor does not answer: state.json does
    finally:
        os.kill(monitor, signal.SIGCONT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "created"
    with sqlite3.connect(runlog.db) as conn:
        rows = conn.execute(
            "SELECT source, outcome, json_extract(payload, '$.answered_from') FROM events "
            "WHERE container_id = 'c' AND \"trigger\" = 'state'"
        ).fetchall()
    assert (("created", "ok", "state.json") in rows) is recorded


def test_delete_force_kills_what_the_ended_init_left_in_its_cgroup(
    runlog: Any, bundle: Bundle
) -> None:
    """Without a PID namespace, a process the init started outlives it; the
    container is stopped, and delete --force kills it so the cgroup goes."""

    def no_pid_namespace(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]

    path = str(bundle(["sh", "-c", "sleep 1000 & exit 0"], edit=no_pid_namespace))
    runlog("create", "--bundle", path, "c", check=True)
    runlog("start", "c", check=True)
    assert runlog.wait_status("c", "stopped")["status"] == "stopped"
    deleted = runlog("delete", "--force", "c")
    assert deleted.returncode == 0, deleted.stderr
    assert not (runlog.root / "c").exists()
    assert runlog.events("c")[-1] == ("delete", "deleted", "ok")


def _spawn(runlog: Any, fault: str, *args: str) -> subprocess.Popen[str]:
    """``runlog ARGS`` in the background with ``RUNLOG_FAULT=fault``."""
    from tests.runtime.conftest import REPO

    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    return subprocess.Popen(
        [*cmd, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=runlog.cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "RUNLOG_FAULT": fault},
    )


def _stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP: at its fault point)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"T"


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    import signal

    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_a_state_that_read_another_containers_runtime_reconciles_nothing(
    runlog: Any, bundle: Bundle
) -> None:
    """``state`` finds a container's monitor dead and reads its runtime.json;
    before it has read the log, the id is deleted, created again and
    started. The new container's monitor lives: nothing is reconciled
    around it - no exit recorded for an init that runs, state.json left
    running - and the answer is its state.json. (Under churn this was a
    running container recorded stopped, then refused everything.)"""
    import json
    import signal

    path = str(bundle(SLEEP))
    runlog("create", "--bundle", path, "c", check=True)
    runlog("start", "c", check=True)
    info = json.loads((runlog.root / "c" / "runtime.json").read_text())
    os.kill(info["monitor_pid"], signal.SIGKILL)
    assert wait_for(lambda: not Path(f"/proc/{info['monitor_pid']}").exists())
    state = _spawn(runlog, "state:reconcile:stop", "state", "c")
    try:
        assert wait_for(lambda: _stopped(state.pid)), "state never reached its fault point"
        runlog("delete", "--force", "c", check=True)
        runlog("create", "--bundle", path, "c", check=True)
        runlog("start", "c", check=True)
    finally:
        code, out, err = _finish(state)
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["status"] == "running"
    assert assert_agree(runlog, "c") == "running"
    assert runlog.events("c")[-2:] == [("create", "created", "ok"), ("start", "running", "ok")]
    runlog("pause", "c", check=True)  # the container is its monitor's still
    runlog("delete", "--force", "c", check=True)
    replays_clean(runlog)


def test_a_state_answered_from_a_lagging_state_json_moves_nothing(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor stops between committing a pause and writing state.json
    (which still says running); a ``state`` it cannot answer is answered
    from that file and recorded as a query. The query is recorded in the
    state the log has (paused), with what the file said beside it: the
    log's state stays paused, and the next resume is not refused."""
    import json
    import signal

    monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")
    monkeypatch.setenv("RUNLOG_FAULT", "pause:recorded:stop")  # the monitor's
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    monkeypatch.delenv("RUNLOG_FAULT")
    runlog("start", "c", check=True)
    monitor = json.loads((runlog.root / "c" / "runtime.json").read_text())["monitor_pid"]
    pause = _spawn(runlog, "", "pause", "c")
    try:
        assert wait_for(lambda: _stopped(monitor)), "the monitor never reached its fault point"
        assert logged_state(runlog, "c") == "paused"
        shown = runlog("state", "c")  # the monitor does not answer: state.json does
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "running"
        assert logged_state(runlog, "c") == "paused"
    finally:
        os.kill(monitor, signal.SIGCONT)
        code, _out, err = _finish(pause)
    assert code == 0, err
    with sqlite3.connect(runlog.db) as conn:
        query = conn.execute(
            "SELECT source, dest, json_extract(payload, '$.answered') FROM events "
            "WHERE container_id = 'c' AND json_extract(payload, '$.answered_from') IS NOT NULL"
        ).fetchall()
    assert query == [("paused", "paused", "running")]
    assert assert_agree(runlog, "c") == "paused"
    runlog("resume", "c", check=True)
    assert assert_agree(runlog, "c") == "running"
    runlog("delete", "--force", "c", check=True)
    replays_clean(runlog)


def test_an_unprivileged_users_refusal_of_roots_container_is_said_not_recorded(
    runlog: Any, bundle: Bundle
) -> None:
    """A known limit: a user refused root's container cannot write root's
    private log, so the refusal is not recorded. Each command says so in
    in its one-line error (permission denied, as runc's, naming the
    container), never a traceback; root's container and log are left as
    they were."""
    from tests.runtime.conftest import REPO

    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    before = runlog.events("c", queries=True)
    base = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    env = {"PYTHONPATH": str(REPO), "HOME": "/nonexistent", "PATH": os.environ["PATH"]}
    not_recorded = f" (not recorded: event log {runlog.db}: "
    for command in (
        ["start", "c"],
        ["state", "c"],
        ["kill", "c", "KILL"],
        ["pause", "c"],
        ["delete", "c"],
        ["delete", "--force", "c"],
        ["exec", "c", "true"],
        ["update", "--pids-limit", "10", "c"],
        ["wait", "c"],
        ["ps", "c"],
        ["list"],
        ["history", "c"],
    ):
        done = subprocess.run(
            [*base, *command],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0 and "Traceback" not in done.stderr, (command, done)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and "permission denied" in lines[0].lower(), (command, done)
        if command[0] not in ("list", "history"):  # these name no container
            assert "container c" in lines[0] and not_recorded in lines[0], (command, done)
    assert runlog.events("c", queries=True) == before
    assert assert_agree(runlog, "c") == "created"
    runlog("delete", "--force", "c", check=True)


def test_start_bind_against_a_full_log_is_undone_and_journaled(
    runlog: Any, bundle: Bundle, small_disk: Path
) -> None:
    """Scheduler's `start --bind` (Slurm's RunTimeStart) when the log cannot
    take the start: as a plain start, the released init is stopped (its
    exec cannot be taken back), the start fails with the log's error, and
    the failure and the exit wait in the journal until the log takes them."""
    runlog.db = small_disk / "events.db"
    runlog("create", "--bundle", str(bundle(SLEEP)), "c", check=True)
    filler = fill(small_disk)
    try:
        started = runlog("start", "--bind", "c", timeout=60)
        assert started.returncode == 1, started
        [line] = started.stderr.strip().splitlines()
        assert line.startswith("start c: not done, the event log cannot take it"), line
        assert "database or disk is full" in line
        assert runlog.state("c")["status"] == "stopped"
        assert real_state(runlog, "c") == "stopped"
        assert (runlog.root / "c" / "journal").exists()
    finally:
        filler.unlink()
    assert wait_for(lambda: not (runlog.root / "c" / "journal").exists())
    assert assert_agree(runlog, "c") == "stopped"
    assert events(runlog, "c") == [
        ("create", "created", "ok"),
        ("start", None, "failed"),
        ("exit", "stopped", "ok"),
    ]
    runlog("delete", "c", check=True)
    replays_clean(runlog)


def test_a_start_found_done_against_a_full_log_is_journaled_then_written(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path, small_disk: Path
) -> None:
    """The monitor killed in the middle of a start while the log is full:
    `state` and `kill` record the `started` they find, the kill and the
    exit in the journal, and say what they did; once the disk has room,
    the next command writes them into the log before anything else."""
    from tests.runtime.test_runtime_authority import _hook_ends, _killed_in_poststart

    runlog.db = small_disk / "events.db"
    _info, done = _killed_in_poststart(runlog, bundle, shell_hook, tmp_path, "t")
    filler = fill(small_disk)
    try:
        assert runlog.state("t")["status"] == "running"
        killed = runlog("kill", "t", "KILL")
        assert killed.returncode == 0, killed.stderr
        assert runlog.wait_status("t", "stopped")["status"] == "stopped"
        assert (runlog.root / "t" / "journal").exists()
        assert events(runlog, "t") == [("create", "created", "ok")]
    finally:
        filler.unlink()
    # No monitor to retry: the next command writes the journal first.
    assert assert_agree(runlog, "t") == "stopped"
    assert not (runlog.root / "t" / "journal").exists()
    assert events(runlog, "t") == [
        ("create", "created", "ok"),
        ("started", "running", "ok"),
        ("kill", "running", "ok"),
        ("exit", "stopped", "ok"),
    ]
    runlog("delete", "t", check=True)
    replays_clean(runlog)
    _hook_ends(tmp_path, done)
