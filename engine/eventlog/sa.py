"""The event store over any SQLAlchemy URL (PostgreSQL for a cluster-wide log).

Not for the hot path of a single host (that is :mod:`engine.eventlog.sqlite`);
it is what ``--db postgresql://...`` selects. The same contract: appends lock
the container's head row (``SELECT ... FOR UPDATE``, ``BEGIN IMMEDIATE`` on
SQLite) and a lost race is retried or reported as a concurrency error.

On SQLite it writes a node's tables (``events``, ``containers``). On
PostgreSQL - the cluster's database - a node writing straight to it writes
where ``runlog ship`` puts every node's events (``cluster_events``,
``cluster_containers``), as the log :data:`DIRECT_LOG` of its node
(the host name), with its own hash chain: the cluster's readers
(engine.audit.cluster) show its events beside the shipped ones, and
``audit --verify`` checks its chain as any other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Row, and_, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.errors import ConcurrencyError, SchemaError
from engine.eventlog import chain
from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.eventlog.schema import (
    CHAINED,
    CHANNEL,
    chain_anchors,
    cluster_containers,
    cluster_events,
    containers,
    driver_url,
    events,
    machines,
    make_engine,
    redacted,
)
from engine.eventlog.store import EventStore, next_state

__all__ = ["DIRECT_LOG", "SAStore", "driver_url", "make_engine", "redacted"]

#: The first key of the advisory lock of one (node, log) chain in the
#: cluster's tables; the second is a hash of the node and the log.
_CLUSTER_LOCK = 0x72756E6C  # "runl"
#: The log a node writing straight to PostgreSQL appends to: not a path,
#: so it is never one that ``runlog ship`` sends.
DIRECT_LOG = "direct"

E = cluster_events
CC = cluster_containers
_CLUSTER_EVENT = (E.c.log_id, *(E.c[c] for c in CHAINED), E.c.prev_hash, E.c.hash)


class SAStore(EventStore):
    def __init__(
        self, url: str, *, retries: int = 20, node: str | None = None, log: str = DIRECT_LOG
    ) -> None:
        from engine.eventlog import migrate

        self.location = url
        self.retries = retries
        self._engine = make_engine(url)
        #: (node, log) in the cluster's tables, on PostgreSQL; None on SQLite.
        self.slice: tuple[str, str] | None = None
        if self._engine.dialect.name == "postgresql":
            import socket

            self.slice = (node or socket.gethostname(), log)
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
        if self.slice is not None:
            node, log = self.slice
            query = select(CC.c.seq).where(
                CC.c.node == node, CC.c.log == log, CC.c.id == container_id
            )
        else:
            query = select(containers.c.seq).where(containers.c.id == container_id)
        if lock:
            query = query.with_for_update()
        found = conn.execute(query).scalar()
        return 0 if found is None else int(found)

    def _append(self, event: NewEvent, expected_seq: int | None) -> Event:
        if self.slice is not None:
            return self._append_cluster(event, expected_seq, *self.slice)
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
        """The hash the next event follows (BEGIN IMMEDIATE holds the log's
        end for this transaction)."""
        found = conn.execute(select(events.c.hash).order_by(events.c.id.desc()).limit(1)).first()
        if found is None:
            found = conn.execute(
                select(chain_anchors.c.hash).where(
                    chain_anchors.c.node == "", chain_anchors.c.log == ""
                )
            ).first()
        return chain.GENESIS if found is None or found[0] is None else str(found[0])

    def _append_cluster(
        self, event: NewEvent, expected_seq: int | None, node: str, log: str
    ) -> Event:
        """Append to this node's log in the cluster's tables, as a shipped
        batch would have put it there: under the (node, log) chain's lock,
        the next id of the log, the hash after the log's last (or its prune
        anchor), the container's head, the timing columns the summaries
        read, and a NOTIFY for ``runlog events --follow``."""
        from engine.audit.summary import transition_timing

        with self._engine.begin() as conn:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:a, hashtext(:b))"),
                {"a": _CLUSTER_LOCK, "b": f"{node}/{log}"},
            )
            last = self._head(conn, event.container_id, lock=True)
            if expected_seq is not None and expected_seq != last:
                raise ConcurrencyError(event.container_id, expected_seq, last)
            seq = last + 1
            head = conn.execute(
                select(E.c.log_id, E.c.hash)
                .where(E.c.node == node, E.c.log == log)
                .order_by(E.c.log_id.desc())
                .limit(1)
            ).first()
            if head is None:
                head = conn.execute(
                    select(chain_anchors.c.last_id, chain_anchors.c.hash).where(
                        chain_anchors.c.node == node, chain_anchors.c.log == log
                    )
                ).first()
            last_id, prev_hash = (0, chain.GENESIS) if head is None else (int(head[0]), head[1])
            payload = orjson.dumps(event.payload).decode()
            chained = event.chained(seq, payload)
            digest = chain.link(prev_hash, chained)
            actions, duration_ms, hook_failures = transition_timing(event.outcome, payload)
            conn.execute(
                insert(E).values(
                    node=node,
                    log=log,
                    log_id=last_id + 1,
                    **dict(zip(CHAINED, chained, strict=True)),
                    prev_hash=prev_hash,
                    hash=digest,
                    actions=actions,
                    duration_ms=duration_ms,
                    hook_failures=hook_failures,
                )
            )
            state = next_state(None, event)
            if last == 0:
                conn.execute(
                    insert(CC).values(
                        node=node,
                        log=log,
                        id=event.container_id,
                        state=state,
                        seq=seq,
                        created_ns=event.time_ns,
                        updated_ns=event.time_ns,
                        root=event.root,
                    )
                )
            else:
                values: dict[str, Any] = {"seq": seq, "updated_ns": event.time_ns}
                if state is not None:
                    values["state"] = state
                if event.root is not None:
                    values["root"] = event.root
                conn.execute(
                    update(CC)
                    .where(CC.c.node == node, CC.c.log == log, CC.c.id == event.container_id)
                    .values(values)
                )
            conn.execute(text("SELECT pg_notify(:c, :n)"), {"c": CHANNEL, "n": node})
        return event.recorded(last_id + 1, seq, prev_hash, digest)

    def _cluster_events(self, *where: Any) -> Any:
        assert self.slice is not None
        node, log = self.slice
        return select(*_CLUSTER_EVENT).where(E.c.node == node, E.c.log == log, *where)

    def _cluster_heads(self) -> Any:
        """This log's containers with the machine of each one's last event."""
        assert self.slice is not None
        node, log = self.slice
        return (
            select(
                CC.c.id, CC.c.state, CC.c.seq, CC.c.created_ns, CC.c.updated_ns, E.c.machine_digest
            )
            .join(
                E,
                and_(
                    E.c.node == CC.c.node,
                    E.c.log == CC.c.log,
                    E.c.container_id == CC.c.id,
                    E.c.seq == CC.c.seq,
                ),
            )
            .where(CC.c.node == node, CC.c.log == log)
        )

    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        if self.slice is not None:
            query = self._cluster_events(
                E.c.container_id == container_id, E.c.seq > after_seq
            ).order_by(E.c.seq)
            with self._engine.connect() as conn:
                return [_event(r) for r in conn.execute(query)]
        query = (
            select(events)
            .where(events.c.container_id == container_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        with self._engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        if self.slice is not None:
            query = self._cluster_events(E.c.log_id > after_id).order_by(E.c.log_id).limit(limit)
            with self._engine.connect() as conn:
                return [_event(r) for r in conn.execute(query)]
        query = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        with self._engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    def container(self, container_id: str) -> ContainerRow | None:
        if self.slice is not None:
            query = self._cluster_heads().where(CC.c.id == container_id)
            with self._engine.connect() as conn:
                found = conn.execute(query).first()
            return None if found is None else ContainerRow(*found)
        with self._engine.connect() as conn:
            row = conn.execute(select(containers).where(containers.c.id == container_id)).first()
        return None if row is None else ContainerRow(*row)

    def containers(self) -> list[ContainerRow]:
        if self.slice is not None:
            with self._engine.connect() as conn:
                rows = conn.execute(self._cluster_heads().order_by(CC.c.id)).all()
            return [ContainerRow(*r) for r in rows]
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
