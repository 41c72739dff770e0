"""Each audit filter, checked against the same question asked of the events in Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.audit import logdb, query
from engine.audit.errors import UnknownContainer
from engine.audit.filters import FILTER_FLAGS, Filters
from engine.errors import UsageError
from engine.eventlog.record import Event

MINUTE = 60 * 1_000_000_000
DAY = 24 * 60 * MINUTE


@pytest.fixture
def conn(audit_log: Any) -> Iterator[Any]:
    connection = logdb.open_log(str(audit_log.path))
    yield connection
    connection.close()


def flags(**given: object) -> dict[str, object]:
    """Flags as the command-line parser leaves them: repeatable ones are lists."""
    out: dict[str, object] = {f: [] for f in FILTER_FLAGS if f not in ("since", "until")}
    out.update(since=None, until=None, limit=None)
    out.update(given)
    return out


def pick(conn: Any, now: int, **given: object) -> list[Event]:
    return query.select_events(conn, Filters.from_flags(flags(**given), now))


def keys(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.container_id, e.seq) for e in events]


def where(audit_log: Any, test: Callable[[Event], bool]) -> list[tuple[str, int]]:
    return keys([e for e in audit_log.events if test(e)])


def test_no_filter_is_every_event_in_log_order(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0)
    assert [e.id for e in got] == [e.id for e in audit_log.events]
    assert got == audit_log.events  # every field, payload included


def test_id_is_exact_and_repeatable(conn: Any, audit_log: Any) -> None:
    assert keys(pick(conn, 0, id=["web-1"])) == where(
        audit_log, lambda e: e.container_id == "web-1"
    )
    both = pick(conn, 0, id=["web-2", "db-1"])
    assert keys(both) == where(audit_log, lambda e: e.container_id in ("web-2", "db-1"))
    assert pick(conn, 0, id=["web-"]) == []  # not a prefix without the star


def test_id_prefix(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, id=["web-*"])
    assert keys(got) == where(audit_log, lambda e: e.container_id.startswith("web-"))
    assert {e.container_id for e in got} == {"web-1", "web-2"}


def test_since_and_until_by_iso_time(conn: Any, audit_log: Any) -> None:
    day1 = audit_log.events[0].time_ns - MINUTE + DAY  # T0 + 1 day
    got = pick(conn, 0, since="2026-01-11T00:00:00Z", until="2026-01-12T00:00:00Z")
    assert keys(got) == where(audit_log, lambda e: day1 <= e.time_ns < day1 + DAY)
    assert {e.container_id for e in got} == {"web-2", "ghost"}


def test_since_relative_to_now(conn: Any, audit_log: Any) -> None:
    last = audit_log.events[-1].time_ns
    got = pick(conn, last, since="1h")
    assert keys(got) == where(audit_log, lambda e: e.time_ns >= last - 60 * MINUTE)
    assert {e.container_id for e in got} == {"db-1"}


def test_trigger(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, trigger=["pause", "kill"])
    assert keys(got) == where(audit_log, lambda e: e.trigger in ("pause", "kill"))
    assert len(got) == 5


@pytest.mark.parametrize("outcome", ["ok", "rejected", "failed"])
def test_outcome(conn: Any, audit_log: Any, outcome: str) -> None:
    got = pick(conn, 0, outcome=[outcome])
    assert got and keys(got) == where(audit_log, lambda e: e.outcome == outcome)


def test_actor_uid(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, actor_uid=["1000"])
    assert keys(got) == where(audit_log, lambda e: e.actor.uid == 1000)
    assert {e.actor.transport for e in got} == {"socket"}


def test_transport(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, transport=["spool", "external"])
    assert keys(got) == where(audit_log, lambda e: e.actor.transport in ("spool", "external"))
    assert ("web-1", 7) in keys(got)  # the exit noticed during delete's refresh


def test_state_is_the_containers_state_now(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, state=["paused"])
    assert keys(got) == where(audit_log, lambda e: e.container_id == "db-1")
    assert pick(conn, 0, state=["deleted", "running"]) == [
        e for e in audit_log.events if e.container_id in ("web-1", "web-2")
    ]


def test_filters_combine(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, id=["web-*"], outcome=["ok"], actor_uid=["1000"])
    assert keys(got) == [("web-1", 3), ("web-1", 5)]


def test_limit_keeps_the_latest_in_log_order(conn: Any, audit_log: Any) -> None:
    got = pick(conn, 0, limit="3")
    assert [e.id for e in got] == [e.id for e in audit_log.events[-3:]]
    assert len(pick(conn, 0, outcome=["rejected"], limit="1")) == 1


def test_unknown_id_and_prefix(conn: Any, audit_log: Any) -> None:
    with pytest.raises(UnknownContainer, match=r"container nosuch: no such container in the"):
        query.check_ids(conn, Filters(ids=("nosuch",)), str(audit_log.path))
    with pytest.raises(UnknownContainer, match=r"no container id begins with 'zz'"):
        query.check_ids(conn, Filters(prefixes=("zz",)), str(audit_log.path))
    query.check_ids(conn, Filters(ids=("ghost",), prefixes=("db",)), str(audit_log.path))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"outcome": ["done"]},
            r"--outcome: unknown value 'done' \(one of: ok, rejected, failed\)",
        ),
        ({"transport": ["ssh"]}, r"--transport: unknown value 'ssh'"),
        ({"state": ["zombie"]}, r"--state: unknown value 'zombie'"),
        ({"actor_uid": ["root"]}, r"--actor-uid: 'root' is not a uid"),
        ({"limit": "0"}, r"--limit: '0' is not a positive number"),
        ({"id": ["*"]}, r"--id: '\*' names no container"),
        ({"since": "2h", "until": "3h"}, r"--since must be before --until"),
        ({"until": "soon"}, r"--until: cannot read 'soon'"),
    ],
)
def test_bad_filter_values(given: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Filters.from_flags(flags(**given), 10**18)


def test_prefix_range_is_exact_around_the_next_character(tmp_path: Any) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "ids.db")
    conn.execute("CREATE TABLE events (container_id TEXT)")
    ids = ["a", "a-", "a-1", "a-z", "a-\U0010ffff", "a.", "a-\u00e9", "b"]
    conn.executemany("INSERT INTO events VALUES (?)", [(i,) for i in ids])
    clause, params = Filters(prefixes=("a-",)).where("e")
    got = {
        r[0] for r in conn.execute(f"SELECT container_id FROM events AS e WHERE {clause}", params)
    }
    assert got == {i for i in ids if i.startswith("a-")}


def test_current_states_is_the_projection(conn: Any, audit_log: Any) -> None:
    from engine.eventlog.sqlite import SQLiteStore

    with SQLiteStore(str(audit_log.path)) as store:
        assert query.current_states(conn) == store.containers()
    assert [(r.id, r.state) for r in query.current_states(conn)] == [
        ("db-1", "paused"),
        ("ghost", None),
        ("web-1", "deleted"),
        ("web-2", "running"),
    ]


def test_replay_rows_are_whole_histories_of_the_picked_containers(
    conn: Any, audit_log: Any
) -> None:
    filters = Filters.from_flags(flags(outcome=["rejected"]), 0)
    rows = list(query.replay_rows(conn, filters))
    picked = {e.container_id for e in audit_log.events if e.outcome == "rejected"}
    assert picked == {"web-1", "ghost"}
    assert [(r[0], r[1]) for r in rows] == where(audit_log, lambda e: e.container_id in picked)
    assert query.count_replay_rows(conn, filters) == len(rows)
    assert query.count_replay_rows(conn, Filters()) == len(audit_log.events)
    assert query.container_ids(conn, filters) == ["ghost", "web-1"]
    assert query.container_ids(conn, Filters()) == ["db-1", "ghost", "web-1", "web-2"]
