"""One contract for the read half (engine.eventlog.store.EventReader): the same
log asked the same questions gives the same answers from an SQLite file, an
SQLite database in memory, and the cluster's PostgreSQL after runlog ship."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from engine.audit.cluster import ClusterReader
from engine.audit.errors import UnknownContainer
from engine.audit.filters import Filters
from engine.audit.reader import SQLiteReader
from engine.eventlog.record import Event
from engine.eventlog.store import EventReader

from .conftest import DAY, T0, AuditLog

NODE = "node-a"


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def reader(request: pytest.FixtureRequest, audit_log: AuditLog) -> Iterator[EventReader]:
    if request.param == "sqlite-file":
        with SQLiteReader.open(str(audit_log.path)) as found:
            yield found
    elif request.param == "sqlite-memory":
        memory = sqlite3.connect(":memory:", isolation_level=None)
        with sqlite3.connect(audit_log.path) as source:
            source.backup(memory)
        with SQLiteReader(memory, ":memory:") as found:
            yield found
    else:
        from engine.ship import Shipper

        url = request.getfixturevalue("pg_url")
        Shipper(url, NODE, [str(audit_log.path)]).ship_once()
        with ClusterReader(url) as found:
            yield found


def brief(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.id, e.container_id, e.seq, e.trigger, e.outcome, e.hash) for e in events]


def test_every_event_in_order(reader: EventReader, audit_log: AuditLog) -> None:
    assert brief(reader.select_events(Filters())) == brief(audit_log.events)
    full = reader.select_events(Filters())
    assert [e.to_dict()["payload"] for e in full] == [e.payload for e in audit_log.events]
    assert [e.actor for e in full] == [e.actor for e in audit_log.events]


@pytest.mark.parametrize(
    "filters",
    [
        Filters(outcomes=("rejected",)),
        Filters(since_ns=T0 + DAY, until_ns=T0 + 2 * DAY),
        Filters(prefixes=("web-",)),
        Filters(ids=("db-1",), triggers=("create",)),
        Filters(actor_uids=(1000,)),
        Filters(transports=("spool",)),
        Filters(states=("running",)),
        Filters(limit=3),
    ],
    ids=repr,
)
def test_filters_pick_the_same_events(
    reader: EventReader, audit_log: AuditLog, filters: Filters
) -> None:
    with SQLiteReader.open(str(audit_log.path)) as reference:
        expected = brief(reference.select_events(filters))
    assert expected and brief(reader.select_events(filters)) == expected


def test_history_and_ids(reader: EventReader, audit_log: AuditLog) -> None:
    assert brief(reader.history("db-1")) == brief(audit_log.by("db-1"))
    assert brief(reader.history("db-1", until_seq=2)) == brief(audit_log.by("db-1")[:2])
    assert reader.history("nobody") == []
    assert reader.container_ids(Filters()) == ["db-1", "ghost", "web-1", "web-2"]
    reader.check_ids(Filters(ids=("web-1",), prefixes=("db",)))
    with pytest.raises(UnknownContainer):
        reader.check_ids(Filters(ids=("nobody",)))


def test_summary_counts_the_same(reader: EventReader, audit_log: AuditLog) -> None:
    with SQLiteReader.open(str(audit_log.path)) as reference:
        for filters in (Filters(), Filters(since_ns=T0 + 2 * DAY)):
            expected = reference.summarize(filters, 5)
            got = reader.summarize(filters, 5)
            assert got.triggers == expected.triggers
            assert got.states == expected.states
            assert got.hook_failures == expected.hook_failures and expected.hook_failures
            assert got.slowest == expected.slowest


def test_chains_verify(reader: EventReader, audit_log: AuditLog) -> None:
    (check,) = reader.verify()
    assert check.broken is None and check.verified == len(audit_log.events)


def test_replay_rows_are_the_histories(reader: EventReader, audit_log: AuditLog) -> None:
    with SQLiteReader.open(str(audit_log.path)) as reference:
        expected = sorted(reference.replay_rows(Filters()))
    got = [(row[0].split("@")[0], *row[1:]) for row in reader.replay_rows(Filters())]
    assert sorted(got) == expected
    assert reader.count_replay_rows(Filters()) == len(expected)
    digest = audit_log.events[0].machine_digest
    with SQLiteReader.open(str(audit_log.path)) as reference:
        assert reader.machine_text(digest) == reference.machine_text(digest)
