"""The event log's schema: SQLAlchemy ``Table``s, the single source of truth.

Alembic's migrations (``migrations/``) are generated from these tables, and
so is the SQL the hot path runs through the DB-API (``engine.eventlog.sql``,
written by ``make sql``; a test checks it is current). Nothing on the hot
path imports this module: SQLAlchemy alone costs ~190 ms to import.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["containers", "events", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

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
