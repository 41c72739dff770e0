"""The read half over a node's SQLite log, and the choice of reader for ``--db``.

:class:`SQLiteReader` answers :class:`engine.eventlog.store.EventReader`'s
questions with the DB-API queries of :mod:`engine.audit.query` and
:mod:`engine.audit.summary` (SQLite's JSON functions, its planner hints);
:func:`open_reader` gives it for a path, and a
:class:`engine.audit.cluster.ClusterReader` for a PostgreSQL URL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from engine.audit import logdb, query
from engine.audit.filters import Filters
from engine.audit.summary import Summary, summarize
from engine.audit.verify import ChainCheck, verify_sqlite
from engine.eventlog.record import Event
from engine.eventlog.store import EventReader

__all__ = ["SQLiteReader", "open_reader"]


class SQLiteReader(EventReader):
    def __init__(self, conn: sqlite3.Connection, location: str) -> None:
        self.conn = conn
        self.location = location

    @classmethod
    def open(cls, location: str) -> SQLiteReader:
        return cls(logdb.open_log(location), location)

    def check_ids(self, filters: Filters) -> None:
        query.check_ids(self.conn, filters, self.location)

    def select_events(self, filters: Filters) -> list[Event]:
        return query.select_events(self.conn, filters)

    def history(
        self,
        container_id: str,
        *,
        until_seq: int | None = None,
        until_ns: int | None = None,
        node: str | None = None,
    ) -> list[Event]:
        if node is not None and node not in (Filters(nodes=(node,)).nodes_here()):
            return []
        return query.history(self.conn, container_id, until_seq=until_seq, until_ns=until_ns)

    def container_ids(self, filters: Filters) -> list[str]:
        return query.container_ids(self.conn, filters)

    def summarize(self, filters: Filters, top: int) -> Summary:
        return summarize(self.conn, filters, top)

    def verify(self) -> list[ChainCheck]:
        return [verify_sqlite(self.conn, self.location)]

    def count_replay_rows(self, filters: Filters) -> int:
        return query.count_replay_rows(self.conn, filters)

    def replay_rows(self, filters: Filters) -> Iterator[tuple[Any, ...]]:
        return query.replay_rows(self.conn, filters)

    def machine_text(self, digest: str) -> str | None:
        from engine.replay.machines import archived_in

        return archived_in(self.conn)(digest)

    def remember(self, definition: Any) -> bool:
        """Archive today's machine while its file still says what the log's
        containers ran under: after statemachine.yaml changes, replay by
        digest still finds it."""
        from engine.replay.machines import remember

        used = self.conn.execute(
            "SELECT 1 FROM containers WHERE machine_digest = ? LIMIT 1", (definition.digest,)
        ).fetchone()
        if not used or self.machine_text(definition.digest) is not None:
            return False
        return remember(self.conn, definition)

    def close(self) -> None:
        self.conn.close()


def open_reader(location: str) -> EventReader:
    """The reader for ``--db``: a node's SQLite log, or the cluster's database."""
    from engine.audit.cluster import is_cluster_url

    if is_cluster_url(location):
        from engine.audit.cluster import ClusterReader

        return ClusterReader(location)
    return SQLiteReader.open(location)
