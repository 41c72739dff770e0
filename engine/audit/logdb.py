"""Opening the event log for reading, with its schema checked first.

The reading commands never create a database (a mistyped ``--db`` would
otherwise leave an empty one behind and answer "no such container"), never
upgrade one (an auditor may only have read access), and refuse what is not
a runlog event log at this runlog's schema revision, saying what to do.
The connection is ``query_only``; the one write a reader may make, archiving
a machine definition (:mod:`engine.replay.machines`), lifts it briefly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.errors import SchemaError, UnsupportedError
from engine.eventlog import sql, sqlite_file

__all__ = ["HEAD", "open_log", "sqlite_path"]

HEAD = sql.REVISIONS[-1]


def sqlite_path(location: str) -> str:
    """The file behind ``--db``: a path, or a ``sqlite:///`` URL."""
    path = sqlite_file(location)
    if path is None or path == ":memory:":
        raise UnsupportedError(
            f"event log {location}: audit and replay read an SQLite event log file "
            "(their views and queries use SQLite's JSON functions); pass its path with --db"
        )
    return path


def _check_file(path: Path, location: str) -> None:
    from engine.eventlog.sqlite import file_problem

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SchemaError(
            location, "does not exist (check --db or RUNLOG_DB; runlog db upgrade creates one)"
        ) from None
    except OSError as err:
        raise SchemaError(location, f"cannot be read: {err.strerror}") from err
    problem = file_problem(str(path), mode)
    if problem is not None:
        raise SchemaError(location, problem)


def _check_schema(conn: sqlite3.Connection, location: str) -> None:
    tables = {
        str(name) for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if "alembic_version" not in tables:
        if not tables:
            raise SchemaError(location, "is empty: it holds no runlog event log")
        names = ", ".join(sorted(tables))
        raise SchemaError(location, f"is not a runlog event log (its tables: {names})")
    row = conn.execute(sql.SELECT_VERSION).fetchone()
    version = None if row is None else str(row[0])
    if version == HEAD:
        return
    if version in sql.REVISIONS:
        raise SchemaError(
            location,
            f"is at schema revision {version}, older than this runlog's {HEAD}; "
            "run `runlog db upgrade` (or any command that writes) first",
        )
    raise SchemaError(
        location,
        f"has schema revision {version or 'none'}, which this runlog does not know "
        f"(it knows {', '.join(sql.REVISIONS)}); use the runlog that wrote it",
    )


def open_log(location: str) -> sqlite3.Connection:
    """A read-only connection to the event log at ``location`` (``--db``)."""
    path = Path(sqlite_path(location))
    _check_file(path, location)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as err:
        raise SchemaError(location, f"cannot be opened: {err}") from err
    try:
        conn.execute("PRAGMA query_only = ON")
        _check_schema(conn, location)
    except sqlite3.DatabaseError as err:
        conn.close()
        raise SchemaError(location, f"cannot be read: {err}") from err
    except BaseException:
        conn.close()
        raise
    return conn
