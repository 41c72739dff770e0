"""The request spool: ``<state dir>/requests/``, the file transport of control requests.

A client writes its request to a hidden file in the directory (``.NAME.tmp``)
and renames it to ``NAME``: the rename is atomic, so the monitor never sees
half a request. The monitor reads it, runs it through the same dispatcher as
the socket's, writes ``NAME.reply`` (tmp + rename, owned by the request's
owner) and removes ``NAME``. The owner of the file is the request's actor.
A request that arrives while the monitor is busy - or before it serves at
all - waits in the directory: it is acted on when the monitor gets to it.

Names starting with ``.`` and ending in ``.reply`` are never requests.

A client then wakes the monitor: it sends :data:`engine.wire.POKE` on the container's
``control.sock``, and the monitor answers once it has taken what the spool
holds - so neither side needs an inotify instance (of which a user has 128
by default) for a request to be served at once. The client then looks for
its reply, more and more rarely (:data:`LOOKS`). A monitor that cannot be
poked (not yet serving, busy, or the client not allowed to connect) still
finds the request: by its own watch on the spool, or a look every second.

``delete`` removes the state directory, the spool with it, so a spooled
``delete`` that succeeds has no reply file: the spool's removal is its
reply, and :class:`SpoolClient` reports it as :data:`engine.wire.DELETED`.
"""

from __future__ import annotations

import os
import stat
import time

from engine.errors import RunlogError
from engine.wire import DELETED as _DELETED
from engine.wire import MAX_REQUEST, POKE, encode_reply

__all__ = ["POKE", "REPLY", "REQUESTS", "Entry", "Spool", "SpoolClient", "is_request"]

REQUESTS = "requests"
REPLY = ".reply"
#: Seconds between a client's looks for its reply: growing, then every 0.1 s.
LOOKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
#: Seconds a client waits for the monitor to answer its wake-up.
POKE_TIMEOUT = 5.0


def is_request(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not name.endswith(REPLY)


class Entry:
    """A request file as the monitor found it: its owner, its bytes, or why
    it cannot be read as a request (``problem``)."""

    __slots__ = ("data", "name", "problem", "uid")

    def __init__(self, name: str, uid: int | None, data: bytes, problem: str | None) -> None:
        self.name = name
        self.uid = uid
        self.data = data
        self.problem = problem


class Spool:
    """The monitor's side of one container's spool directory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def make(self, owner: int) -> None:
        """Create the directory: 0700, the container's owner's (root may always)."""
        os.mkdir(self.directory, 0o700)
        if os.geteuid() == 0 and owner != 0:
            os.chown(self.directory, owner, -1)

    def pending(self) -> list[str]:
        """Requests waiting, oldest first."""
        found: list[tuple[int, str]] = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if not is_request(name):
                continue
            try:
                st = os.lstat(os.path.join(self.directory, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                found.append((st.st_mtime_ns, name))
        return [name for _mtime, name in sorted(found)]

    def read(self, name: str) -> Entry | None:
        """The request ``name``, or None if it is gone. Only a regular file
        with one link is read (O_NOFOLLOW, checked on the open descriptor):
        in a spool another user can write to, a link could pass off someone
        else's file as a request of theirs."""
        path = os.path.join(self.directory, name)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as err:
            try:
                st = os.lstat(path)
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):  # a symbolic link (ELOOP), a socket (ENXIO)
                return Entry(name, st.st_uid, b"", _not_regular(name, st.st_mode))
            problem = f"spool entry {name!r} cannot be read: {err.strerror}"
            return Entry(name, st.st_uid, b"", problem)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return None
            if not stat.S_ISREG(st.st_mode):
                return Entry(name, st.st_uid, b"", _not_regular(name, st.st_mode))
            if st.st_nlink != 1:
                problem = f"spool entry {name!r} is not a regular file of its own (a hard link)"
                return Entry(name, st.st_uid, b"", problem)
            chunks = []
            size = 0
            while size <= MAX_REQUEST:
                chunk = os.read(fd, MAX_REQUEST + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return Entry(name, st.st_uid, b"".join(chunks), None)
        finally:
            os.close(fd)

    def answer(self, name: str, reply: bytes, uid: int | None) -> None:
        """Write ``NAME.reply`` (atomically, owned by ``uid``), then remove ``NAME``."""
        final = os.path.join(self.directory, name + REPLY)
        tmp = os.path.join(self.directory, f".{name}{REPLY}.tmp")
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, reply)
                if uid is not None and os.geteuid() == 0:
                    os.fchown(fd, uid, -1)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError:
            # No place for the reply (a name too long for ".reply", a full
            # disk): the request was acted on and recorded all the same.
            pass
        try:
            os.unlink(os.path.join(self.directory, name))
        except OSError:
            pass


def _not_regular(name: str, mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    )
    kind = next((word for test, word in kinds if test(mode)), "not a file")
    return f"spool entry {name!r} is not a regular file ({kind}); not followed"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: What a spooled request gets when the container is deleted before its reply.
DELETED = encode_reply(_DELETED)


class SpoolTimeout(RunlogError):
    """No reply came in time; the request stays in the spool."""


class SpoolClient:
    """A client of one spool: drop requests, wake the monitor, wait for their replies."""

    def __init__(self, directory: str) -> None:
        from engine.runtime.shared.statedir import CONTROL

        if not os.path.isdir(directory):
            raise RunlogError(f"no request spool to use at {directory}: no such directory")
        self.directory = directory
        self.control = os.path.join(os.path.dirname(os.path.abspath(directory)), CONTROL)
        self._count = 0

    def submit(self, data: bytes) -> str:
        """Drop one request and wake the monitor; return its name."""
        self._count += 1
        name = f"{os.getpid()}-{time.time_ns()}-{self._count}"
        tmp = os.path.join(self.directory, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.directory, name))
        self.poke()
        return name

    def poke(self) -> bool:
        """Wake the monitor; True once it has taken what the spool holds."""
        from engine.control import NoMonitor, exchange

        try:
            return bool(exchange(self.control, POKE + b"\n", POKE_TIMEOUT))
        except (NoMonitor, OSError):
            return False  # it finds the request by itself

    def reply(self, name: str, timeout: float | None = 60.0) -> bytes:
        """Wait for ``NAME.reply``; return it (and remove it)."""
        path = os.path.join(self.directory, name + REPLY)
        deadline = None if timeout is None else time.monotonic() + timeout
        looks = 0
        while True:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                pass
            else:
                os.unlink(path)
                return data
            if not os.path.isdir(self.directory):
                return DELETED
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SpoolTimeout(
                    f"no reply to {name} in {self.directory} after {timeout:g}s; "
                    "the request stays in the spool (is the container's monitor running?)"
                )
            pause = LOOKS[min(looks, len(LOOKS) - 1)]
            looks += 1
            time.sleep(pause if left is None else min(pause, left))

    def call(self, data: bytes, timeout: float | None = 60.0) -> bytes:
        return self.reply(self.submit(data), timeout)

    def close(self) -> None:
        """Nothing held between requests."""

    def __enter__(self) -> SpoolClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
