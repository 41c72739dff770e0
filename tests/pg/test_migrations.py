"""Alembic's migrations on PostgreSQL: up from nothing, down, up again; and
`runlog db` against a PostgreSQL URL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.eventlog import migrate

pytest.importorskip("psycopg")


def test_migrations_go_up_down_and_up_again(pg_url: str) -> None:
    assert migrate.current(pg_url) is None
    migrate.upgrade(pg_url)
    assert migrate.current(pg_url) == migrate.head()
    from alembic import command

    from engine.eventlog.sa import make_engine

    engine = make_engine(pg_url)
    with engine.connect() as conn:
        cfg = migrate.alembic_config(pg_url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
        conn.commit()
    engine.dispose()
    assert migrate.current(pg_url) is None
    migrate.upgrade(pg_url)
    assert migrate.current(pg_url) == migrate.head()


def test_runlog_db_upgrade_and_current_on_postgresql(pg_url: str) -> None:
    def runlog(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", "--db", pg_url, *args],
            capture_output=True,
            text=True,
            check=False,
        )

    done = runlog("db", "upgrade")
    assert done.returncode == 0, done.stderr
    now = runlog("db", "current")
    assert now.returncode == 0 and "(head)" in now.stdout
