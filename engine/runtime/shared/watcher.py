"""File-system notifications (inotify(7)) for one consumer loop, without threads.

A :class:`Watcher` is one inotify instance watching a few directories
(never recursively). Its descriptor is the instance's own: the consumer -
the monitor's poll loop, ``events --follow`` - polls :meth:`Watcher.fileno`
and takes what happened with :meth:`Watcher.drain`, as ``(tag, name)`` for
each event whose file name a watch's filter accepts. No thread is started
and nothing runs outside the consumer's: a monitor holds one thread, and
may fork (hooks) at any time.

An instance counts against the user's ``fs.inotify.max_user_instances``
(128 by default): :class:`Watcher` raises OSError (EMFILE) when none is
left, and the consumer does without (the monitor looks every so often, and
is woken over its control socket: :mod:`engine.runtime.monitor.server`).
"""

from __future__ import annotations

import os
import stat
import struct

from engine.linux import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ARRIVED", "CHANGED", "GONE", "OVERFLOW", "Watcher"]

#: What to be told of: a file that arrived complete (renamed in, or closed
#: after writing), a file written to (a cgroup's freezer.state, the event
#: log's -wal), an entry removed.
ARRIVED = "arrived"
CHANGED = "changed"
GONE = "gone"
#: The name reported, once per tag, when the kernel's queue overflowed and
#: events were lost: look at everything.
OVERFLOW = ""

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_Q_OVERFLOW = 0x4000
_IN_ONLYDIR = 0x01000000
_IN_MASK_ADD = 0x20000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

#: The events of each kind, and whether directories count.
_MASKS: dict[str, tuple[int, bool]] = {
    # Created: only what is no regular file (a link, a FIFO), which is never
    # closed after writing and must be answered all the same.
    ARRIVED: (_IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_CREATE, False),
    CHANGED: (_IN_MODIFY | _IN_MOVED_TO | _IN_CREATE, False),
    GONE: (_IN_DELETE | _IN_MOVED_FROM, True),
}
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name
_BUFFER = 65536

_libc = ffi.libc


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ffi.get_errno()
        raise OSError(errno, os.strerror(errno), what)
    return result


class _Watch:
    __slots__ = ("accept", "directory", "dirs", "kind", "mask", "tag")

    def __init__(
        self, tag: str, kind: str, accept: Callable[[str], bool], directory: bytes
    ) -> None:
        self.tag = tag
        self.kind = kind
        self.mask, self.dirs = _MASKS[kind]
        self.accept = accept
        self.directory = directory


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
    """One inotify instance; its descriptor wakes the consumer."""

    def __init__(self) -> None:
        self._fd = _check(_libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC), "inotify_init1")
        self._watches: dict[int, list[_Watch]] = {}

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
        as ``(tag, name)``. A directory that cannot be watched raises
        OSError; the other watches stand."""
        path = os.fsencode(directory)
        watch = _Watch(tag, kind, accept, path)
        flags = watch.mask | _IN_ONLYDIR | _IN_MASK_ADD
        wd = _check(_libc.inotify_add_watch(self._fd, path, flags), directory)
        self._watches.setdefault(wd, []).append(watch)

    def start(self) -> None:
        """Nothing to start: kept for callers written for a threaded watcher."""

    def drain(self) -> list[tuple[str, str]]:
        """What happened since the last drain, in order, each (tag, name) once."""
        found: dict[tuple[str, str], None] = {}
        while True:
            try:
                data = os.read(self._fd, _BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            self._parse(data, found)
        return list(found)

    def _parse(self, data: bytes, found: dict[tuple[str, str], None]) -> None:
        at = 0
        while at + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
            raw = data[at + _EVENT.size : at + _EVENT.size + length]
            at += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                for watches in self._watches.values():
                    for watch in watches:
                        found[(watch.tag, OVERFLOW)] = None
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            if not name:
                continue  # about the directory itself
            for watch in self._watches.get(wd, ()):
                if not mask & watch.mask or (mask & _IN_ISDIR and not watch.dirs):
                    continue
                if (
                    watch.kind == ARRIVED
                    and mask & (_IN_MOVED_TO | _IN_CLOSE_WRITE) == 0
                    and _being_written(os.path.join(watch.directory, raw.rstrip(b"\0")))
                ):
                    continue  # a file still being written: it arrives when closed
                if watch.accept(name):
                    found[(watch.tag, name)] = None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
