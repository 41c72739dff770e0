"""Reading the cluster's database (what ``runlog ship`` sent), with SQLAlchemy Core.

The same questions as a node's log answers (:mod:`engine.audit.query`,
:mod:`engine.audit.summary`), asked of ``cluster_events`` and
``cluster_containers``, where every event also names its node and log.
Like the SQLite readers, it never creates or upgrades a schema.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, case, func, or_, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from engine.audit.errors import UnknownContainer
from engine.audit.filters import Filters
from engine.audit.summary import (
    DEFAULT_TOP,
    HookFailures,
    PrunedSpan,
    SlowTransition,
    StateCount,
    Summary,
    TriggerCount,
    hook_results,
    overlapping,
)
from engine.audit.verify import ChainCheck, rows_of
from engine.errors import SchemaError
from engine.eventlog import chain
from engine.eventlog.record import Event
from engine.eventlog.sa import make_engine, redacted
from engine.eventlog.schema import (
    CHAINED,
    chain_anchors,
    cluster_containers,
    cluster_events,
    events,
    machines,
)
from engine.eventlog.store import EventReader
from engine.status import OUTCOMES, STATUSES

__all__ = ["ClusterReader", "is_cluster_url"]

E = cluster_events
CC = cluster_containers
AN = chain_anchors
_EVENT = (E.c.log_id, *(E.c[c] for c in CHAINED), E.c.prev_hash, E.c.hash, E.c.node, E.c.log)


def is_cluster_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def _event(row: Sequence[Any]) -> Event:
    """An event from a row of ``_EVENT``: its id is its id in the node's log."""
    *stored, node, log = row
    event = Event.from_row(stored, orjson.loads)
    event.node, event.log = node, log
    return event


class ClusterReader(EventReader):
    def __init__(self, url: str) -> None:
        from engine.eventlog import migrate

        self.location = redacted(url)
        self._engine: Engine = make_engine(url)
        try:
            version = migrate.current(url)
        except DBAPIError as err:
            self._engine.dispose()
            raise SchemaError(self.location, f"cannot be read: {err.orig}") from err
        if version != migrate.head():
            self._engine.dispose()
            raise SchemaError(
                self.location,
                f"is at schema revision {version or 'none'}, not {migrate.head()}; "
                "runlog ship (or runlog db upgrade) brings it there",
            )
        self._note_node_tables()

    def _note_node_tables(self) -> None:
        """Events an older runlog wrote to the node-style tables are not
        read here: say so, and what moves them."""
        with self._engine.connect() as conn:
            left = conn.execute(select(events.c.id).limit(1)).first()
        if left is not None:
            sys.stderr.write(
                f"runlog: note: {self.location}: events an older runlog wrote to the "
                "node-style events table are not read here; runlog db upgrade moves them\n"
            )

    def close(self) -> None:
        self._engine.dispose()

    def _where(self, filters: Filters) -> ColumnElement[bool]:
        terms: list[ColumnElement[bool]] = []
        if filters.ids or filters.prefixes:
            ids: list[ColumnElement[bool]] = []
            if filters.ids:
                ids.append(E.c.container_id.in_(filters.ids))
            ids += [E.c.container_id.startswith(p, autoescape=True) for p in filters.prefixes]
            terms.append(or_(*ids))
        if filters.since_ns is not None:
            terms.append(E.c.time_ns >= filters.since_ns)
        if filters.until_ns is not None:
            terms.append(E.c.time_ns < filters.until_ns)
        for column, values in (
            (E.c.trigger, filters.triggers),
            (E.c.outcome, filters.outcomes),
            (E.c.actor_uid, filters.actor_uids),
            (E.c.actor_transport, filters.transports),
            (E.c.node, filters.nodes),
            (E.c.actor_user, filters.users),
            (E.c.job, filters.jobs),
        ):
            if values:
                terms.append(column.in_(values))
        if filters.states:
            now = select(1).where(
                CC.c.node == E.c.node,
                CC.c.log == E.c.log,
                CC.c.id == E.c.container_id,
                CC.c.state.in_(filters.states),
            )
            terms.append(now.exists())
        return and_(true(), *terms)

    def check_ids(self, filters: Filters) -> None:
        with self._engine.connect() as conn:
            for cid in filters.ids:
                found = conn.execute(select(1).where(E.c.container_id == cid).limit(1)).first()
                if found is None:
                    raise UnknownContainer(cid, self.location)
            for prefix in filters.prefixes:
                query = select(1).where(E.c.container_id.startswith(prefix, autoescape=True))
                if conn.execute(query.limit(1)).first() is None:
                    raise UnknownContainer(prefix, self.location, prefix=True)

    def select_events(self, filters: Filters) -> list[Event]:
        """Matching events by time (then node, log, id); with a limit, the latest."""
        order = (E.c.time_ns, E.c.node, E.c.log, E.c.log_id)
        query = select(*_EVENT).where(self._where(filters))
        with self._engine.connect() as conn:
            if filters.limit is None:
                rows = conn.execute(query.order_by(*order)).all()
            else:
                latest = query.order_by(*(c.desc() for c in order)).limit(filters.limit)
                rows = conn.execute(latest).all()[::-1]
        return [_event(r) for r in rows]

    def history(
        self,
        container_id: str,
        *,
        until_seq: int | None = None,
        until_ns: int | None = None,
        node: str | None = None,
    ) -> list[Event]:
        """Every life of ``container_id``: grouped by node and log, each in seq order."""
        query = select(*_EVENT).where(E.c.container_id == container_id)
        if node is not None:
            query = query.where(E.c.node == node)
        if until_seq is not None:
            query = query.where(E.c.seq <= until_seq)
        if until_ns is not None:
            query = query.where(E.c.time_ns <= until_ns)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(E.c.node, E.c.log, E.c.log_id)).all()
        return [_event(r) for r in rows]

    def container_ids(self, filters: Filters) -> list[str]:
        query = select(E.c.container_id).where(self._where(filters)).distinct()
        with self._engine.connect() as conn:
            return sorted(str(c) for (c,) in conn.execute(query))

    def _replay_select(self, filters: Filters) -> Any:
        """Whole histories one matching event names; each (node, log, id) is
        a history of its own, named ``ID@NODE:LOG`` (ids repeat across nodes)."""
        picked = select(E.c.node, E.c.log, E.c.container_id).where(self._where(filters))
        histories = picked.distinct().subquery()
        return select(E).join(
            histories,
            and_(
                E.c.node == histories.c.node,
                E.c.log == histories.c.log,
                E.c.container_id == histories.c.container_id,
            ),
        )

    def count_replay_rows(self, filters: Filters) -> int:
        query = select(func.count()).select_from(self._replay_select(filters).subquery())
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def replay_rows(self, filters: Filters) -> Iterator[tuple[Any, ...]]:
        from engine.audit.query import REPLAY_COLUMNS

        sub = self._replay_select(filters).subquery()
        payload = sub.c.payload
        outcome = case(
            (and_(sub.c.outcome == "rejected", payload.contains('"refused":')), "refused"),
            (and_(sub.c.outcome == "ok", payload.contains('"query":true')), "query"),
            else_=sub.c.outcome,
        )
        name = sub.c.container_id + "@" + sub.c.node + ":" + sub.c.log
        columns = {"container_id": name, "outcome": outcome}
        query = select(*(columns.get(c, sub.c[c]) for c in REPLAY_COLUMNS)).order_by(
            sub.c.node, sub.c.log, sub.c.log_id
        )
        with self._engine.connect() as conn:
            for row in conn.execution_options(yield_per=4096).execute(query):
                yield tuple(row)

    def machine_text(self, digest: str) -> str | None:
        query = select(machines.c.text).where(machines.c.digest == digest)
        with self._engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def state(self, node: str, log: str, container_id: str) -> str | None:

        query = select(CC.c.state).where(
            CC.c.node == node, CC.c.log == log, CC.c.id == container_id
        )
        with self._engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def current_states(self) -> list[tuple[str, str, str, str | None]]:
        """Every shipped container's (node, log, id, state) now."""
        query = select(CC.c.node, CC.c.log, CC.c.id, CC.c.state)
        with self._engine.connect() as conn:
            return [(str(n), str(lg), str(i), s) for n, lg, i, s in conn.execute(query)]

    def summarize(self, filters: Filters, top: int = DEFAULT_TOP) -> Summary:
        """Events per trigger and outcome, containers by state now, hook
        failures by point, the slowest transitions (as the SQLite views
        count them: engine.audit.summary). The four are asked at once, on
        connections of their own: the server answers them side by side."""
        from concurrent.futures import ThreadPoolExecutor

        where = self._where(filters)
        filtered = filters.where("e")[0] != "1"
        with ThreadPoolExecutor(max_workers=4) as pool:
            triggers = pool.submit(self._triggers, where)
            states = pool.submit(self._states, where, filtered)
            hooks = pool.submit(self._hook_failures, where)
            slowest = pool.submit(self._slowest, where, top)
            pruned = self._pruned()
            return Summary(
                filters.since_ns,
                filters.until_ns,
                filtered,
                triggers.result(),
                states.result(),
                hooks.result(),
                slowest.result(),
                overlapping(pruned, filters.since_ns, filters.until_ns),
            )

    def _triggers(self, where: ColumnElement[bool]) -> tuple[TriggerCount, ...]:
        query = select(E.c.trigger, E.c.outcome, func.count()).where(where)
        counts: dict[str, dict[str, int]] = {}
        with self._engine.connect() as conn:
            for trigger, outcome, n in conn.execute(query.group_by(E.c.trigger, E.c.outcome)):
                counts.setdefault(str(trigger), dict.fromkeys(OUTCOMES, 0))[str(outcome)] = int(n)
        return tuple(
            TriggerCount(t, c["ok"], c["rejected"], c["failed"]) for t, c in sorted(counts.items())
        )

    def _states(self, where: ColumnElement[bool], filtered: bool) -> tuple[StateCount, ...]:
        """Containers by state now: those with an event the filters pick."""
        states = select(CC.c.state, func.count())
        if filtered:
            picked = select(E.c.node, E.c.log, E.c.container_id).where(where).distinct().subquery()
            states = states.join(
                picked,
                and_(
                    CC.c.node == picked.c.node,
                    CC.c.log == picked.c.log,
                    CC.c.id == picked.c.container_id,
                ),
            )
        with self._engine.connect() as conn:
            rows = conn.execute(states.group_by(CC.c.state)).all()
        order = {s: i for i, s in enumerate(STATUSES)}
        return tuple(
            StateCount(s, int(n))
            for s, n in sorted(rows, key=lambda r: order.get(r[0], len(order)))
        )

    def _hook_failures(self, where: ColumnElement[bool]) -> tuple[HookFailures, ...]:
        """The events the shipper found failed hook runs in (``hook_failures``)."""
        query = select(E.c.outcome, E.c.payload).where(where, E.c.hook_failures.is_not(None))
        failures: dict[str, dict[str, int]] = {}
        with self._engine.connect() as conn:
            for outcome, payload in conn.execute(query):
                for point, result in hook_results(outcome, orjson.loads(payload)):
                    if result != "ok":
                        counts = failures.setdefault(point, {"failed": 0, "warned": 0})
                        counts[result] += 1
        return tuple(HookFailures(p, c["failed"], c["warned"]) for p, c in sorted(failures.items()))

    def _slowest(self, where: ColumnElement[bool], top: int) -> tuple[SlowTransition, ...]:
        """By the durations the shipper worked out (``duration_ms``)."""
        query = (
            select(
                E.c.log_id,
                E.c.container_id,
                E.c.seq,
                E.c.time_ns,
                E.c.trigger,
                E.c.source,
                E.c.dest,
                E.c.outcome,
                E.c.actions,
                E.c.duration_ms,
            )
            .where(where, E.c.outcome != "rejected")
            .order_by(E.c.duration_ms.desc().nulls_last(), E.c.log_id)
            .limit(top)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return tuple(
            SlowTransition(*row[:8], int(row[8] or 0), float(row[9] or 0.0)) for row in rows
        )

    def _pruned(self) -> list[PrunedSpan]:
        query = select(AN.c.node, AN.c.log, AN.c.pruned, AN.c.first_ns, AN.c.last_ns)
        with self._engine.connect() as conn:
            return [
                PrunedSpan(f"{node}:{log}", int(n), int(first), int(last))
                for node, log, n, first, last in conn.execute(query)
            ]

    def verify(self) -> list[ChainCheck]:
        """Every (node, log) chain, each from its anchor."""

        checks: list[ChainCheck] = []
        with self._engine.connect() as conn:
            logs = conn.execute(select(E.c.node, E.c.log).distinct().order_by(E.c.node, E.c.log))
            for node, log in logs.all():
                anchor = conn.execute(
                    select(AN.c.last_id, AN.c.hash, AN.c.pruned).where(
                        AN.c.node == node, AN.c.log == log
                    )
                ).first()
                after, start, pruned = (0, chain.GENESIS, 0) if anchor is None else tuple(anchor)
                rows = conn.execution_options(yield_per=5000).execute(
                    select(E.c.log_id, *(E.c[c] for c in CHAINED), E.c.prev_hash, E.c.hash)
                    .where(E.c.node == node, E.c.log == log, E.c.log_id > after)
                    .order_by(E.c.log_id)
                )
                count, _, broken = chain.verify_rows(rows_of(rows), start, int(after))
                checks.append(ChainCheck(f"{node}:{log}", count, broken, int(pruned)))
        return checks
