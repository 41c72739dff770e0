"""The SQLite event store, on the DB-API alone: the hot path's driver.

Statements come from :mod:`engine.eventlog.sql`, compiled from the schema.
Settings follow measurements (docs/design.md): WAL; ``synchronous=FULL`` unless
told otherwise (an acknowledged event survives power loss); every
read-then-write in ``BEGIN IMMEDIATE`` (deferred transactions lose most
concurrent appends to "database is locked"); a busy timeout, then retries
with back-off up to :data:`LOCK_WAIT` in all. A store that gave up on the
lock once does not wait again until it gets it: a request that appends
several events (``delete --force``: kill, exit, delete) waits once, and
the monitor's retries of its journal never hold up its loop.

The schema version costs one SELECT per open. A new database is created at
the head revision from the generated DDL (tested equal to what Alembic's
migrations build); an older one is upgraded through Alembic, imported only
then; a newer one, or a file that is not an SQLite database, is refused
without being written to.

A store is not thread-safe: one per thread.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from engine import jsonfast
from engine.deferred import importing_sqlite
from engine.errors import (
    ConcurrencyError,
    EventLogError,
    SchemaError,
    StoreBusyError,
    StoreWriteError,
)
from engine.eventlog import chain, sql
from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.eventlog.store import EventStore, next_state

with importing_sqlite():
    import _sqlite3

__all__ = ["SQLiteStore"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_HEADER = b"SQLite format 3\x00"
#: How long, in all, an append waits for another process's write lock on
#: the log before it gives up (StoreBusyError: the command then fails in
#: one line, or journals what cannot be undone). Runtimes are called by
#: schedulers that time their calls out in seconds, not minutes, and runc
#: has no log to wait on: a lock held this long is held by someone else
#: (an open `sqlite3` shell, a backup), not by another runlog, whose
#: appends take milliseconds.
LOCK_WAIT = 10.0
HEAD = sql.REVISIONS[-1]
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _is_busy(err: Exception) -> bool:
    text = str(err)
    return "locked" in text or "busy" in text


def _rollback(conn: _sqlite3.Connection) -> None:
    """ROLLBACK what is still open. SQLite rolls a transaction back by itself
    on some errors (SQLITE_FULL, SQLITE_IOERR): a ROLLBACK then fails with
    "no transaction is active" and would hide the error that mattered."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except _sqlite3.Error:
            pass


def not_a_file(mode: int) -> str | None:
    """Why a file of ``mode`` cannot be a database (a FIFO would block its
    open for ever), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a database file"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"is {kind}, not a database file"


def file_problem(path: str, mode: int) -> str | None:
    """Why the existing file ``path`` (of ``mode``) cannot be opened as an
    SQLite database, before SQLite touches it - not a regular file,
    unreadable, not SQLite's header - or None (an empty file SQLite makes
    a database of). The writers' and the readers' one check."""
    problem = not_a_file(mode)
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(_HEADER))
    except OSError as err:
        return f"cannot be read: {err.strerror}"
    if header and header != _HEADER:
        return "is not an SQLite database; refusing to touch it"
    return None


def _check_file(path: str, gid: int | None = None) -> None:
    """Refuse a file that is not an SQLite database (:func:`file_problem`);
    make a missing one private. ``gid``: the group that may read the log
    (``log_group``), else none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _make_private(path, gid)
        return
    except OSError as err:
        raise SchemaError(path, f"cannot be read: {err.strerror}") from err
    mode = st.st_mode
    problem = file_problem(path, mode)
    if problem is not None:
        raise SchemaError(path, problem)
    if st.st_uid != os.geteuid():
        return  # another's log (a user's, opened by root): theirs to set
    if gid is not None:
        _share(path, gid)
    elif mode & 0o077:
        _tighten(path, mode)


def _make_private(path: str, gid: int | None) -> None:
    """A new log: its directory 0700 (if made here), the file 0600, which
    SQLite gives its -wal and -shm files too (and their group). Every
    payload is in it. With a reading group: 0750 and 0640, that group's."""
    parent = os.path.dirname(os.path.abspath(path))
    made = not os.path.isdir(parent)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # another process made it first
    except OSError as err:
        raise SchemaError(path, f"cannot be created: {err.strerror}") from err
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o640)
    except OSError as err:
        raise SchemaError(path, f"cannot give it to group {gid}: {err.strerror}") from err
    finally:
        os.close(fd)
    if gid is not None:
        _share_dir(parent, gid, made)


def _share_dir(directory: str, gid: int, made: bool = False) -> None:
    """The log's directory 0750, the reading group's: one runlog made, or
    one of runlog's own kind (the owner's alone, 0700 or 0750) - never a
    shared one such as /tmp."""
    try:
        st = os.stat(directory)
        if not made and (st.st_uid != os.geteuid() or st.st_mode & 0o777 not in (0o700, 0o750)):
            return
        if st.st_gid != gid:
            os.chown(directory, -1, gid)
        if st.st_mode & 0o777 != 0o750:
            os.chmod(directory, 0o750)
    except OSError as err:
        sys.stderr.write(
            f"runlog: event log directory {directory}: cannot give it to group {gid}: "
            f"{err.strerror}\n"
        )


def _share(path: str, gid: int) -> None:
    """An existing log with a reading group: it and its -wal/-shm 0640 and
    the group's (SQLite gives a new -wal the log's group only as root), its
    directory 0750; a note where others could read it."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            st = os.stat(name)
            if st.st_gid != gid:
                os.chown(name, -1, gid)
            if st.st_mode & 0o777 != 0o640:
                os.chmod(name, 0o640)
        except FileNotFoundError:
            continue
        except OSError as err:
            sys.stderr.write(
                f"runlog: event log {name}: cannot give it to group {gid}: {err.strerror}\n"
            )
            return
        if st.st_mode & 0o007:
            sys.stderr.write(
                f"runlog: note: event log {name} was readable by others "
                f"(mode {st.st_mode & 0o777:04o}); made readable by group {gid} alone (0640)\n"
            )
    _share_dir(os.path.dirname(os.path.abspath(path)), gid)


def _tighten(path: str, mode: int) -> None:
    """An existing log others could read: make it and its -wal/-shm 0600, and say so."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            os.chmod(name, 0o600)
        except FileNotFoundError:
            continue
        except OSError as err:
            sys.stderr.write(f"runlog: event log {name}: cannot make it private: {err.strerror}\n")
            return
    sys.stderr.write(
        f"runlog: note: event log {path} was readable by others (mode {mode & 0o777:04o}); "
        "made private (0600)\n"
    )


def _is_read_only(err: _sqlite3.Error) -> bool:
    """SQLITE_READONLY, or one of its extended codes."""
    return str(getattr(err, "sqlite_errorname", "")).startswith("SQLITE_READONLY")


class SQLiteStore(EventStore):
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        retry_budget: float = LOCK_WAIT,
        gid: int | None = None,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.location = path
        self.retry_budget = retry_budget
        #: Gave up on the write lock, and has not had it since: no more waits.
        self.gave_up = False
        busy_timeout = min(busy_timeout, retry_budget)
        self.synchronous = synchronous.upper()
        if path != ":memory:":
            _check_file(path, gid)
        # isolation_level=None: the module issues no implicit BEGIN; this
        # store opens every transaction itself.
        self._busy_ms = int(busy_timeout * 1000)
        try:
            self._conn = _sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        except _sqlite3.Error as err:
            raise SchemaError(path, f"cannot be opened: {err}") from err
        try:
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._ensure_schema()
        except _sqlite3.DatabaseError as err:
            self._conn.close()
            if isinstance(err, _sqlite3.OperationalError) and _is_busy(err):
                raise StoreBusyError(f"event log {path}: locked: {err}") from err
            raise SchemaError(path, f"cannot be used: {err}") from err
        except BaseException:
            self._conn.close()
            raise

    # -- schema -----------------------------------------------------------

    def _version(self) -> str | None:
        try:
            row = self._conn.execute(sql.SELECT_VERSION).fetchone()
        except _sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return None
            raise
        return None if row is None else str(row[0])

    def _ensure_schema(self) -> None:
        version = self._version()
        if version == HEAD:
            return
        if version is None:
            self._create()
        elif version in sql.REVISIONS:
            self._upgrade()
        else:
            raise SchemaError(
                self.location,
                f"schema revision {version} is newer than this runlog knows "
                f"(newest: {HEAD}); use a newer runlog",
            )

    def _create(self) -> None:
        if self.location != ":memory:":
            # WAL is persistent in the file; set it before the first table.
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._begin()
        try:
            if self._version() is None:  # another process may have won the race
                tables = self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                ).fetchall()
                if tables:
                    names = ", ".join(sorted(str(t[0]) for t in tables))
                    raise SchemaError(
                        self.location,
                        f"holds tables runlog does not know ({names}); refusing to touch it",
                    )
                for stmt in sql.SCHEMA_DDL:
                    self._conn.execute(stmt)
                self._conn.execute(sql.CREATE_VERSION_TABLE)
                self._conn.execute(sql.INSERT_VERSION, (HEAD,))
            self._conn.execute("COMMIT")
        except BaseException:
            _rollback(self._conn)
            raise

    def _upgrade(self) -> None:
        if self.location == ":memory:":
            raise SchemaError(self.location, "an in-memory database cannot be upgraded")
        from engine.eventlog import migrate  # Alembic: only on this rare path

        migrate.upgrade(migrate.url_for(self.location))
        if self._version() != HEAD:
            raise SchemaError(self.location, f"upgrade did not reach revision {HEAD}")

    # -- transactions -----------------------------------------------------

    def _begin(self) -> None:
        """BEGIN IMMEDIATE: take the write lock before reading what we write,
        waiting for it up to the retry budget (not at all once given up)."""
        if self.gave_up:
            self._begin_now()
            return
        deadline = time.monotonic() + self.retry_budget
        delay = 0.002
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except _sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                if time.monotonic() >= deadline:
                    self.gave_up = True
                    raise self._locked() from err
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _begin_now(self) -> None:
        """BEGIN IMMEDIATE once, without waiting; waits again once it works."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except _sqlite3.OperationalError as err:
            if _is_busy(err):
                raise self._locked() from err
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        self.gave_up = False

    def _locked(self) -> StoreBusyError:
        return StoreBusyError(
            f"event log {self.location}: locked by another process for more than "
            f"{self.retry_budget:g} s; nothing was written"
        )

    # -- EventStore -------------------------------------------------------

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        conn = self._conn
        if self.life_root is not None or self.life_context is not None:
            event = self.stamped(event)
        # WAL: a NORMAL commit is not synced, but it is in the log before
        # every later commit, and the next FULL commit's sync carries it.
        lazy = not durable and self.synchronous == "FULL"
        if lazy:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            try:
                return self._append(event, expected_seq)
            except _sqlite3.Error as err:
                # Opened while its file system was read-only, a connection
                # stays read-only: open it again, for when that has passed.
                if not _is_read_only(err):
                    raise
                self._reopen()
                return self._append(event, expected_seq)
        except _sqlite3.Error as err:
            raise StoreWriteError(self.location, str(err)) from err
        finally:
            if lazy:
                try:
                    conn.execute("PRAGMA synchronous=FULL")
                except _sqlite3.Error:
                    pass

    def _reopen(self) -> None:
        """A new connection to the same file, as the first was set up. The
        old one is closed first: while it is open, a new one in this process
        shares its view of the file (its read-only shared memory included)."""
        self._conn.close()
        self._conn = _sqlite3.connect(
            self.location, timeout=self._busy_ms / 1000, isolation_level=None
        )
        self._conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def _append(self, event: NewEvent, expected_seq: int | None) -> Event:
        conn = self._conn
        self._begin()
        try:
            head = conn.execute(sql.SELECT_HEAD, (event.container_id,)).fetchone()
            last = 0 if head is None else int(head[0])
            if expected_seq is not None and expected_seq != last:
                raise ConcurrencyError(event.container_id, expected_seq, last)
            seq = last + 1
            prev = conn.execute(sql.SELECT_LAST_HASH).fetchone()
            if prev is None:
                prev = conn.execute(sql.SELECT_ANCHOR_HASH).fetchone()
            prev_hash = chain.GENESIS if prev is None or prev[0] is None else prev[0]
            values = event.chained(seq, jsonfast.dumps(event.payload))
            digest = chain.link(prev_hash, values)
            cur = conn.execute(sql.INSERT_EVENT, (*values, prev_hash, digest))
            event_id = cur.lastrowid
            state = next_state(None, event)
            conn.execute(
                sql.UPSERT_CONTAINER if state is not None else sql.UPSERT_CONTAINER_KEEP_STATE,
                (
                    event.container_id,
                    state,
                    seq,
                    event.time_ns,
                    event.time_ns,
                    event.machine_digest,
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        assert event_id is not None
        return event.recorded(event_id, seq, prev_hash, digest)

    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        rows = self._conn.execute(sql.SELECT_HISTORY, (container_id, after_seq)).fetchall()
        return [_event(r) for r in rows]

    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        cur = self._conn.execute(sql.SELECT_EVENTS_AFTER, (after_id,))
        rows = cur.fetchall() if limit is None else cur.fetchmany(limit)
        return [_event(r) for r in rows]

    def container(self, container_id: str) -> ContainerRow | None:
        try:
            row = self._conn.execute(sql.SELECT_CONTAINER, (container_id,)).fetchone()
        except _sqlite3.Error as err:
            raise self._read_error(err) from err
        return None if row is None else ContainerRow(*row)

    def _read_error(self, err: _sqlite3.Error) -> EventLogError:
        """A read that failed: locked (without a busy timeout, a reader can
        meet a writer restarting the write-ahead log), or a log that broke
        since it was opened."""
        if _is_busy(err):
            return StoreBusyError(f"event log {self.location}: locked: {err}")
        return SchemaError(self.location, f"cannot be read: {err}")

    def containers(self) -> list[ContainerRow]:
        return [ContainerRow(*r) for r in self._conn.execute(sql.SELECT_CONTAINERS).fetchall()]

    def archive_machine(self, digest: str, text: str, path: str | None = None) -> None:
        # Read first: the common case (already archived) takes no write lock.
        if self.machine_text(digest) is not None:
            return
        self._begin()
        try:
            self._conn.execute(sql.INSERT_MACHINE, (digest, text, path, time.time_ns()))
            self._conn.execute("COMMIT")
        except _sqlite3.Error as err:
            _rollback(self._conn)
            if _is_busy(err):
                raise StoreBusyError(f"event log {self.location}: locked: {err}") from err
            raise StoreWriteError(self.location, str(err)) from err
        except BaseException:
            _rollback(self._conn)
            raise

    def machine_text(self, digest: str) -> str | None:
        try:
            row = self._conn.execute(sql.SELECT_MACHINE, (digest,)).fetchone()
        except _sqlite3.Error as err:
            raise self._read_error(err) from err
        return None if row is None else str(row[0])

    def close(self) -> None:
        self._conn.close()

    def checkpoint(self) -> None:
        """PASSIVE: copies what no reader still needs and waits for no one.

        Each process that opens the log after all others have closed it
        reads the whole write-ahead log to index it: some 0.8 ms per MB
        here, and a container's lifecycle adds about 100 KB to it; SQLite
        checkpoints by itself only at 1000 pages. The monitor calls this
        once create has reported, while the caller is busy elsewhere. When
        all of the log is copied, the log also starts over here
        (:meth:`_restart_log`).
        """
        try:
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy == 0 and 0 < frames == copied:
                self._restart_log()
        except _sqlite3.Error:
            pass  # best effort: the log is as complete without it

    def _restart_log(self) -> None:
        """Start the write-ahead log over now that all of it is in the
        database, rather than at the next commit, which would otherwise
        pay for it: SQLite syncs a restarted log's header before its first
        frame (0.3-0.4 ms here). It restarts on a write, so this writes
        the database header's user_version as it is, unsynced: the next
        durable commit carries it, and nothing in the database changes.
        Without waiting for the write lock: a writer that holds it starts
        the log over itself."""
        conn = self._conn
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=0")
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except _sqlite3.OperationalError as err:
                if _is_busy(err):
                    return
                raise
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                conn.execute(f"PRAGMA user_version={int(version)}")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")


def _event(row: Sequence[Any]) -> Event:
    return Event.from_row(row, jsonfast.loads)
