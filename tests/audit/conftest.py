"""A small event log with a known story, recorded through the real service.

Three days, four container ids, three actors on three transports: a full
lifecycle with a rejected pause and a poststop hook that fails and warns; a
container left running; a create whose createRuntime hook fails and is
rolled back, then a good create and start, a harmless signal and a pause; a request
for an id that never existed. Times come from a fake clock, so windows and
local times are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog import record
from engine.eventlog.record import Event
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.status import Actor

MINUTE = 60 * 1_000_000_000
DAY = 24 * 60 * MINUTE
T0 = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp()) * 1_000_000_000

ROOT = Actor(0, 100, "cli")
ALICE = Actor(1000, 200, "socket")
BOB = Actor(1001, 300, "spool")


class FakeClock:
    """Stands in for the ``time`` module of engine.eventlog.record."""

    def __init__(self, start: int) -> None:
        self.now = start

    def time_ns(self) -> int:
        self.now += MINUTE
        return self.now


@dataclass
class AuditLog:
    path: Path
    events: list[Event]  # every event, in id order

    def by(self, cid: str) -> list[Event]:
        return [e for e in self.events if e.container_id == cid]


@pytest.fixture
def audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditLog]:
    clock = FakeClock(T0)
    monkeypatch.setattr(record, "time", clock)
    world = FakeWorld(hooks={"createRuntime": [FakeHook("/usr/libexec/net-setup")]})
    path = tmp_path / "events.db"
    store = SQLiteStore(str(path), synchronous="OFF")
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)

    def ask(cid: str, trigger: str, actor: Actor, **args: object) -> None:
        try:
            service.request(cid, trigger, actor, args)
        except RunlogError:
            pass  # rejected or failed: recorded all the same

    # Day 0: web-1 lives its whole life; its poststop hook fails and warns.
    ask("web-1", "create", ROOT)
    ask("web-1", "start", ROOT)
    ask("web-1", "pause", ALICE)
    ask("web-1", "pause", ALICE)  # rejected: already paused
    ask("web-1", "resume", ALICE)
    ask("web-1", "kill", ROOT, signal=15)
    world.hooks["poststop"] = [FakeHook("/usr/libexec/net-teardown", 1, "veth gone\n")]
    ask("web-1", "delete", ROOT)  # refresh records the exit first
    # Day 1: web-2 is created by the spool and left running.
    clock.now = T0 + DAY
    ask("web-2", "create", BOB)
    ask("web-2", "start", BOB)
    ask("ghost", "start", ALICE)  # rejected: never existed
    # Day 2: db-1 fails its createRuntime hook, then comes up and is paused.
    clock.now = T0 + 2 * DAY
    world.hooks["createRuntime"].append(FakeHook("/usr/libexec/quota", 3, "quota exceeded"))
    ask("db-1", "create", ROOT)
    world.hooks["createRuntime"].pop()
    ask("db-1", "create", ROOT)
    ask("db-1", "start", ROOT)
    ask("db-1", "kill", ALICE, signal=10)  # SIGUSR1: the init lives on
    ask("db-1", "pause", ALICE)
    events = store.events()
    store.close()
    yield AuditLog(path, events)
