"""machines archive, audit views and indexes

The ``machines`` table keeps each machine definition by digest, so a history
can be replayed through the machine it was recorded with. The views are the
event log's interface for people with ``sqlite3`` or a BI tool (README,
"Audit and replay"). Their text is frozen here, as a migration must be;
``tests/eventlog/test_views.py`` checks it equals ``schema.VIEWS``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 04:44:09.748249
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = {
    "container_current_state": (
        "SELECT\n"
        "    c.id AS container_id,\n"
        "    c.state AS state,\n"
        "    (c.state IS NOT NULL AND c.state != 'deleted') AS present,\n"
        "    c.seq AS last_seq,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', c.created_ns / 1e9, 'unixepoch') AS first_event_at,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', c.updated_ns / 1e9, 'unixepoch') AS last_event_at,\n"
        "    c.machine_digest AS machine_digest\n"
        "FROM containers AS c"
    ),
    "transition_durations": (
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.source AS source,\n"
        "    e.dest AS dest,\n"
        "    e.outcome AS outcome,\n"
        "    (SELECT count(*) FROM json_each(e.payload,\n"
        "        CASE e.outcome WHEN 'failed' THEN '$.done' ELSE '$.actions' END)) AS actions,\n"
        "    (SELECT round(total(json_extract(a.value, '$.ms')), 3)\n"
        "        FROM json_each(e.payload,\n"
        "        CASE e.outcome WHEN 'failed' THEN '$.done' ELSE '$.actions' END) AS a)\n"
        "        AS duration_ms\n"
        "FROM events AS e\n"
        "WHERE e.outcome != 'rejected'"
    ),
    "hook_runs": (
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.outcome AS event_outcome,\n"
        "    json_extract(a.value, '$.result.point') AS point,\n"
        "    json_extract(a.value, '$.action') AS action,\n"
        "    json_extract(h.value, '$.path') AS path,\n"
        "    json_extract(h.value, '$.exit_code') AS exit_code,\n"
        "    json_extract(h.value, '$.duration_ms') AS duration_ms,\n"
        "    json_extract(h.value, '$.stderr_tail') AS stderr_tail,\n"
        "    CASE json_extract(h.value, '$.exit_code')\n"
        "        WHEN 0 THEN 'ok' ELSE 'failed' END AS result\n"
        "FROM events AS e,\n"
        "    json_each(e.payload, '$.actions') AS a,\n"
        "    json_each(a.value, '$.result.hooks') AS h\n"
        "UNION ALL\n"
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.outcome AS event_outcome,\n"
        "    json_extract(a.value, '$.result.point') AS point,\n"
        "    json_extract(a.value, '$.action') AS action,\n"
        "    json_extract(h.value, '$.path') AS path,\n"
        "    json_extract(h.value, '$.exit_code') AS exit_code,\n"
        "    json_extract(h.value, '$.duration_ms') AS duration_ms,\n"
        "    json_extract(h.value, '$.stderr_tail') AS stderr_tail,\n"
        "    CASE json_extract(h.value, '$.exit_code')\n"
        "        WHEN 0 THEN 'ok' ELSE 'warned' END AS result\n"
        "FROM events AS e,\n"
        "    json_each(e.payload, '$.actions') AS a,\n"
        "    json_each(a.value, '$.result.runs') AS h\n"
        "UNION ALL\n"
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.outcome AS event_outcome,\n"
        "    json_extract(a.value, '$.result.point') AS point,\n"
        "    json_extract(a.value, '$.action') AS action,\n"
        "    json_extract(h.value, '$.path') AS path,\n"
        "    json_extract(h.value, '$.exit_code') AS exit_code,\n"
        "    json_extract(h.value, '$.duration_ms') AS duration_ms,\n"
        "    json_extract(h.value, '$.stderr_tail') AS stderr_tail,\n"
        "    CASE json_extract(h.value, '$.exit_code')\n"
        "        WHEN 0 THEN 'ok' ELSE 'failed' END AS result\n"
        "FROM events AS e,\n"
        "    json_each(e.payload, '$.done') AS a,\n"
        "    json_each(a.value, '$.result.hooks') AS h\n"
        "UNION ALL\n"
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.outcome AS event_outcome,\n"
        "    substr(json_extract(e.payload, '$.action'), 6,\n"
        "        instr(json_extract(e.payload, '$.action'), ',') - 6) AS point,\n"
        "    json_extract(e.payload, '$.action') AS action,\n"
        "    json_extract(h.value, '$.path') AS path,\n"
        "    json_extract(h.value, '$.exit_code') AS exit_code,\n"
        "    json_extract(h.value, '$.duration_ms') AS duration_ms,\n"
        "    json_extract(h.value, '$.stderr_tail') AS stderr_tail,\n"
        "    CASE json_extract(h.value, '$.exit_code')\n"
        "        WHEN 0 THEN 'ok' ELSE 'failed' END AS result\n"
        "FROM events AS e,\n"
        "    json_each(e.payload, '$.details.runs') AS h\n"
        "WHERE e.outcome = 'failed' AND json_extract(e.payload, '$.action') LIKE 'hook(%'"
    ),
    "rejected_requests": (
        "SELECT\n"
        "    e.id AS event_id,\n"
        "    e.container_id AS container_id,\n"
        "    e.seq AS seq,\n"
        "    e.time_ns AS time_ns,\n"
        "    strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1e9, 'unixepoch') AS at,\n"
        '    e."trigger" AS "trigger",\n'
        "    e.source AS state,\n"
        "    json_extract(e.payload, '$.error') AS error,\n"
        "    e.actor_uid AS actor_uid,\n"
        "    e.actor_pid AS actor_pid,\n"
        "    e.actor_transport AS transport,\n"
        "    json_extract(e.payload, '$.request') AS request\n"
        "FROM events AS e\n"
        "WHERE e.outcome = 'rejected'"
    ),
}


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column(
            "digest",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of text, as events record it",
        ),
        sa.Column("text", sa.Text(), nullable=False, comment="the machine definition file, UTF-8"),
        sa.Column(
            "path",
            sa.String(length=4096),
            nullable=True,
            comment="where it was read from when first archived",
        ),
        sa.Column(
            "archived_ns", sa.BigInteger(), nullable=False, comment="UTC, ns since the epoch"
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_machines")),
    )
    # The views use SQLite's JSON functions: an SQLite log's alone.
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS\n{select}")


def downgrade() -> None:
    for name in reversed(list(VIEWS) if op.get_bind().dialect.name == "sqlite" else []):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("machines")
