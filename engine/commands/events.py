"""``runlog events ID``: runc's resource statistics, and runlog's live event stream.

- ``--stats``, or every ``--interval``: ``{"type": "stats", "id", "data"}``
  lines, as ``runc events`` prints them.
- ``--follow``: the container's events from the event log as JSON lines
  (``runlog audit --format jsonl``'s objects), from the start of its
  current life, then each new one as it is recorded, until it is deleted.
  The stream sleeps until inotify reports a write to the database's files
  (the SQLite file and its ``-wal``) or the state directory's removal, then
  reads, and looks again a few times within half a second (a write is seen
  before its commit is visible); no polling while nothing happens.
  With ``--db`` the cluster's PostgreSQL database, the id's latest life on
  whichever node, as ``runlog ship`` sends it: the stream sleeps until a
  shipped batch's commit notifies it (LISTEN/NOTIFY).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from engine import jsonfast
from engine.errors import ContainerNotFound, UsageError
from engine.runtime.shared.statedir import StateDir
from engine.settings import Settings
from engine.status import Outcome, Status

__all__ = ["main"]

#: After a wake, milliseconds to the next looks at the log before sleeping.
SETTLE_MS = (5, 25, 100, 400)


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    if flags.get("follow"):
        from engine.audit.cluster import is_cluster_url

        if is_cluster_url(settings.db):
            return follow_cluster(settings.db, args[0])
        return follow(settings, args[0])
    return stats(settings, args[0], bool(flags.get("stats")), flags.get("interval"))


def stats(settings: Settings, container_id: str, once: bool, interval: object) -> int:
    from engine.commands.info import cgroup_manager

    try:
        seconds = float(str(interval or "5").rstrip("s"))
    except ValueError:
        # runc's words
        raise UsageError(f'invalid value "{interval}" for flag -interval: parse error') from None
    manager = cgroup_manager(settings, container_id, "events")
    # Without a cgroup (rootless, none writable), for as long as the container is.
    alive = manager.exists if manager.paths else StateDir(settings.root, container_id).exists
    while True:
        sample = {"type": "stats", "id": container_id, "data": manager.stats()}
        sys.stdout.write(jsonfast.dumps(sample) + "\n")
        sys.stdout.flush()
        if once or not alive():
            return 0
        time.sleep(seconds)


def _ended(event: Any) -> bool:
    return bool(event.outcome == Outcome.OK and event.dest == Status.DELETED)


#: Milliseconds between looks at the log when it cannot be watched.
UNWATCHED_MS = 100


def follow(settings: Settings, container_id: str) -> int:
    import contextlib
    import select

    from engine.audit import logdb, query, render
    from engine.eventlog import sql
    from engine.runtime.shared.watcher import CHANGED, GONE, Watcher

    statedir = StateDir(settings.root, container_id)
    if not statedir.exists():
        from engine.commands.container import absent

        raise absent(settings, statedir, "events")
    path = os.path.abspath(logdb.sqlite_path(settings.db))
    conn = logdb.open_log(settings.db)
    out = sys.stdout.buffer
    names = {os.path.basename(path), os.path.basename(path) + "-wal"}
    poller = select.poll()
    try:
        watcher = Watcher()
    except OSError:
        # No inotify instance left (fs.inotify.max_user_instances): look
        # every UNWATCHED_MS instead, with a poller that nothing wakes.
        watcher = None
    with watcher or contextlib.nullcontext():
        if watcher is not None:
            # Watch first, then read: nothing recorded in between is missed.
            watcher.watch(os.path.dirname(path), "db", CHANGED, names.__contains__)
            watcher.watch(settings.root, "root", GONE, lambda name: name == container_id)
            poller.register(watcher.fileno(), select.POLLIN)
        events = query.history(conn, container_id)
        # The current life: after the last time an earlier one was deleted.
        start = max((i + 1 for i, e in enumerate(events) if _ended(e)), default=0)
        last = events[start - 1].seq if start else 0
        settle: list[int] = []
        while True:
            new = [e for e in query.history(conn, container_id) if e.seq > last]
            for event in new:
                out.write(render.event_json(event) + b"\n")
                last = event.seq
                if _ended(event):
                    out.flush()
                    return 0
            out.flush()
            if new:
                settle = list(SETTLE_MS)
            elif not statedir.exists():
                row = conn.execute(sql.SELECT_CONTAINER, (container_id,)).fetchall()
                state = row[0][sql.CONTAINER_COLUMNS.index("state")] if row else None
                if state is None:
                    return 0  # gone without ever being created: a create that failed
                if state == Status.DELETED:
                    continue  # its delete was recorded after the read above
            # A write to the -wal is seen before its commit is: the writer
            # may still be syncing. So after each wake, look again a few
            # times, briefly; then sleep until the next write.
            if poller.poll(settle.pop(0) if settle else None if watcher else UNWATCHED_MS):
                if watcher is not None:
                    watcher.drain()
                settle = list(SETTLE_MS)


def follow_cluster(url: str, container_id: str) -> int:
    """``events --follow`` of the cluster's database: the latest life of the
    id, then what the shippers send of it, until its delete."""
    import psycopg

    from engine.audit import render
    from engine.audit.cluster import ClusterReader
    from engine.commands.history import lives
    from engine.ship import CHANNEL, pg_conninfo

    out = sys.stdout.buffer
    with ClusterReader(url) as reader, psycopg.connect(pg_conninfo(url), autocommit=True) as pg:
        # Listen first, then read: nothing shipped in between is missed.
        pg.execute(f"LISTEN {CHANNEL}")
        found = reader.history(container_id)
        if not found:
            raise ContainerNotFound(container_id)
        life = sorted(lives(found), key=lambda events: events[-1].time_ns)[-1]
        node, last = life[0].node, 0
        while True:
            new = [e for e in reader.history(container_id, node=node) if e.log == life[0].log]
            for event in new:
                if event.id <= last or event.seq < life[0].seq:
                    continue
                out.write(render.event_json(event) + b"\n")
                last = event.id
                if _ended(event):
                    out.flush()
                    return 0
            out.flush()
            for _ in pg.notifies(stop_after=1):
                pass
