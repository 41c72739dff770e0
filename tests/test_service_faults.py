"""When the log refuses an event after its actions ran: undone, or journaled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import NotRecorded, StoreWriteError, TransitionRejected
from engine.eventlog.memory import MemoryStore
from engine.eventlog.record import Event, NewEvent
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.runtime.shared.journal import Journal
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(0, 1, "cli")


class FullStore(MemoryStore):
    """A store whose appends fail while ``full`` is set, as a full disk's do."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        if self.full:
            raise StoreWriteError("test.db", "database or disk is full")
        return super().append(event, expected_seq, durable=durable)


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def store() -> Iterator[FullStore]:
    with FullStore() as store:
        yield store


@pytest.fixture
def service(store: FullStore, world: FakeWorld, tmp_path: Path) -> Service:
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
    service.journal = Journal(str(tmp_path / "c" / "journal"))
    return service


def _history(store: FullStore) -> list[tuple[str, str | None, str]]:
    return [(e.trigger, e.dest, e.outcome) for e in store.history("c")]


def test_pause_is_thawed_when_the_log_refuses_it(
    service: Service, store: FullStore, world: FakeWorld
) -> None:
    service.request("c", "create", ACTOR)
    service.request("c", "start", ACTOR)
    store.full = True
    with pytest.raises(NotRecorded, match="database or disk is full") as caught:
        service.request("c", "pause", ACTOR)
    assert caught.value.undone == ["cgroup.freeze"]
    assert world.cgroups("c").frozen is False
    assert service.state("c") == "running"
    store.full = False
    assert service.flush_journal() == 1
    assert _history(store)[-1] == ("pause", None, "failed")
    assert store.history("c")[-1].payload["undone"] == ["cgroup.freeze"]
    assert service.journal is not None and not service.journal.pending


def test_a_delivered_signal_and_the_exit_are_journaled_in_order(
    service: Service, store: FullStore, world: FakeWorld
) -> None:
    service.request("c", "create", ACTOR)
    service.request("c", "start", ACTOR)
    store.full = True
    service.request("c", "kill", ACTOR, {"signal": 9})  # delivered: kept, not undone
    assert service.state("c") == "running"
    with pytest.raises(TransitionRejected):  # the exit, noticed first: journaled too
        service.request("c", "pause", ACTOR)  # refused by the machine: journaled
    assert service.state("c") == "stopped"
    store.full = False
    service.request("c", "delete", ACTOR)  # the journal first, then this
    assert _history(store) == [
        ("create", "created", "ok"),
        ("start", "running", "ok"),
        ("kill", "running", "ok"),
        ("exit", "stopped", "ok"),
        ("pause", None, "rejected"),
        ("delete", "deleted", "ok"),
    ]
    assert [e.seq for e in store.history("c")] == list(range(1, 7))
    assert "database or disk is full" in store.history("c")[2].payload["journaled"]


def test_create_is_taken_back_whole(service: Service, store: FullStore, world: FakeWorld) -> None:
    store.full = True
    with pytest.raises(NotRecorded):
        service.request("c", "create", ACTOR)
    assert world.cgroups("c").exists is False
    assert world.process("c").exit_status() == {"signal": 9}
    assert service.journal is not None and not service.journal.pending


def test_a_flush_cut_short_is_not_written_twice(
    service: Service, store: FullStore, world: FakeWorld, tmp_path: Path
) -> None:
    service.request("c", "create", ACTOR)
    service.request("c", "start", ACTOR)
    store.full = True
    service.request("c", "kill", ACTOR, {"signal": 15})
    store.full = False
    journal = Journal(str(tmp_path / "c" / "journal"))
    for event in journal.events():
        store.append(event)  # written, and then killed before the journal went
    assert service.flush_journal() == 0
    assert [e.trigger for e in store.history("c")] == ["create", "start", "kill"]


def test_without_a_journal_the_log_error_is_raised(store: FullStore, world: FakeWorld) -> None:
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
    service.request("c", "create", ACTOR)
    service.request("c", "start", ACTOR)
    store.full = True
    with pytest.raises(StoreWriteError, match="database or disk is full"):
        service.request("c", "kill", ACTOR, {"signal": 15})
