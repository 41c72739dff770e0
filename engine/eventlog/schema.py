"""The event log's schema: SQLAlchemy ``Table``s and SQL views, the single source of truth.

Alembic's migrations (``migrations/``) are generated from these tables, and
so is the SQL the hot path runs through the DB-API (``engine.eventlog.sql``,
written by ``make sql``; a test checks it is current). Nothing on the hot
path imports this module: SQLAlchemy alone costs ~190 ms to import.

The views (:data:`VIEWS`) are for people: someone with ``sqlite3`` or a BI
tool can ask the log questions without knowing how payloads are shaped.
SQLAlchemy has no view construct, so they are SELECT texts here, created by
migration 0002 and by the generated DDL; a test checks both build the same.
They use SQLite's JSON functions (``json_extract``, ``json_each``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine

from engine.errors import UnsupportedError

__all__ = [
    "CHAINED",
    "CHANNEL",
    "VIEWS",
    "chain_anchors",
    "cluster_containers",
    "cluster_events",
    "containers",
    "driver_url",
    "events",
    "machines",
    "make_engine",
    "metadata",
    "redacted",
    "view_select",
]

#: The channel a commit to the cluster's tables notifies (a shipped batch,
#: a node writing straight to them): runlog events --follow listens.
CHANNEL = "runlog_shipped"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _identity_and_chain() -> list[Column[object]]:
    """Who asked beyond uid and pid, the container's life, and the hash chain."""
    return [
        Column("actor_user", String(256), comment="the uid's user name"),
        Column("actor_loginuid", BigInteger, comment="/proc/PID/loginuid; NULL when unset"),
        Column(
            "actor_context",
            Text,
            comment="JSON object: Slurm job, step, user; podman container name, id",
        ),
        Column("job", String(64), comment="the Slurm job id of the caller, if any"),
        Column("root", String(4096), comment="the --root of the container's life"),
        Column("prev_hash", String(64), comment="hash of the log's previous event"),
        Column("hash", String(64), comment="sha256 of prev_hash and this event's fields"),
    ]


# One row per event, in a total order (id). (container_id, seq) is UNIQUE: a
# writer that read seq N and appends N+1 loses cleanly to a concurrent one.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("container_id", String(1024), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("time_ns", BigInteger, nullable=False, comment="UTC, ns since the epoch"),
    Column("trigger", String(64), nullable=False),
    Column("source", String(32), comment="state before; NULL when the container did not exist"),
    Column("dest", String(32), comment="state after; NULL when not reached (rejected, failed)"),
    Column("outcome", String(16), nullable=False),
    Column("actor_uid", Integer),
    Column("actor_pid", Integer),
    Column("actor_transport", String(16), nullable=False),
    Column("payload", Text, nullable=False, comment="JSON object: action results, errors"),
    Column("machine_digest", String(64), nullable=False, comment="sha256 of the machine"),
    *_identity_and_chain(),
    UniqueConstraint("container_id", "seq"),
    CheckConstraint("outcome IN ('ok', 'rejected', 'failed')", name="outcome"),
    CheckConstraint("seq > 0", name="seq_positive"),
    Index(None, "time_ns"),
)

# The projection: each container's current state, updated in the same
# transaction as the event that changed it. ``state`` is NULL for an id that
# only ever had rejected or failed requests (it never existed).
containers = Table(
    "containers",
    metadata,
    Column("id", String(1024), primary_key=True),
    Column("state", String(32)),
    Column("seq", Integer, nullable=False, comment="seq of the container's last event"),
    Column("created_ns", BigInteger, nullable=False, comment="time of its first event"),
    Column("updated_ns", BigInteger, nullable=False, comment="time of its last event"),
    Column("machine_digest", String(64), nullable=False),
    Index(None, "state"),
)

# Machine definitions by digest, so that a history can be replayed through
# the machine it was recorded with even after statemachine.yaml has changed.
# Content-addressed: a row never changes once written.
machines = Table(
    "machines",
    metadata,
    Column("digest", String(64), primary_key=True, comment="sha256 of text, as events record it"),
    Column("text", Text, nullable=False, comment="the machine definition file, UTF-8"),
    Column("path", String(4096), comment="where it was read from when first archived"),
    Column("archived_ns", BigInteger, nullable=False, comment="UTC, ns since the epoch"),
)

#: The columns an event's hash covers (besides prev_hash), in this order:
#: every column but id and the two hashes (engine.eventlog.chain).
CHAINED = tuple(c.name for c in events.columns if c.name not in ("id", "prev_hash", "hash"))

# The cluster's log (``runlog ship``): every node's events, keyed by the
# node, the log (its path on the node) and the event's id in that log, so
# that a batch sent twice adds nothing. The hashes are the node's: the
# chain of each (node, log) verifies here as it did there.
cluster_events = Table(
    "cluster_events",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("log", String(4096), primary_key=True),
    Column("log_id", BigInteger, primary_key=True, comment="the event's id in the node's log"),
    *(c._copy() for c in events.columns if c.name != "id"),
    # What the summary's slowest transitions sort by, worked out once by
    # the shipper rather than from every payload of a window at each query.
    Column("actions", Integer, comment="actions the transition completed"),
    Column("duration_ms", Float, comment="the time they took; NULL for a rejected request"),
    Column("hook_failures", Integer, comment="hook runs that failed or warned; NULL: none"),
    Index(None, "container_id", "node", "log_id"),
    # A window's counts and containers from the index alone (PostgreSQL).
    Index(
        None,
        "time_ns",
        postgresql_include=["trigger", "outcome", "node", "log", "container_id"],
    ),
    # The few events with failed hook runs, by time.
    Index(
        "ix_cluster_events_hook_failures_time_ns",
        "time_ns",
        postgresql_where=text("hook_failures IS NOT NULL"),
    ),
    Index(None, "job"),
    Index(None, "actor_user"),
)

# Each shipped container's state now, per node and log, kept by the shipper
# in the transaction of the batch that changed it.
cluster_containers = Table(
    "cluster_containers",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("log", String(4096), primary_key=True),
    Column("id", String(1024), primary_key=True),
    Column("state", String(32)),
    Column("seq", Integer, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("root", String(4096)),
    Index(None, "id"),
)

# A log's chain anchor: where pruning cut it (``runlog db prune``). The
# first event left has ``prev_hash`` equal to ``hash`` here, so what remains
# still verifies, and ``runlog audit --summary`` can say what was pruned.
# ``node`` and ``log`` are empty strings in a node's own log.
chain_anchors = Table(
    "chain_anchors",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("log", String(4096), primary_key=True),
    Column("last_id", BigInteger, nullable=False, comment="id of the last event pruned"),
    Column("hash", String(64), nullable=False, comment="that event's hash"),
    Column("pruned", BigInteger, nullable=False, comment="events pruned, in all"),
    Column("first_ns", BigInteger, nullable=False, comment="time of the first event pruned"),
    Column("last_ns", BigInteger, nullable=False, comment="time of the last event pruned"),
    Column("pruned_ns", BigInteger, nullable=False, comment="when the last prune ran"),
)

# -- views -------------------------------------------------------------------
#
# Each view is a SELECT over ``{events}``: the view reads the events table,
# and ``runlog audit --summary`` runs the same SELECT over the events its
# filters picked (``view_select(name, "picked")``), so the summary and the
# views cannot disagree. The texts are kept readable: ``sqlite3 .schema``
# shows them as written.

_EVENT_HEAD = """\
    e.id AS event_id,
    e.container_id AS container_id,
    e.seq AS seq,
    e.time_ns AS time_ns,
    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,
    e."trigger" AS "trigger",
"""

# A hook run is a dict (path, exit_code, duration_ms, stderr_tail) in one of
# four places of a payload (engine/actions/hook.py, engine/lifecycle.py):
# the hooks of an ok transition's hook action; the runs of a hook that failed
# with on_failure: warn; the hooks that completed before a transition failed
# (``done``); the runs of the hook action that failed it (``details.runs``,
# whose point is only in the action's label, ``hook(createRuntime, abort)``).
_HOOK_COLUMNS = """\
    json_extract(h.value, '$.path') AS path,
    json_extract(h.value, '$.exit_code') AS exit_code,
    json_extract(h.value, '$.duration_ms') AS duration_ms,
    json_extract(h.value, '$.stderr_tail') AS stderr_tail,
    CASE json_extract(h.value, '$.exit_code')
        WHEN 0 THEN 'ok' ELSE '{failure}' END AS result
"""


def _hooks_in(actions: str, runs: str, failure: str) -> str:
    return (
        f"SELECT\n{_EVENT_HEAD}"
        "    e.outcome AS event_outcome,\n"
        "    json_extract(a.value, '$.result.point') AS point,\n"
        "    json_extract(a.value, '$.action') AS action,\n"
        f"{_HOOK_COLUMNS.format(failure=failure)}"
        "FROM {events} AS e,\n"
        f"    json_each(e.payload, '{actions}') AS a,\n"
        f"    json_each(a.value, '$.result.{runs}') AS h\n"
    )


_FAILED_HOOK = (
    f"SELECT\n{_EVENT_HEAD}"
    "    e.outcome AS event_outcome,\n"
    "    substr(json_extract(e.payload, '$.action'), 6,\n"
    "        instr(json_extract(e.payload, '$.action'), ',') - 6) AS point,\n"
    "    json_extract(e.payload, '$.action') AS action,\n"
    f"{_HOOK_COLUMNS.format(failure='failed')}"
    "FROM {events} AS e,\n"
    "    json_each(e.payload, '$.details.runs') AS h\n"
    "WHERE e.outcome = 'failed' AND json_extract(e.payload, '$.action') LIKE 'hook(%'"
)

# The actions a transition completed: all of an ok one's, those before the
# failure of a failed one.
_COMPLETED = "\n        CASE e.outcome WHEN 'failed' THEN '$.done' ELSE '$.actions' END"

_VIEW_TEMPLATES: dict[str, str] = {
    # Every container id the log knows, with its state now. ``state`` is
    # NULL for an id that only ever had rejected or failed requests;
    # ``present`` is 0 for those and for deleted containers.
    "container_current_state": """\
SELECT
    c.id AS container_id,
    c.state AS state,
    (c.state IS NOT NULL AND c.state != 'deleted') AS present,
    c.seq AS last_seq,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.created_ns / 1e9, 'unixepoch') AS first_event_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.updated_ns / 1e9, 'unixepoch') AS last_event_at,
    c.machine_digest AS machine_digest
FROM containers AS c""",
    # Every attempted transition (ok or failed) and what its completed
    # actions took, in ms.
    "transition_durations": (
        f"SELECT\n{_EVENT_HEAD}"
        "    e.source AS source,\n"
        "    e.dest AS dest,\n"
        "    e.outcome AS outcome,\n"
        f"    (SELECT count(*) FROM json_each(e.payload,{_COMPLETED})) AS actions,\n"
        "    (SELECT round(total(json_extract(a.value, '$.ms')), 3)\n"
        f"        FROM json_each(e.payload,{_COMPLETED}) AS a)\n"
        "        AS duration_ms\n"
        "FROM {events} AS e\n"
        "WHERE e.outcome != 'rejected'"
    ),
    # One row per hook run. ``result``: ok; warned (it failed, on_failure:
    # warn, and the lifecycle went on); failed (the transition was aborted).
    "hook_runs": "UNION ALL\n".join(
        (
            _hooks_in("$.actions", "hooks", "failed"),
            _hooks_in("$.actions", "runs", "warned"),
            _hooks_in("$.done", "hooks", "failed"),
            _FAILED_HOOK,
        )
    ),
    # Requests the machine refused: who asked, in which state, and why.
    # ``state`` is NULL when the container did not exist.
    "rejected_requests": (
        f"SELECT\n{_EVENT_HEAD}"
        "    e.source AS state,\n"
        "    json_extract(e.payload, '$.error') AS error,\n"
        "    e.actor_uid AS actor_uid,\n"
        "    e.actor_pid AS actor_pid,\n"
        "    e.actor_transport AS transport,\n"
        "    json_extract(e.payload, '$.request') AS request\n"
        "FROM {events} AS e\n"
        "WHERE e.outcome = 'rejected'"
    ),
}


def view_select(name: str, events: str = "events") -> str:
    """The SELECT of view ``name``, reading events from the relation ``events``."""
    return _VIEW_TEMPLATES[name].format(events=events)


#: View name → its SELECT, in creation order.
VIEWS: dict[str, str] = {name: view_select(name) for name in _VIEW_TEMPLATES}


#: The PostgreSQL URL schemes people write, and the driver runlog uses.
_POSTGRES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def driver_url(url: str) -> str:
    """``url`` with runlog's driver named: ``postgresql://`` is psycopg 3.

    A missing psycopg is a one-line error naming the extra that brings it.
    """
    for scheme in _POSTGRES:
        if url.startswith(scheme):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise UnsupportedError(
                    f"event log {redacted(url)}: PostgreSQL needs psycopg 3, "
                    "which is not installed; install runlog's extra: pip install 'runlog[postgres]'"
                ) from None
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def make_engine(url: str) -> Engine:
    """An engine over these tables (for the store, engine.eventlog.sa, and
    for migrations); on SQLite, one whose transactions are ``BEGIN IMMEDIATE``."""
    sa_engine = create_engine(driver_url(url))
    if sa_engine.dialect.name == "sqlite":
        # pysqlite's implicit BEGIN is deferred; take transactions over
        # (SQLAlchemy docs, "Serializable isolation / Savepoints /
        # Transactional DDL") so the head read and the insert are one
        # write-locked unit, and DDL in migrations is transactional.
        @event.listens_for(sa_engine, "connect")
        def _connect(dbapi_conn: Any, _record: object) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(sa_engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return sa_engine
