"""``runlog ship --to URL``: send this node's event logs to the cluster's PostgreSQL.

The logs: ``--log PATH`` (repeatable) names them; without it, the node's
own: root's log (``--db``, ``RUNLOG_DB``, the site configuration's or the
default), and every user's log the site configuration names
(``db = "/var/lib/runlog/{user}/events.db"`` in ``/etc/runlog/runlog.toml``:
each file that pattern matches for any user). Each log is shipped under its
own identity (its path on the node), so each keeps its own chain. A log of
the node's own set that does not exist yet is passed over, with a note;
``--follow`` ships a user's log from when it appears.
Once: send what is new, print a summary, exit (1 when the server cannot be
reached: the events stay in the node's log for the next run). ``--follow``:
keep sending as events are recorded; between sends the shipper sleeps until
watchdog reports a write to a log's files (no polling), and while the
server is down it retries with back-off. It runs at a low priority and only
reads the logs, so container commands never wait for it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.errors import UsageError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.ship import Shipped

__all__ = ["main"]

#: The longest wait between retries while the server is down, in seconds.
MAX_BACKOFF = 30.0


def _summary(shipped: Shipped, started: float) -> str:
    wall = time.monotonic() - started
    behind = sum(shipped.behind.values())
    rate = shipped.events / wall if wall > 0 else 0.0
    return (
        f"shipped {shipped.events} events ({shipped.bytes / 1e6:.1f} MB) in {wall:.2f} s, "
        f"{rate:,.0f} events/s; lag: {behind} events behind\n"
    )


def users_pattern() -> str | None:
    """The glob of every user's log the site configuration names (its ``db``
    with ``{user}``/``{uid}`` as ``*``), if it names one per user."""
    from engine.settings import environ
    from engine.siteconfig import load

    site = load(environ(), os.geteuid(), every_user=True)
    pattern = site[1].get("db") if site is not None else None
    return pattern if pattern and "*" in pattern and "://" not in pattern else None


def node_logs(settings: Settings, *, quiet: bool = False) -> list[str]:
    """root's log and every user's log the site configuration names, each
    once; those that exist (all of them when none does, so the shipper says
    which is missing)."""
    import glob

    # A node writing straight to the database (--db postgresql://...) has
    # no log of root's to send: its events are there already.
    logs = [] if "://" in settings.db else [settings.db]
    pattern = users_pattern()
    if pattern is not None:
        logs += sorted(glob.glob(pattern))
    if not logs:
        from engine.eventlog.schema import redacted

        raise UsageError(
            f"runlog ship: no log to send: --db {redacted(settings.db)} is a database "
            "(its events are there already); --log PATH names a node's SQLite log"
        )
    found: dict[str, str] = {}
    for log in logs:
        found.setdefault(os.path.realpath(log), log)
    there = [log for log in found.values() if os.path.isfile(log)]
    for log in found.values():
        if there and log not in there and not quiet:
            sys.stderr.write(
                f"runlog ship: note: event log {log} does not exist (yet); passed over\n"
            )
    return there or list(found.values())


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.ship import Shipped, Shipper

    url = str(flags.get("to") or "")
    if not url:
        raise UsageError("runlog ship: --to URL is required (postgresql://...)")
    given = flags.get("log")
    named = [str(p) for p in given] if isinstance(given, list) else []
    logs = named or node_logs(settings)
    node = str(flags.get("node") or socket.gethostname())
    tty = sys.stderr.isatty()

    def progress(shipped: Shipped) -> None:
        if tty:
            sys.stderr.write(f"\rshipped {shipped.events} events, {shipped.bytes / 1e6:.1f} MB ")
            sys.stderr.flush()

    try:
        os.nice(10)
    except OSError:
        pass
    shipper = Shipper(url, node, logs, progress=progress)
    started = time.monotonic()
    shipped = Shipped()
    if not flags.get("follow"):
        try:
            shipper.ship_once(shipped)
        finally:
            if tty:
                sys.stderr.write("\r")
            sys.stdout.write(_summary(shipped, started))
        return 0

    def once() -> None:
        shipper.ship_once(shipped)

    def stop() -> None:
        sys.stdout.write(_summary(shipped, started))

    from engine.ship import ServerDown

    return follow(
        shipper.logs,
        shipper.add,
        once,
        None if named else lambda: node_logs(settings, quiet=True),
        stop,
        retry=(ServerDown,),
        who="ship",
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM end a follower with its summary: also when it was
    started with SIGINT ignored (from a shell's background job), and when a
    service manager stops it (SIGTERM)."""
    import signal

    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)


def _begun(log: str) -> bool:
    """Whether a log that appeared holds runlog's tables yet (its first
    writer creates them in a transaction of its own, just after the file)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{log}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return found is not None


def _top(pattern: str) -> str:
    """The deepest directory of a glob without a wildcard in it."""
    parts = pattern.split("/")
    return "/".join(parts[: next(i for i, p in enumerate(parts) if "*" in p)]) or "/"


def follow(
    logs: list[str],
    add: Callable[[str], bool],
    once: Callable[[], None],
    discover: Callable[[], list[str]] | None,
    stop: Callable[[], None],
    *,
    retry: tuple[type[Exception], ...] = (),
    removed: Callable[[str], None] | None = None,
    who: str,
) -> int:
    """Run ``once``, then sleep until a file of ``logs`` changes, and again,
    until interrupted (then ``stop``). With ``discover``, also look for logs
    that appeared (a user's first log under the site configuration's
    pattern, watched from its top directory down) and ``add`` them. An
    error of ``retry`` is said and retried with back-off. ``removed`` hears
    of a log deleted or replaced (renamed over), before the next ``once``."""
    from fnmatch import fnmatchcase

    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    wake = threading.Event()
    names: set[str] = set()  # the file names whose changes wake the loop
    watched: set[str] = set()
    pattern = users_pattern() if discover is not None else None

    class Changed(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            path = os.fsdecode(event.src_path)
            if removed is not None and event.event_type in ("deleted", "moved"):
                for gone in (path, os.fsdecode(getattr(event, "dest_path", "") or "")):
                    if gone in logs:
                        removed(gone)
            if os.path.basename(path) in names or (
                pattern is not None and fnmatchcase(path.removesuffix("-wal"), pattern)
            ):
                wake.set()

    observer = Observer()

    def watch(log: str) -> None:
        names.update((os.path.basename(log), os.path.basename(log) + "-wal"))
        directory = os.path.dirname(log)
        if directory not in watched:
            watched.add(directory)
            observer.schedule(Changed(), directory, recursive=False)

    for log in logs:
        watch(log)
    if pattern is not None and os.path.isdir(_top(pattern)):
        observer.schedule(Changed(), _top(pattern), recursive=True)
    _stop_on_signals()
    observer.start()
    backoff = 0.5
    try:
        while True:
            wake.clear()
            for log in discover() if discover is not None else ():
                if os.path.realpath(log) not in logs and _begun(log) and add(log):
                    watch(log)
            try:
                once()
                backoff = 0.5
                timeout: float | None = None
            except retry as err:
                sys.stderr.write(f"runlog {who}: {err}; retrying in {backoff:g} s\n")
                timeout, backoff = backoff, min(backoff * 2, MAX_BACKOFF)
            if timeout is None:
                wake.wait()
            else:
                time.sleep(timeout)
    except KeyboardInterrupt:
        stop()
        return 0
    finally:
        observer.stop()
        observer.join()
