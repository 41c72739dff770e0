"""Reading events and containers out of the log, with filters.

Rows become :class:`~engine.eventlog.record.Event` and
:class:`~engine.eventlog.record.ContainerRow` as the stores return them, so
the output code serves every source alike. Replay reads leaner rows
(:func:`replay_rows`: no actor, no payload), streamed in the log's total
order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from engine.audit.errors import UnknownContainer
from engine.audit.filters import Filters
from engine.eventlog import sql
from engine.eventlog.record import ContainerRow, Event

__all__ = [
    "REPLAY_COLUMNS",
    "check_ids",
    "container_ids",
    "count_replay_rows",
    "current_states",
    "history",
    "replay_rows",
    "select_events",
]

_EVENT_COLUMNS = ", ".join(f'e."{c}"' for c in sql.EVENT_COLUMNS)
_CONTAINER_COLUMNS = ", ".join(f'c."{c}"' for c in sql.CONTAINER_COLUMNS)

#: What replay needs of an event, in this order.
REPLAY_COLUMNS = (
    "container_id",
    "seq",
    "time_ns",
    "trigger",
    "source",
    "dest",
    "outcome",
    "machine_digest",
)
#: A request refused before it reached the machine (malformed, no permission,
#: no monitor) carries ``refused`` in its payload, and a query that changed
#: nothing (``state``, ``wait``) carries ``query``; replay has no machine
#: verdict to compare either with, so they read as outcomes ``refused`` and
#: ``query``. instr() rather than json_extract(): this column is computed
#: for every event.
REFUSED = """CASE
    WHEN e.outcome = 'rejected' AND instr(e.payload, '"refused":') > 0 THEN 'refused'
    WHEN e.outcome = 'ok' AND instr(e.payload, '"query":true') > 0 THEN 'query'
    ELSE e.outcome END"""
_REPLAY_SELECT = ", ".join(REFUSED if c == "outcome" else f'e."{c}"' for c in REPLAY_COLUMNS)


def event_from_row(row: Sequence[Any]) -> Event:
    return Event.from_row(row, orjson.loads)


def check_ids(conn: sqlite3.Connection, filters: Filters, location: str) -> None:
    """Raise UnknownContainer for an ``--id`` (or prefix) the log has never seen."""
    for cid in filters.ids:
        if conn.execute(sql.SELECT_CONTAINER, (cid,)).fetchone() is None:
            raise UnknownContainer(cid, location)
    for prefix in filters.prefixes:
        where, params = Filters(prefixes=(prefix,)).where("e")
        if conn.execute(f"SELECT 1 FROM events AS e WHERE {where} LIMIT 1", params).fetchone():
            continue
        raise UnknownContainer(prefix, location, prefix=True)


def select_events(conn: sqlite3.Connection, filters: Filters) -> list[Event]:
    """Matching events in the log's order; with a limit, the latest ones."""
    where, params = filters.where("e")
    query = f"SELECT {_EVENT_COLUMNS} FROM events AS e WHERE {where}"
    if filters.limit is None:
        rows = conn.execute(query + " ORDER BY e.id", params).fetchall()
    else:
        latest = conn.execute(query + " ORDER BY e.id DESC LIMIT ?", [*params, filters.limit])
        rows = latest.fetchall()[::-1]
    return [event_from_row(r) for r in rows]


def history(
    conn: sqlite3.Connection,
    container_id: str,
    *,
    until_seq: int | None = None,
    until_ns: int | None = None,
) -> list[Event]:
    """One container's events in seq order, up to a seq or a time (inclusive)."""
    query = f"SELECT {_EVENT_COLUMNS} FROM events AS e WHERE e.container_id = ?"
    params: list[object] = [container_id]
    if until_seq is not None:
        query += " AND e.seq <= ?"
        params.append(until_seq)
    if until_ns is not None:
        query += " AND e.time_ns <= ?"
        params.append(until_ns)
    rows = conn.execute(query + " ORDER BY e.seq", params).fetchall()
    return [event_from_row(r) for r in rows]


def current_states(conn: sqlite3.Connection) -> list[ContainerRow]:
    """Every container in the projection, by id: the state of each, now."""
    query = f"SELECT {_CONTAINER_COLUMNS} FROM containers AS c ORDER BY c.id"
    return [ContainerRow(*r) for r in conn.execute(query)]


def container_ids(conn: sqlite3.Connection, filters: Filters) -> list[str]:
    """Ids of the containers that have an event the filters match, sorted."""
    where, params = filters.where("e")
    if where == "1":
        query = "SELECT id FROM containers ORDER BY id"
    else:
        query = f"SELECT DISTINCT e.container_id FROM events AS e WHERE {where} ORDER BY 1"
    return [str(cid) for (cid,) in conn.execute(query, params)]


def _selected(filters: Filters) -> tuple[str, list[object]]:
    """Whole histories: every event of a container one matching event names."""
    where, params = filters.where("s")
    if where == "1":
        return "", []
    return (
        f" WHERE e.container_id IN (SELECT s.container_id FROM events AS s WHERE {where})",
        params,
    )


def count_replay_rows(conn: sqlite3.Connection, filters: Filters) -> int:
    where, params = _selected(filters)
    (count,) = conn.execute(f"SELECT count(*) FROM events AS e{where}", params).fetchone()
    return int(count)


def replay_rows(conn: sqlite3.Connection, filters: Filters) -> Iterator[tuple[Any, ...]]:
    """The selected histories' events as :data:`REPLAY_COLUMNS` tuples, in the
    log's total order (id), streamed: a container's seq order is id order."""
    where, params = _selected(filters)
    cursor = conn.execute(f"SELECT {_REPLAY_SELECT} FROM events AS e{where} ORDER BY e.id", params)
    cursor.arraysize = 4096
    while batch := cursor.fetchmany():
        yield from batch
