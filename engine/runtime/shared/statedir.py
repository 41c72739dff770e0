"""A container's state directory under ``--root``: what other processes read.

``<root>/<id>/state.json`` is the OCI state exactly as ``runlog state``
prints it (the monitor keeps it current, so the polled command prints it
without parsing); ``runtime.json`` holds what runlog needs to find the
container again (monitor and init pids with their start times, cgroup
paths, bundle); ``control.sock`` is the monitor's socket and ``requests/``
its request spool. Every file is written to a temporary name and renamed
into place: a reader sees the old or the new, never half. Not fsynced, as
runc does not sync its state.json: these files say what runs now, which a
power loss ends (and /run is a tmpfs on most hosts); the event log is
what must last, and its commits are synced. Here, with /run on ext4, a
sync cost 0.4 ms on every transition.

Light on purpose: this module is on every scheduler call, and uses
:mod:`posix` rather than :mod:`os` (see :mod:`engine.settings`).
"""

from __future__ import annotations

import posix

from engine.errors import ContainerExists, ContainerNotFound, InvalidId, StateDenied
from engine.layout import (
    CONTROL,
    MAX_ID,
    RELEASED,
    RUNTIME,
    STATE,
    SocketAddress,
    is_valid_id,
    join,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "CONTROL",
    "RELEASED",
    "RUNTIME",
    "STATE",
    "SocketAddress",
    "StateDir",
    "alive",
    "kill_monitor",
    "process_start_time",
    "validate_id",
]


def validate_id(container_id: str) -> None:
    """runc's rule (:func:`engine.layout.is_valid_id`), or InvalidId."""
    if not is_valid_id(container_id):
        if len(container_id) > MAX_ID:
            problem = f"{len(container_id)} characters, at most {MAX_ID}"
        else:
            problem = "invalid container id format (letters, digits, _ + - . only)"
        raise InvalidId(container_id, problem)


def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields from the third (state) on; None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rfind(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None if no such process.

    A pid plus its start time names a process; a pid alone may be reused.
    """
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def alive(info: Mapping[str, Any], role: str) -> bool:
    """Whether runtime.json's ``role`` (``monitor`` or ``init``) still runs:
    its pid with the start time recorded for it, against pid reuse. A
    zombie has ended (runc counts it stopped): only its status is left,
    for a parent that may never come to collect it."""
    pid = info.get(f"{role}_pid")
    if not isinstance(pid, int):
        return False
    fields = _stat(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return False
    return int(fields[19]) == info.get(f"{role}_start")


def kill_monitor(info: Mapping[str, Any]) -> int | None:
    """SIGKILL runtime.json's monitor if it still runs (:func:`alive`) and
    wait (2 s at most) until it has ended; its pid, or None if it was not
    running."""
    if not alive(info, "monitor"):
        return None
    pid = int(info["monitor_pid"])
    try:
        posix.kill(pid, 9)
    except ProcessLookupError:
        return None
    import time

    deadline = time.monotonic() + 2.0
    while alive(info, "monitor") and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


class StateDir:
    def __init__(self, root: str, container_id: str) -> None:
        validate_id(container_id)
        self.root = root
        self.id = container_id
        self.path = join(root, container_id)

    def file(self, name: str) -> str:
        return join(self.path, name)

    def exists(self) -> bool:
        try:
            return posix.stat(self.path).st_mode & _S_IFMT == _S_IFDIR
        except (OSError, ValueError):
            return False

    def create(self) -> None:
        """Claim the id: mkdir is atomic, so of two creates one wins."""
        import os

        # Private, as runc keeps its root (0700; each container's 0711,
        # its files 0600): what a container runs, its bundle and its owner
        # are no one else's to read.
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            posix.mkdir(self.path, 0o711)
        except FileExistsError:
            raise ContainerExists(self.id) from None

    def mark(self, name: str) -> None:
        """Make the empty file ``name`` (a sign, not data: not synced; the
        state directory's file system is usually a tmpfs)."""
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC
        posix.close(posix.open(self.file(name), flags, 0o600))

    def write(self, name: str, data: bytes) -> None:
        path = self.file(name)
        tmp = f"{path}.tmp.{posix.getpid()}"
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC
        fd = posix.open(tmp, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view) :]
        finally:
            posix.close(fd)
        posix.replace(tmp, path)

    def read(self, name: str) -> bytes:
        try:
            with open(self.file(name), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        except PermissionError as err:  # another user's container
            raise StateDenied(self.id, str(err.filename), "open") from None

    def runtime(self) -> dict[str, Any]:
        """runtime.json's fields; ``{}`` if it does not parse. Raises
        ContainerNotFound when the container has no state directory."""
        from engine import jsonfast

        try:
            info = jsonfast.loads(self.read(RUNTIME))
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def remove(self, keep: str | None = None) -> None:
        """Remove the state directory; with ``keep``, all but that file, if
        it is there (the directory stays for it)."""
        _remove_tree(self.path, keep)


_S_IFMT, _S_IFDIR = 0o170000, 0o040000


def _remove_tree(path: str, keep: str | None = None) -> None:
    """Remove ``path`` and what is in it: files, and directories such as the
    request spool (``requests/``) with whatever requests are left in it;
    all but ``keep``, if it is there."""
    try:
        entries = posix.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if keep in entries:
        entries.remove(keep)
        path_kept = True
    else:
        path_kept = False
    for entry in entries:
        child = join(path, entry)
        try:
            posix.unlink(child)
        except IsADirectoryError:
            _remove_tree(child)
        except FileNotFoundError:
            pass
    if not path_kept:
        posix.rmdir(path)
