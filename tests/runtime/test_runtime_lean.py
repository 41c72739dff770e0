"""The monitor at rest (engine.runtime.monitor.lean) with real containers, as
root: an idle monitor execs a lean process in its place (same pid) and
every duty still works through it; and the control plane's tests
(test_runtime_control.py) run again, here, against monitors that rest as
soon as they are idle (``RUNLOG_MONITOR_LEAN=0``), so that nearly every
request wakes one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.test_runtime_control import (
    LOOP,
    Transport,
    brief,
    freeze_and_thaw_by_hand,
    no_inotify_left,
    popen,
    resting,
    rows,
    running,
    runtime_info,
    status,
    test_a_freezer_written_by_hand_is_recorded_as_external,
    test_a_kill_from_outside_is_recorded_as_external,
    test_a_peer_neither_root_nor_owner_is_refused,
    test_a_real_monitors_replies_conform_to_the_wire_format,
    test_a_spool_that_cannot_be_watched_is_looked_at,
    test_a_spooled_request_of_another_user_is_refused,
    test_events_follow_streams_until_delete,
    test_every_duty_is_served_without_an_inotify_instance,
    test_every_request_over_each_transport,
    test_hooks_fork_while_the_monitor_watches,
    test_malformed_oversized_and_unknown_requests_are_rejected,
    test_no_request_takes_the_monitor_down,
    test_queries_are_not_events_by_default,
    test_two_clients_at_once,
    test_wait_returns_the_exit_code_and_the_signal,
    wait_for,
)
from tests.runtime.test_runtime_faults import real_state
from tests.runtime.test_runtime_wait import (
    test_a_killed_bound_waiter_takes_the_container_along,
    test_signals_to_a_bound_waiter_reach_the_init,
    test_start_bind_forwards_a_signal_that_comes_during_the_start,
    test_start_bind_killed_during_the_start_takes_the_container_along,
    test_start_bind_refused_answers_with_why_and_binds_nothing,
    test_start_bind_starts_and_exits_with_the_init,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]

# The control plane's and wait's tests and fixtures, collected here again
# (with the monitors resting at once: the fixture below).
__all__ = [
    "no_inotify_left",
    "popen",
    "running",
    "test_a_freezer_written_by_hand_is_recorded_as_external",
    "test_a_kill_from_outside_is_recorded_as_external",
    "test_a_killed_bound_waiter_takes_the_container_along",
    "test_a_peer_neither_root_nor_owner_is_refused",
    "test_a_real_monitors_replies_conform_to_the_wire_format",
    "test_a_spool_that_cannot_be_watched_is_looked_at",
    "test_a_spooled_request_of_another_user_is_refused",
    "test_events_follow_streams_until_delete",
    "test_every_duty_is_served_without_an_inotify_instance",
    "test_every_request_over_each_transport",
    "test_hooks_fork_while_the_monitor_watches",
    "test_malformed_oversized_and_unknown_requests_are_rejected",
    "test_no_request_takes_the_monitor_down",
    "test_queries_are_not_events_by_default",
    "test_signals_to_a_bound_waiter_reach_the_init",
    "test_start_bind_forwards_a_signal_that_comes_during_the_start",
    "test_start_bind_killed_during_the_start_takes_the_container_along",
    "test_start_bind_refused_answers_with_why_and_binds_nothing",
    "test_start_bind_starts_and_exits_with_the_init",
    "test_two_clients_at_once",
    "test_wait_returns_the_exit_code_and_the_signal",
]


@pytest.fixture(autouse=True)
def _rest_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOG_MONITOR_LEAN", "0")


def private_kib(pid: int) -> int:
    found = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Private_Clean", "Private_Dirty"):
            found += int(rest.split()[0])
    return found


def test_a_resting_monitor_keeps_every_duty(
    runlog: Any, bundle: Bundle, tmp_path: Path, popen: Any
) -> None:
    b = bundle(["sh", "-c", LOOP])
    runlog("create", "t-rest", "-b", str(b), check=True)
    monitor = runtime_info(runlog, "t-rest")["monitor_pid"]
    wait_for(lambda: resting(monitor), "the monitor to rest")
    out = tmp_path / "follow.out"
    follower = popen("events", "--follow", "t-rest", out=out)
    # state: answered by the lean process itself, which stays as it is.
    assert status(runlog, "t-rest") == "created"
    state = runlog("state", "t-rest", check=True).stdout
    assert state == (runlog.root / "t-rest" / "state.json").read_text() + "\n"
    assert resting(monitor)
    # start wakes it; it rests again once idle.
    runlog("start", "t-rest", check=True)
    wait_for((b / "rootfs" / "ready").exists, "the trap")
    wait_for(lambda: resting(monitor), "the monitor to rest again")
    assert private_kib(monitor) < 4096, "the lean process holds more than 4 MiB of its own"
    # wait: held by the lean process until the init's end.
    waiter = popen("wait", "t-rest", out=tmp_path / "wait.out")
    time.sleep(0.3)
    assert waiter.poll() is None and resting(monitor)
    runlog("pause", "t-rest", check=True)
    wait_for(lambda: resting(monitor), "the monitor to rest, paused")
    # A hand-written thaw and freeze, noticed by a resting monitor.
    freezer = runtime_info(runlog, "t-rest")["cgroup_paths"]
    path = Path(freezer.get("freezer", freezer.get("unified", ""))) / (
        "freezer.state" if "freezer" in freezer else "cgroup.freeze"
    )
    path.write_text("THAWED" if path.name == "freezer.state" else "0")
    wait_for(lambda: status(runlog, "t-rest") == "running", "the thaw noticed")
    wait_for(lambda: resting(monitor), "the monitor to rest, running")
    freeze_and_thaw_by_hand(runlog, "t-rest")
    wait_for(lambda: resting(monitor), "the monitor to rest after the freezer")
    # The spool, and exec.
    assert Transport(runlog, "spool")("t-rest", {"op": "state"})[1]["status"] == "running"
    assert runlog("exec", "t-rest", "true").returncode == 0
    wait_for(lambda: resting(monitor), "the monitor to rest after exec")
    # The init's end: the waiter has its status; a resting monitor of a
    # stopped container answers wait at once.
    runlog("kill", "t-rest", "USR1", check=True)
    assert waiter.wait(timeout=20) == 3
    wait_for(lambda: resting(monitor), "the monitor to rest, stopped")
    again = runlog("wait", "t-rest")
    assert (again.returncode, again.stdout) == (3, "3\n")
    assert resting(monitor)
    assert runtime_info(runlog, "t-rest")["monitor_pid"] == monitor
    runlog("delete", "t-rest", check=True)
    wait_for(lambda: not Path(f"/proc/{monitor}").exists(), "the monitor to end")
    assert follower.wait(timeout=10) == 0
    events = brief(runlog.db, "t-rest")
    assert events == [
        ("create", "created", "ok", "cli"),
        ("start", "running", "ok", "socket"),
        ("pause", "paused", "ok", "socket"),
        ("resume", "running", "ok", "external"),
        ("pause", "paused", "ok", "external"),
        ("resume", "running", "ok", "external"),
        ("exec", "running", "ok", "socket"),
        ("exec_exit", "running", "ok", "socket"),
        ("kill", "running", "ok", "socket"),
        ("exit", "stopped", "ok", "monitor"),
        ("delete", "deleted", "ok", "socket"),
    ]
    followed = [json.loads(line)["trigger"] for line in out.read_text().splitlines()]
    assert followed == [e[0] for e in events]
    assert runlog("replay", "--all").returncode == 0


def test_a_bound_waiter_gone_from_a_resting_monitor_takes_the_container_along(
    runlog: Any, running: Callable[[str], Path], popen: Any, tmp_path: Path
) -> None:
    running("t-bound")
    monitor = runtime_info(runlog, "t-bound")["monitor_pid"]
    waiter = popen("wait", "--bind", "t-bound", out=tmp_path / "bound.out")
    time.sleep(0.3)
    wait_for(lambda: resting(monitor), "the monitor to rest with a bound waiter")
    waiter.kill()
    wait_for(lambda: status(runlog, "t-bound") == "stopped", "the container to be killed")
    assert [t for t, _d, _o, _a in brief(runlog.db, "t-bound")][-2:] == ["kill", "exit"]


def test_a_bound_starter_gone_from_a_resting_monitor_takes_the_container_along(
    runlog: Any, bundle: Bundle, popen: Any, tmp_path: Path
) -> None:
    """``start --bind`` wakes the created container's resting monitor; once
    the container runs, the monitor rests again holding the bound starter,
    whose end still takes the container along."""
    runlog("create", "t-sbound", "-b", str(bundle(["sleep", "60"])), check=True)
    monitor = runtime_info(runlog, "t-sbound")["monitor_pid"]
    wait_for(lambda: resting(monitor), "the created container's monitor to rest")
    starter = popen("start", "--bind", "t-sbound", out=tmp_path / "starter.out")
    wait_for(lambda: status(runlog, "t-sbound") == "running", "the start")
    time.sleep(0.3)
    wait_for(lambda: resting(monitor), "the monitor to rest with a bound starter")
    starter.kill()
    wait_for(lambda: status(runlog, "t-sbound") == "stopped", "the container to be killed")
    kills = [(t, a) for t, _d, _o, a in brief(runlog.db, "t-sbound") if t == "kill"]
    assert kills == [("kill", "socket")], kills
    runlog("delete", "t-sbound", check=True)


def test_a_monitor_that_does_not_rest(runlog: Any, bundle: Bundle, monkeypatch: Any) -> None:
    """``RUNLOG_MONITOR_LEAN=off``: the monitor stays as create made it."""
    monkeypatch.setenv("RUNLOG_MONITOR_LEAN", "off")
    runlog("run", "-d", "t-awake", "-b", str(bundle(["sleep", "60"])), check=True)
    monitor = runtime_info(runlog, "t-awake")["monitor_pid"]
    time.sleep(0.5)
    assert not resting(monitor)
    runlog("delete", "--force", "t-awake", check=True)


def test_the_site_configurations_monitor_rest_reaches_the_monitor(
    runlog: Any, bundle: Bundle, monkeypatch: Any, tmp_path: Path
) -> None:
    """``monitor_rest`` in the site file (RUNLOG_CONFIG), no variable: a
    monitor made under ``"off"`` stays awake past the default 5 s, one made
    under ``"0.2"`` rests; each keeps what its create resolved (the file
    changed in between), and create's --debug says where it came from."""
    monkeypatch.delenv("RUNLOG_MONITOR_LEAN")
    site = tmp_path / "runlog.toml"
    monkeypatch.setenv("RUNLOG_CONFIG", str(site))
    site.write_text('monitor_rest = "off"\n')
    made = time.monotonic()
    got = runlog("--debug", "run", "-d", "t-site-off", "-b", str(bundle(["sleep", "60"])))
    assert got.returncode == 0, got.stderr
    assert f"setting monitor_rest='off' from {site}" in got.stderr, got.stderr
    awake = runtime_info(runlog, "t-site-off")["monitor_pid"]
    site.write_text("monitor_rest = 0.2\n")
    runlog("run", "-d", "t-site-rest", "-b", str(bundle(["sleep", "60"])), check=True)
    rested = runtime_info(runlog, "t-site-rest")["monitor_pid"]
    wait_for(lambda: resting(rested), "the monitor made under 0.2 s to rest")
    time.sleep(max(0.0, made + 6.0 - time.monotonic()))  # past the default 5 s
    assert not resting(awake), 'the monitor made under "off" rested'
    for cid in ("t-site-off", "t-site-rest"):
        runlog("delete", "--force", cid, check=True)


@pytest.mark.parametrize("fault", ["newer schema", "corrupt"])
def test_a_resting_monitor_that_cannot_open_its_log_stays_and_answers(
    runlog: Any, running: Callable[[str], Path], popen: Any, tmp_path: Path, fault: str
) -> None:
    """Woken, a monitor whose log cannot be opened (upgraded by a newer
    runlog; a corrupt file) refuses each request in one line naming the log
    (not recorded: it is the log that records), touches nothing, rests
    again, serves ``state`` and ``wait``, journals its init's end, and once
    the log is fine writes the journal into it and serves as before."""
    running("t-unopened")
    monitor = runtime_info(runlog, "t-unopened")["monitor_pid"]
    wait_for(lambda: resting(monitor), "the monitor to rest")
    db, kept = runlog.db, tmp_path / "kept.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if fault == "newer schema":
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    if fault == "corrupt":
        db.rename(kept)
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    why = "is newer than this runlog knows" if fault == "newer schema" else "cannot be"
    for op in ("pause", "kill"):
        refused = runlog(op, "t-unopened")
        assert refused.returncode == 1
        first, note = refused.stderr.splitlines()
        assert first.startswith(f"container t-unopened: {op} refused: event log {db}: "), first
        assert why in first
        assert note.startswith(f"runlog: the refusal was not recorded: event log {db}: "), note
        assert status(runlog, "t-unopened") == "running"
        assert real_state(runlog, "t-unopened") == "running"  # not frozen, not killed
        assert Path(f"/proc/{monitor}").exists()
        wait_for(lambda: resting(monitor), "the monitor to rest after a refusal")
    code, reply = Transport(runlog, "spool")("t-unopened", {"op": "pause"})
    assert code == 1 and f"event log {db}" in reply["error"]
    assert status(runlog, "t-unopened") == "running"
    # The init's end (a SIGKILL runlog did not send): journaled, told to wait.
    waiter = popen("wait", "t-unopened", out=tmp_path / "wait.out")
    time.sleep(0.3)
    os.kill(runtime_info(runlog, "t-unopened")["init_pid"], signal.SIGKILL)
    assert waiter.wait(timeout=20) == 137
    assert status(runlog, "t-unopened") == "stopped"
    journal = runlog.root / "t-unopened" / "journal"
    assert journal.exists()
    wait_for(lambda: resting(monitor), "the monitor to rest with its journal")
    # The log fine again: the journal goes into it (the monitor wakes for
    # it), and requests are served as before.
    if fault == "corrupt":
        kept.rename(db)
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (head,))
    wait_for(lambda: not journal.exists(), "the journal written into the log", timeout=20)
    exit_event = rows(db, "t-unopened")[-1]
    assert (exit_event["trigger"], exit_event["actor_transport"]) == ("exit", "external")
    assert "journaled" in exit_event["payload"]
    assert Path(f"/proc/{monitor}").exists()
    runlog("delete", "t-unopened", check=True)
    assert [t for t, _d, _o, _a in brief(db, "t-unopened")] == ["create", "start", "exit", "delete"]
    assert runlog("replay", "--all").returncode == 0
