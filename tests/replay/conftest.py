"""Replay tests: a recorded log, and the project's own fixtures as tests.

The import below is the pytest plugin runlog ships: every
``*.history.jsonl`` under this directory (``histories/``) is collected as a
test that replays it. A conftest this deep may not use ``pytest_plugins``,
so it takes the plugin's collection hook directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog import record as eventlog_record
from engine.eventlog.record import Event
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.replay.pytest_plugin import pytest_collect_file  # noqa: F401
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(0, 4242, "cli")

#: (container, trigger, request, whether its createRuntime hook fails):
#: lives that cover the machine - a whole lifecycle with a rejection, a
#: failed create, a container deleted and created again under the same id,
#: one left paused, a request for an id that never existed.
Step = tuple[str, str, dict[str, object], bool]
STEPS: list[Step] = [
    ("web-1", "create", {}, False),
    ("web-1", "start", {}, False),
    ("web-1", "pause", {}, False),
    ("web-1", "pause", {}, False),  # rejected
    ("web-1", "resume", {}, False),
    ("web-1", "kill", {"signal": 15}, False),
    ("web-1", "delete", {}, False),  # the refresh records exit first
    ("web-1", "start", {}, False),  # rejected: deleted
    ("web-1", "create", {}, False),  # the id again
    ("web-1", "kill", {"signal": 9}, False),
    ("web-1", "delete", {}, False),
    ("db-1", "create", {}, True),  # failed, rolled back
    ("db-1", "create", {}, False),
    ("db-1", "start", {}, False),
    ("db-1", "pause", {}, False),
    ("ghost", "resume", {}, False),  # rejected: never existed
]


@dataclass
class RecordedLog:
    path: Path
    events: list[Event]


def record(path: Path, steps: list[Step] = STEPS) -> list[Event]:
    """Drive ``steps`` through the real service into the log at ``path``."""
    world = FakeWorld(hooks={"createRuntime": [FakeHook("/usr/libexec/net-setup")]})
    store = SQLiteStore(str(path), synchronous="OFF")
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
    for cid, trigger, args, fails in steps:
        failing = [FakeHook("/usr/libexec/quota", 3, "quota exceeded")] if fails else []
        world.hooks["createRuntime"] = [FakeHook("/usr/libexec/net-setup"), *failing]
        try:
            service.request(cid, trigger, ACTOR, args)
        except RunlogError:
            pass
    events = store.events()
    store.close()
    return events


class MinuteClock:
    """Stands in for the ``time`` module of engine.eventlog.record: one
    event a minute from 2021-01-10T00:00Z, so points in time are exact."""

    def __init__(self) -> None:
        self.now = 1_610_236_800 * 1_000_000_000

    def time_ns(self) -> int:
        self.now += 60 * 1_000_000_000
        return self.now


@pytest.fixture
def recorded_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordedLog]:
    monkeypatch.setattr(eventlog_record, "time", MinuteClock())
    path = tmp_path / "events.db"
    yield RecordedLog(path, record(path))
