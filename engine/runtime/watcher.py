"""File-system notifications (inotify, through watchdog) for one consumer loop.

The only module that imports watchdog. A :class:`Watcher` watches a few
directories (never recursively) and, for each event whose file name a
watch's filter accepts, queues ``(tag, name)`` and makes an eventfd
readable. The consumer - the monitor's poll loop, ``events --follow``, the
spool client - polls :meth:`Watcher.fileno` and takes the queue with
:meth:`Watcher.drain`, in its own thread. Nothing else runs in watchdog's
threads: every transition stays in the consumer's.

Threads and fork. watchdog runs an inotify reader thread, one emitter
thread per watch and a dispatcher thread; they hold only their own locks
(the watch table, the event queue) and block in poll(2) or on a queue.
The monitor starts its watcher after the init has been forked (docs/design.md:
fork only while single-threaded). Hooks still fork from the monitor's
thread later; the child inherits none of those threads and touches none of
their locks - it only rearranges descriptors, joins namespaces and execs -
and CPython takes its import lock and the GIL across fork(2), so a hook
child cannot deadlock on either.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Callable

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

__all__ = ["ARRIVED", "CHANGED", "GONE", "Watcher"]

# watchdog logs a race of its own when a watch stops mid-read; without a
# handler Python would print that on the stderr of ``events --follow``.
logging.getLogger("watchdog").addHandler(logging.NullHandler())

#: What to be told of: a file that arrived complete (renamed in, or closed
#: after writing), a file written to (a cgroup's freezer.state, the event
#: log's -wal), an entry removed.
ARRIVED = "arrived"
CHANGED = "changed"
GONE = "gone"

_FILTERS: dict[str, list[type[FileSystemEvent]]] = {
    # Created: only what is no regular file (a link, a FIFO), which is never
    # closed after writing and must be answered all the same.
    ARRIVED: [FileMovedEvent, FileClosedEvent, FileCreatedEvent],
    CHANGED: [FileModifiedEvent, FileMovedEvent, FileCreatedEvent],
    GONE: [FileDeletedEvent, FileMovedEvent, DirDeletedEvent, DirMovedEvent],
}


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class _Handler(FileSystemEventHandler):
    def __init__(
        self, tag: str, kind: str, accept: Callable[[str], bool], watcher: Watcher
    ) -> None:
        self.tag = tag
        self.kind = kind
        self.accept = accept
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        # watchdog's dispatcher thread: only queue and wake.
        path = event.src_path
        if isinstance(event, FileMovedEvent | DirMovedEvent) and self.kind != GONE:
            # Renamed in: the new name is what arrived (renamed out: dest "").
            path = event.dest_path or event.src_path
        name = os.path.basename(_text(path))
        if self.kind == ARRIVED and isinstance(event, FileCreatedEvent) and _being_written(path):
            return  # a file still being written: it arrives when closed
        if name and self.accept(name):
            self.watcher.notify(self.tag, name)


def _being_written(path: bytes | str) -> bool:
    """Whether ``path`` is a regular file of its own (not followed if a
    link; not a hard link, which no one closes after writing); a name gone
    already counts as one (nothing to answer)."""
    try:
        st = os.lstat(path)
    except OSError:
        return True
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


class Watcher:
    """Watches directories and wakes one consumer through an eventfd."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._queue: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        # Full events: a file renamed in from elsewhere is a move, not a
        # creation (which would also fire for a file still being written).
        self._observer = InotifyObserver(generate_full_events=True)
        self._started = False

    def fileno(self) -> int:
        return self._fd

    def watch(
        self,
        directory: str,
        tag: str,
        kind: str,
        accept: Callable[[str], bool] = lambda _name: True,
    ) -> None:
        """Report ``kind`` events in ``directory`` for names ``accept`` takes,
        as ``(tag, name)``. Call after :meth:`start`: then a directory that
        cannot be watched raises OSError here, and the other watches stand."""
        handler = _Handler(tag, kind, accept, self)
        self._observer.schedule(handler, directory, recursive=False, event_filter=_FILTERS[kind])

    def start(self) -> None:
        self._observer.start()
        self._started = True

    def notify(self, tag: str, name: str) -> None:
        with self._lock:
            self._queue.append((tag, name))
        os.eventfd_write(self._fd, 1)

    def drain(self) -> list[tuple[str, str]]:
        """What happened since the last drain, in order, each (tag, name) once."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass
        with self._lock:
            items = list(dict.fromkeys(self._queue))
            self._queue.clear()
        return items

    def close(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._started = False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
