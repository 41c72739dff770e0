"""runlog's event log: every transition, rejected or failed request, and who asked.

``open_store`` picks the driver for a ``--db`` value without importing the
others: a path or ``sqlite:///path`` gets the DB-API SQLite store (the hot
path), ``:memory:`` an SQLite database in memory, any other SQLAlchemy URL
the SQLAlchemy store.
"""

from __future__ import annotations

from engine.eventlog.store import EventStore

__all__ = ["DEFAULT_DB", "EventStore", "open_store"]

DEFAULT_DB = "/var/lib/runlog/events.db"


def open_store(db: str, *, synchronous: str = "FULL", wait: bool = True) -> EventStore:
    """The store for ``db``. ``wait=False``: an SQLite log whose write lock
    another process holds refuses at once (StoreBusyError), for callers
    that must not wait on it."""
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") :]
    elif db in ("sqlite://", "sqlite:///:memory:"):
        db = ":memory:"
    if "://" not in db:
        from engine.eventlog.sqlite import SQLiteStore

        if not wait:
            return SQLiteStore(db, synchronous=synchronous, busy_timeout=0, retry_budget=0)
        return SQLiteStore(db, synchronous=synchronous)
    from engine.eventlog.sa import SAStore

    return SAStore(db)
