"""identity, container lives, hash chain; the cluster's tables

Events gain who asked beyond uid and pid (user name, login uid, the
scheduler's context, the Slurm job), the root of the container's life, and
the hash chain (``prev_hash``, ``hash``; engine/eventlog/chain.py). The
events a log already holds are chained here, in id order, so an upgraded
log verifies. ``cluster_events`` and ``cluster_containers`` hold what
``runlog ship`` sends from every node; ``chain_anchors`` where pruning cut
a chain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here, as a migration must be: the chained columns at this revision.
CHAINED = (
    "container_id",
    "seq",
    "time_ns",
    "trigger",
    "source",
    "dest",
    "outcome",
    "actor_uid",
    "actor_pid",
    "actor_transport",
    "payload",
    "machine_digest",
    "actor_user",
    "actor_loginuid",
    "actor_context",
    "job",
    "root",
)
GENESIS = "0" * 64


def _identity_and_chain() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "actor_user", sa.String(length=256), nullable=True, comment="the uid's user name"
        ),
        sa.Column(
            "actor_loginuid",
            sa.BigInteger(),
            nullable=True,
            comment="/proc/PID/loginuid; NULL when unset",
        ),
        sa.Column(
            "actor_context",
            sa.Text(),
            nullable=True,
            comment="JSON object: Slurm job, step, user; podman container name, id",
        ),
        sa.Column(
            "job",
            sa.String(length=64),
            nullable=True,
            comment="the Slurm job id of the caller, if any",
        ),
        sa.Column(
            "root",
            sa.String(length=4096),
            nullable=True,
            comment="the --root of the container's life",
        ),
        sa.Column(
            "prev_hash",
            sa.String(length=64),
            nullable=True,
            comment="hash of the log's previous event",
        ),
        sa.Column(
            "hash",
            sa.String(length=64),
            nullable=True,
            comment="sha256 of prev_hash and this event's fields",
        ),
    ]


def _event_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("container_id", sa.String(length=1024), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False, comment="UTC, ns since the epoch"),
        sa.Column("trigger", sa.String(length=64), nullable=False),
        sa.Column(
            "source",
            sa.String(length=32),
            nullable=True,
            comment="state before; NULL when the container did not exist",
        ),
        sa.Column(
            "dest",
            sa.String(length=32),
            nullable=True,
            comment="state after; NULL when not reached (rejected, failed)",
        ),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_uid", sa.Integer(), nullable=True),
        sa.Column("actor_pid", sa.Integer(), nullable=True),
        sa.Column("actor_transport", sa.String(length=16), nullable=False),
        sa.Column(
            "payload", sa.Text(), nullable=False, comment="JSON object: action results, errors"
        ),
        sa.Column(
            "machine_digest", sa.String(length=64), nullable=False, comment="sha256 of the machine"
        ),
        *_identity_and_chain(),
    ]


def _canonical(values: tuple[object, ...]) -> bytes:
    parts = []
    for value in values:
        if value is None:
            parts.append("~")
        else:
            text = str(value)
            parts.append(f"{len(text)}:{text}")
    return "".join(parts).encode("utf-8", "surrogatepass")


def _chain_existing() -> None:
    import hashlib

    bind = op.get_bind()
    events = sa.table("events", sa.column("id"), *(sa.column(c) for c in (*CHAINED, "hash")))
    rows = bind.execute(sa.select(events.c.id, *(events.c[c] for c in CHAINED)).order_by("id"))
    last = GENESIS
    updates = []
    for row in rows:
        digest = hashlib.sha256(last.encode() + _canonical(tuple(row)[1:])).hexdigest()
        updates.append({"i": row[0], "p": last, "h": digest})
        last = digest
    if updates:
        bind.execute(sa.text("UPDATE events SET prev_hash = :p, hash = :h WHERE id = :i"), updates)


def upgrade() -> None:
    # Plain ADD COLUMN: a batch copy of the table would break the views on it.
    for column in _identity_and_chain():
        op.add_column("events", column)
    _chain_existing()

    op.create_table(
        "chain_anchors",
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("log", sa.String(length=4096), nullable=False),
        sa.Column(
            "last_id", sa.BigInteger(), nullable=False, comment="id of the last event pruned"
        ),
        sa.Column("hash", sa.String(length=64), nullable=False, comment="that event's hash"),
        sa.Column("pruned", sa.BigInteger(), nullable=False, comment="events pruned, in all"),
        sa.Column(
            "first_ns", sa.BigInteger(), nullable=False, comment="time of the first event pruned"
        ),
        sa.Column(
            "last_ns", sa.BigInteger(), nullable=False, comment="time of the last event pruned"
        ),
        sa.Column("pruned_ns", sa.BigInteger(), nullable=False, comment="when the last prune ran"),
        sa.PrimaryKeyConstraint("node", "log", name=op.f("pk_chain_anchors")),
    )
    op.create_table(
        "cluster_containers",
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("log", sa.String(length=4096), nullable=False),
        sa.Column("id", sa.String(length=1024), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=4096), nullable=True),
        sa.PrimaryKeyConstraint("node", "log", "id", name=op.f("pk_cluster_containers")),
    )
    with op.batch_alter_table("cluster_containers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cluster_containers_id"), ["id"], unique=False)

    op.create_table(
        "cluster_events",
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("log", sa.String(length=4096), nullable=False),
        sa.Column(
            "log_id", sa.BigInteger(), nullable=False, comment="the event's id in the node's log"
        ),
        *_event_columns(),
        sa.Column(
            "actions", sa.Integer(), nullable=True, comment="actions the transition completed"
        ),
        sa.Column(
            "duration_ms",
            sa.Float(),
            nullable=True,
            comment="the time they took; NULL for a rejected request",
        ),
        sa.Column(
            "hook_failures",
            sa.Integer(),
            nullable=True,
            comment="hook runs that failed or warned; NULL: none",
        ),
        sa.PrimaryKeyConstraint("node", "log", "log_id", name=op.f("pk_cluster_events")),
    )
    with op.batch_alter_table("cluster_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cluster_events_actor_user"), ["actor_user"])
        batch_op.create_index(
            batch_op.f("ix_cluster_events_container_id_node_log_id"),
            ["container_id", "node", "log_id"],
        )
        batch_op.create_index(batch_op.f("ix_cluster_events_job"), ["job"])
        batch_op.create_index(
            batch_op.f("ix_cluster_events_hook_failures_time_ns"),
            ["time_ns"],
            postgresql_where=sa.text("hook_failures IS NOT NULL"),
        )
        batch_op.create_index(
            batch_op.f("ix_cluster_events_time_ns"),
            ["time_ns"],
            postgresql_include=["trigger", "outcome", "node", "log", "container_id"],
        )


def downgrade() -> None:
    op.drop_table("cluster_events")
    op.drop_table("cluster_containers")
    op.drop_table("chain_anchors")
    for column in reversed(_identity_and_chain()):
        op.execute(f"ALTER TABLE events DROP COLUMN {column.name}")
