"""Reconciling without a monitor, raced by one that lives.

``state`` (and the other commands) reconcile a container whose monitor is
gone: they record the init's end and a freezer written by hand. What they
read of the world - runtime.json - must be the container's whose history
the log holds, and its monitor must be gone: a monitor that has not begun
to serve (its first runtime.json, without the init) is not gone, and a
runtime.json read before the id was created again names another's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import MonitorBusy
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.runtime.cli import reconcile
from engine.runtime.shared import record
from engine.runtime.shared.statedir import RUNTIME, STATE, StateDir, process_start_time
from engine.settings import Settings, environ
from engine.status import Actor, Outcome, Transport


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process to stand for a monitor."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _ended() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _runtime(statedir: StateDir, monitor: int, init: int | None) -> None:
    info = {
        "monitor_pid": monitor,
        "monitor_start": process_start_time(monitor),
        "init_pid": init,
        "init_start": None if init is None else 1,
        "bundle": "",
        "cgroup_paths": {},
        "created_ns": 1,
    }
    statedir.write(RUNTIME, json.dumps(info).encode())


def _running(tmp_path: Path) -> tuple[Settings, StateDir]:
    """A container the log has running, with its state directory."""
    settings = Settings.from_flags(
        {"root": str(tmp_path / "root"), "db": str(tmp_path / "events.db")}, environ()
    )
    statedir = StateDir(settings.root, "c")
    statedir.create()
    statedir.write(STATE, json.dumps({"id": "c", "status": "running", "pid": 1}).encode())
    digest = record.machine_digest(settings)
    me = Actor(0, 1, Transport.CLI)
    with open_store(settings.db) as store:
        for trigger, source, dest in (("create", None, "created"), ("start", "created", "running")):
            store.append(NewEvent("c", trigger, source, dest, Outcome.OK, me, digest, {}))
    return settings, statedir


def _triggers(settings: Settings) -> list[str]:
    with open_store(settings.db) as store:
        return [e.trigger for e in store.history("c")]


def test_a_monitor_that_has_not_begun_to_serve_is_not_reconciled_around(
    tmp_path: Path, sleeper: int
) -> None:
    """runtime.json names a live monitor and no init yet (written before
    create made anything), while the log already has the container
    running: nothing is recorded, and ``state`` is told to ask state.json."""
    settings, statedir = _running(tmp_path)
    _runtime(statedir, sleeper, None)
    with pytest.raises(MonitorBusy):
        reconcile.state(settings, statedir)
    assert _triggers(settings) == ["create", "start"]


def test_a_runtime_json_read_before_the_id_was_created_again_counts_for_nothing(
    tmp_path: Path, sleeper: int
) -> None:
    """What was read names a monitor that is gone; runtime.json now names
    another, live one (the id deleted and created again): that container's
    init has not ended as far as this reader knows."""
    _settings, statedir = _running(tmp_path)
    _runtime(statedir, _ended(), _ended())
    world = reconcile._World(statedir)
    assert world.monitor_gone()
    _runtime(statedir, sleeper, None)
    assert not world.monitor_gone()
    assert world.drivers().process.exit_status() is None


def test_a_monitor_that_is_gone_is_reconciled(tmp_path: Path) -> None:
    """The other side: the monitor and the init gone, runtime.json as it
    was read: the init's end is recorded (its status lost with the monitor)."""
    settings, statedir = _running(tmp_path)
    _runtime(statedir, _ended(), _ended())
    reconcile.state(settings, statedir)
    assert _triggers(settings) == ["create", "start", "exit"]
