"""runlog's event log: every transition, rejected or failed request, and who asked.

``open_store`` picks the driver for a ``--db`` value without importing the
others: a path or ``sqlite:///path`` gets the DB-API SQLite store (the hot
path), ``:memory:`` an SQLite database in memory, any other SQLAlchemy URL
the SQLAlchemy store.
"""

from __future__ import annotations

from engine.eventlog.store import EventStore

__all__ = ["EventStore", "log_gid", "open_store", "sqlite_file"]


def sqlite_file(db: str) -> str | None:
    """The SQLite file a ``--db`` value names - a path, or a ``sqlite:///``
    URL; ``:memory:`` for an in-memory one - or None for a server's URL."""
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") :]
    elif db == "sqlite://":
        db = ":memory:"
    return None if "://" in db else db


def _owner(db: str) -> tuple[int, int] | None:
    """Root opening a user's log (Slurm's clean-up runs ``state``, ``kill``
    and ``delete`` as root, with the user's ``--db``): the user, who must
    own every file of it - the database, and the ``-wal`` and ``-shm``
    SQLite makes beside it, else the user is locked out of their own log.
    ``None`` when runlog is not root or the log is root's."""
    import posix

    if posix.geteuid() != 0:
        return None
    for path in (db, db.rsplit("/", 1)[0] if "/" in db else "."):
        try:
            st = posix.stat(path)
        except OSError:
            continue
        return None if st.st_uid == 0 else (st.st_uid, st.st_gid)
    return None


def _give_back(db: str, owner: tuple[int, int]) -> None:
    import posix

    for path in (db, f"{db}-wal", f"{db}-shm", f"{db}-journal"):
        try:
            posix.chown(path, *owner)
        except OSError:
            continue


def log_gid(group: str | None) -> int | None:
    """The gid of the group that may read the log (the ``log_group`` setting:
    a name or a number); None for none. An unknown group is an error."""
    if not group:
        return None
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        from engine.errors import RunlogError

        raise RunlogError(
            f"log_group {group!r}: no such group (RUNLOG_LOG_GROUP or log_group in the "
            "site configuration)"
        ) from None


def open_store(
    db: str, *, synchronous: str = "FULL", wait: bool = True, group: str | None = None
) -> EventStore:
    """The store for ``db``. ``wait=False``: an SQLite log whose write lock
    another process holds refuses at once (StoreBusyError), for callers
    that must not wait on it. ``group``: the group that may read an SQLite
    log (its files 0640, its directory 0750, that group's); else the log is
    its owner's alone (0600, 0700)."""
    file = sqlite_file(db)
    if file is not None:
        db = file
        from engine.eventlog.sqlite import SQLiteStore

        # wait=False: no busy timeout and no retries (StoreBusyError at once).
        busy = {} if wait else {"busy_timeout": 0, "retry_budget": 0}
        owner = None
        if db != ":memory:":
            from engine.places import refuse_network_db

            refuse_network_db(db)  # SQLite's WAL is not safe there
            owner = _owner(db)
        store = SQLiteStore(db, synchronous=synchronous, gid=log_gid(group), **busy)
        if owner is not None:
            _give_back(db, owner)
        return store
    from engine.eventlog.sa import SAStore

    return SAStore(db)
