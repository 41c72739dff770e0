"""The event store over any SQLAlchemy URL (PostgreSQL for a cluster-wide log).

Not for the hot path of a single host (that is :mod:`engine.eventlog.sqlite`);
it is what ``--db postgresql://...`` selects. The same tables, the same
contract: appends lock the container's head row (``SELECT ... FOR UPDATE``,
``BEGIN IMMEDIATE`` on SQLite) and a lost race on the UNIQUE (container_id,
seq) is retried or reported as a concurrency error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Row, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.errors import ConcurrencyError, SchemaError
from engine.eventlog import chain
from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.eventlog.schema import (
    CHAINED,
    chain_anchors,
    containers,
    driver_url,
    events,
    machines,
    make_engine,
    redacted,
)
from engine.eventlog.store import EventStore, next_state

__all__ = ["SAStore", "driver_url", "make_engine", "redacted"]

#: The advisory lock that orders appends to one PostgreSQL log's chain.
_CHAIN_LOCK = 0x72756E6C6F67  # "runlog"


class SAStore(EventStore):
    def __init__(self, url: str, *, retries: int = 20) -> None:
        from engine.eventlog import migrate

        self.location = url
        self.retries = retries
        self._engine = make_engine(url)
        known = migrate.revisions()
        try:
            version = migrate.current(url)
        except OperationalError as err:
            self._engine.dispose()
            raise SchemaError(url, f"cannot be used: {err.orig}") from err
        if version is not None and version not in known:
            self._engine.dispose()
            raise SchemaError(
                url,
                f"schema revision {version} is newer than this runlog knows "
                f"(newest: {known[-1]}); use a newer runlog",
            )
        if version != known[-1]:
            migrate.upgrade(url)

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        event = self.stamped(event)
        for _ in range(self.retries):
            try:
                return self._append(event, expected_seq)
            except IntegrityError:
                # Two first appends for one container raced on its head row,
                # or on (container_id, seq).
                if expected_seq is not None:
                    with self._engine.connect() as conn:
                        last = self._head(conn, event.container_id)
                    raise ConcurrencyError(event.container_id, expected_seq, last) from None
        raise ConcurrencyError(event.container_id, -1, -1)

    def _head(self, conn: Connection, container_id: str, lock: bool = False) -> int:
        query = select(containers.c.seq).where(containers.c.id == container_id)
        if lock:
            query = query.with_for_update()
        found = conn.execute(query).scalar()
        return 0 if found is None else int(found)

    def _append(self, event: NewEvent, expected_seq: int | None) -> Event:
        with self._engine.begin() as conn:
            last = self._head(conn, event.container_id, lock=True)
            if expected_seq is not None and expected_seq != last:
                raise ConcurrencyError(event.container_id, expected_seq, last)
            seq = last + 1
            prev_hash = self._last_hash(conn)
            chained = event.chained(seq, orjson.dumps(event.payload).decode())
            digest = chain.link(prev_hash, chained)
            row = dict(zip(CHAINED, chained, strict=True))
            result = conn.execute(insert(events).values(**row, prev_hash=prev_hash, hash=digest))
            state = next_state(None, event)
            if last == 0:
                conn.execute(
                    insert(containers).values(
                        id=event.container_id,
                        state=state,
                        seq=seq,
                        created_ns=event.time_ns,
                        updated_ns=event.time_ns,
                        machine_digest=event.machine_digest,
                    )
                )
            else:
                values: dict[str, Any] = {
                    "seq": seq,
                    "updated_ns": event.time_ns,
                    "machine_digest": event.machine_digest,
                }
                if state is not None:
                    values["state"] = state
                conn.execute(
                    update(containers).where(containers.c.id == event.container_id).values(values)
                )
            (event_id,) = result.inserted_primary_key or (None,)
        assert event_id is not None
        return event.recorded(int(event_id), seq, prev_hash, digest)

    def _last_hash(self, conn: Connection) -> str:
        """The hash the next event follows. On PostgreSQL, appends to other
        containers run concurrently: a transaction lock makes them take
        their turn at the log's end (SQLite's BEGIN IMMEDIATE already does)."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
        found = conn.execute(select(events.c.hash).order_by(events.c.id.desc()).limit(1)).first()
        if found is None:
            found = conn.execute(
                select(chain_anchors.c.hash).where(
                    chain_anchors.c.node == "", chain_anchors.c.log == ""
                )
            ).first()
        return chain.GENESIS if found is None or found[0] is None else str(found[0])

    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        query = (
            select(events)
            .where(events.c.container_id == container_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        with self._engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        query = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        with self._engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    def container(self, container_id: str) -> ContainerRow | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(containers).where(containers.c.id == container_id)).first()
        return None if row is None else ContainerRow(*row)

    def containers(self) -> list[ContainerRow]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(containers).order_by(containers.c.id)).all()
        return [ContainerRow(*r) for r in rows]

    def archive_machine(self, digest: str, text: str, path: str | None = None) -> None:
        if self.machine_text(digest) is not None:
            return
        row = {"digest": digest, "text": text, "path": path, "archived_ns": time.time_ns()}
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(machines).values(row))
        except IntegrityError:
            pass  # archived by another writer meanwhile: same digest, same text

    def machine_text(self, digest: str) -> str | None:
        query = select(machines.c.text).where(machines.c.digest == digest)
        with self._engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def close(self) -> None:
        self._engine.dispose()


def _event(row: Row[Any] | Sequence[Any]) -> Event:
    return Event.from_row(tuple(row), orjson.loads)
