"""Opening a database: new, current, older, newer, foreign, not a database."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from engine.errors import SchemaError, StoreBusyError
from engine.eventlog import migrate, open_store, sql
from engine.eventlog.record import NewEvent
from engine.eventlog.schema import metadata
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor

HEAD = sql.REVISIONS[-1]


def _event(cid: str = "c") -> NewEvent:
    return NewEvent(cid, "create", "creating", "created", "ok", Actor(0, 1, "cli"), "d" * 64)


def _version(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def _diff(path: Path) -> list[object]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    return list(diff)


def _schema(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        return {(str(t), str(n)) for t, n in rows}


def test_new_database_is_created_at_head_in_wal_mode(db_path: Path) -> None:
    with SQLiteStore(str(db_path)) as store:
        store.append(_event())
    assert _version(db_path) == HEAD
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_synchronous_full_by_default(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    store = SQLiteStore(str(db_path), synchronous="normal")
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    store.close()


def test_hot_path_ddl_equals_what_the_migrations_build(tmp_path: Path) -> None:
    by_ddl, by_alembic = tmp_path / "ddl.db", tmp_path / "alembic.db"
    SQLiteStore(str(by_ddl)).close()
    migrate.upgrade(migrate.url_for(str(by_alembic)))
    assert _version(by_alembic) == _version(by_ddl) == HEAD
    assert _schema(by_ddl) == _schema(by_alembic)
    assert _diff(by_ddl) == []
    assert _diff(by_alembic) == []


def test_older_database_is_upgraded_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    migrate.upgrade(migrate.url_for(str(path)), sql.REVISIONS[0])
    with sqlite3.connect(path) as conn:
        conn.execute(
            'INSERT INTO events (container_id, seq, time_ns, "trigger", source, dest, outcome,'
            " actor_uid, actor_pid, actor_transport, payload, machine_digest)"
            " VALUES ('old', 1, 5, 'create', 'creating', 'created', 'ok', 0, 1, 'cli', '{}', 'x')"
        )
        conn.execute(
            "INSERT INTO containers (id, state, seq, created_ns, updated_ns, machine_digest)"
            " VALUES ('old', 'created', 1, 5, 5, 'x')"
        )
    with SQLiteStore(str(path)) as store:
        assert [e.trigger for e in store.history("old")] == ["create"]
        assert store.append(_event("old")).seq == 2
    assert _version(path) == HEAD


def test_newer_schema_is_refused(db_path: Path) -> None:
    SQLiteStore(str(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match=r"revision 9999 is newer than this runlog knows"):
        SQLiteStore(str(db_path))
    assert _version(db_path) == "9999"


def test_sqlalchemy_store_refuses_newer_schema_too(db_path: Path) -> None:
    SQLiteStore(str(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="newer"):
        open_store(f"sqlite+pysqlite:///{db_path}")


def test_file_that_is_not_a_database_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with pytest.raises(SchemaError, match=r"notes.txt: is not an SQLite database; refusing"):
        SQLiteStore(str(path))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # no -wal, no -shm


def test_foreign_database_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(SchemaError, match=r"holds tables runlog does not know \(accounts\)"):
        SQLiteStore(str(path))
    assert _schema(path) == {("table", "accounts")}


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="is a directory"):
        SQLiteStore(str(tmp_path))


def test_missing_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "runlog" / "events.db"
    SQLiteStore(str(path)).close()
    assert _version(path) == HEAD


def test_locked_database_gives_up_after_the_retry_budget(db_path: Path) -> None:
    SQLiteStore(str(db_path)).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        store = SQLiteStore(str(db_path), busy_timeout=0.01, retry_budget=0.2)
        with pytest.raises(StoreBusyError, match="locked by another process for more than"):
            store.append(_event())
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with SQLiteStore(str(db_path)) as store:
        assert store.history("c") == []
        assert store.append(_event()).seq == 1


def test_open_store_picks_the_driver(tmp_path: Path) -> None:
    from engine.eventlog.sa import SAStore

    assert isinstance(open_store(str(tmp_path / "a.db")), SQLiteStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'b.db'}"), SQLiteStore)
    assert isinstance(open_store(":memory:"), SQLiteStore)
    assert isinstance(open_store(f"sqlite+pysqlite:///{tmp_path / 'c.db'}"), SAStore)
