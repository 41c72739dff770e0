"""Write ``engine/eventlog/sql.py``: the hot path's SQL, compiled from the schema.

The commands a scheduler calls append through the DB-API without importing
SQLAlchemy; the statements they run are compiled here from the same
``Table``s Alembic migrates, and ``tests/eventlog/test_sql.py`` fails when
the generated module is stale. Run ``make sql`` after a schema change.

``SCHEMA_DDL`` holds the tables, their indexes and the views, so a database
the hot path creates equals one Alembic's migrations build
(``tests/eventlog/test_schema.py``).
"""

from __future__ import annotations

import sys

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from engine.eventlog import migrate
from engine.eventlog.schema import (
    CHAINED,
    VIEWS,
    chain_anchors,
    containers,
    events,
    machines,
    metadata,
)

__all__ = ["render"]

_DIALECT = sqlite.dialect(paramstyle="qmark")

# Column order of the row tuples the hot path reads and writes.
EVENT_COLUMNS = tuple(c.name for c in events.columns)
CONTAINER_COLUMNS = tuple(c.name for c in containers.columns)
MACHINE_COLUMNS = tuple(c.name for c in machines.columns)


def _sql(stmt: ClauseElement, params: tuple[str, ...] = ()) -> str:
    compiled = stmt.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    order = tuple(compiled.positiontup or ())
    assert order == params, f"parameter order {order} != {params}"
    return " ".join(str(compiled).split())


def _statements() -> dict[str, str]:
    new_event = tuple(c for c in EVENT_COLUMNS if c != "id")
    ins_event = events.insert().values({c: bindparam(c) for c in new_event})
    head = select(containers.c.seq, containers.c.state).where(containers.c.id == bindparam("id"))
    up = sqlite.insert(containers).values({c: bindparam(c) for c in CONTAINER_COLUMNS})
    upsert = up.on_conflict_do_update(
        index_elements=[containers.c.id],
        set_={
            "state": func.coalesce(up.excluded.state, containers.c.state),
            "seq": up.excluded.seq,
            "updated_ns": up.excluded.updated_ns,
            "machine_digest": up.excluded.machine_digest,
        },
    )
    # An event that leaves the state as it is (a signal, a refusal, a
    # failure) does not name it: SQLite then leaves the state index alone,
    # one page less to write and sync per commit.
    keep = up.on_conflict_do_update(
        index_elements=[containers.c.id],
        set_={
            "seq": up.excluded.seq,
            "updated_ns": up.excluded.updated_ns,
            "machine_digest": up.excluded.machine_digest,
        },
    )
    history = (
        select(*events.columns)
        .where(events.c.container_id == bindparam("id"), events.c.seq > bindparam("after"))
        .order_by(events.c.seq)
    )
    after = select(*events.columns).where(events.c.id > bindparam("after")).order_by(events.c.id)
    one = select(*containers.columns).where(containers.c.id == bindparam("id"))
    every = select(*containers.columns).order_by(containers.c.id)
    # A machine is archived once per digest; a second writer's insert is a
    # no-op, not an error (the row is content-addressed).
    archive = (
        sqlite.insert(machines)
        .values({c.name: bindparam(c.name) for c in machines.columns})
        .on_conflict_do_nothing(index_elements=[machines.c.digest])
    )
    machine = select(machines.c.text).where(machines.c.digest == bindparam("digest"))
    # The chain: the log's last hash, or where pruning cut it.
    last_hash = select(events.c.hash).order_by(events.c.id.desc()).limit(1)
    anchor = select(chain_anchors.c.hash).where(
        chain_anchors.c.node == "", chain_anchors.c.log == ""
    )
    return {
        "INSERT_EVENT": _sql(ins_event, new_event),
        "SELECT_HEAD": _sql(head, ("id",)),
        "UPSERT_CONTAINER": _sql(upsert, CONTAINER_COLUMNS),
        "UPSERT_CONTAINER_KEEP_STATE": _sql(keep, CONTAINER_COLUMNS),
        "SELECT_HISTORY": _sql(history, ("id", "after")),
        "SELECT_EVENTS_AFTER": _sql(after, ("after",)),
        "SELECT_CONTAINER": _sql(one, ("id",)),
        "SELECT_CONTAINERS": _sql(every),
        "INSERT_MACHINE": _sql(archive, MACHINE_COLUMNS),
        "SELECT_MACHINE": _sql(machine, ("digest",)),
        "SELECT_LAST_HASH": _literal(last_hash),
        "SELECT_ANCHOR_HASH": _literal(anchor),
    }


def _literal(stmt: ClauseElement) -> str:
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).split())


def _ddl() -> list[str]:
    out: list[str] = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=_DIALECT)).strip())
        out.extend(
            str(CreateIndex(index).compile(dialect=_DIALECT)).strip()
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        )
    out.extend(f"CREATE VIEW {name} AS\n{select_}" for name, select_ in VIEWS.items())
    return out


def render() -> str:
    lines = [
        '"""SQL for the hot path, generated from engine/eventlog/schema.py by `make sql`.',
        "",
        "Do not edit: tests/eventlog/test_sql.py fails when this file is stale.",
        '"""',
        "",
        f"EVENT_COLUMNS = {EVENT_COLUMNS!r}",
        f"CONTAINER_COLUMNS = {CONTAINER_COLUMNS!r}",
        f"MACHINE_COLUMNS = {MACHINE_COLUMNS!r}",
        "# What an event's hash covers, besides prev_hash (engine.eventlog.chain).",
        f"CHAINED_COLUMNS = {CHAINED!r}",
        "",
        "# Alembic revisions this runlog knows, oldest first; the last is the head.",
        f"REVISIONS = {tuple(migrate.revisions())!r}",
        "",
        "# The schema at the head revision, for a new database: tables, indexes, views.",
        "SCHEMA_DDL = (",
        *(f"    {stmt!r}," for stmt in _ddl()),
        ")",
        "",
        "CREATE_VERSION_TABLE = "
        "'CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))'",
        "INSERT_VERSION = 'INSERT INTO alembic_version (version_num) VALUES (?)'",
        "SELECT_VERSION = 'SELECT version_num FROM alembic_version'",
        "",
    ]
    lines += [f"{name} = {sql!r}" for name, sql in _statements().items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
