"""Where a runlog that is not root keeps its state and its event log, and
what it checks before it uses them.

With no ``--root``/``--db`` (nor RUNLOG_ROOT/RUNLOG_DB), an unprivileged
runlog keeps

* its state under ``$XDG_RUNTIME_DIR/runlog`` (runc: ``$XDG_RUNTIME_DIR/runc``)
  or, without that variable (a Slurm step has none), ``/tmp/runlog-<uid>``
  (:func:`engine.layout.default_root`);
* its event log in ``$XDG_STATE_HOME/runlog/events.db`` (default
  ``~/.local/state``) when that is on a local filesystem, else in
  ``/var/tmp/runlog-<uid>/events.db``: node-local and durable
  (:func:`default_db`).

Each directory of runlog's own there is made mode 0700 and, made or found,
checked: a directory, not a symlink, owned by the caller, mode 0700 - in
a shared place (``/tmp``, ``/var/tmp``) another user could have made it
first (:func:`private_dir`).

An SQLite event log is never put on a network filesystem (NFS, Lustre,
GPFS, CIFS...: HPC home directories are), where SQLite's write-ahead log is
not safe: :func:`refuse_network_db` reads the filesystem's type with
statfs(2) (:func:`filesystem_type`) and refuses, naming ``--db`` and
``RUNLOG_DB``.
"""

from __future__ import annotations

import posix

from engine.errors import RunlogError
from engine.layout import exists

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "NETWORK_FILESYSTEMS",
    "PlaceError",
    "default_db",
    "filesystem_type",
    "network_filesystem",
    "private_dir",
    "refuse_network_db",
]

#: statfs(2) f_type of the filesystems SQLite's locking cannot trust.
NETWORK_FILESYSTEMS = {
    0x6969: "NFS",
    0x0BD00BD0: "Lustre",
    0x47504653: "GPFS",
    0xFF534D42: "CIFS",
    0xFE534D42: "SMB2",
    0x517B: "SMB",
    0x00C36400: "CephFS",
    0x19830326: "BeeGFS",
    0x01161970: "GFS2",
    0x7461636F: "OCFS2",
    0xAAD7AAEA: "PanFS",
    0x5346414F: "AFS",
    0x01021997: "9p",
}
_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000


class PlaceError(RunlogError):
    """A directory or file runlog would use is not safe to use."""


def filesystem_type(path: str) -> int:
    """statfs(2)'s ``f_type`` of the filesystem ``path`` is on."""
    from engine.linux import ffi

    # struct statfs: f_type (a long on every 64-bit Linux) comes first.
    buffer = ffi.create_string_buffer(128)
    if ffi.libc.statfs(path.encode(), buffer) != 0:
        errno = ffi.get_errno()
        raise OSError(errno, posix.strerror(errno), path)
    return int.from_bytes(bytes(buffer)[:8], "little" if _little() else "big") & 0xFFFFFFFF


def _little() -> bool:
    import sys

    return sys.byteorder == "little"


def _existing(path: str) -> str:
    """``path``, or its nearest ancestor that exists."""
    while not exists(path):
        parent = path.rsplit("/", 1)[0] or "/"
        if parent == path:
            break
        path = parent
    return path


def network_filesystem(path: str) -> str | None:
    """The name of the network filesystem ``path`` (or where it would be
    made) is on; ``None`` on a local one or where it cannot be told."""
    try:
        kind = filesystem_type(_existing(_absolute(path)))
    except OSError:
        return None
    return NETWORK_FILESYSTEMS.get(kind)


def refuse_network_db(path: str) -> None:
    """Refuse an SQLite event log on a network filesystem."""
    kind = network_filesystem(path)
    if kind is not None:
        raise PlaceError(
            f"event log {path}: on {kind}, a network filesystem, where SQLite's "
            "write-ahead log is not safe; put the log on node-local storage with "
            "--db or RUNLOG_DB"
        )


def _absolute(path: str) -> str:
    return path if path.startswith("/") else f"{posix.getcwd()}/{path}"


def default_db(env: Mapping[str, str], uid: int) -> str:
    """An unprivileged caller's event log when none is given."""
    state = env.get("XDG_STATE_HOME") or ""
    if not state.startswith("/"):
        home = env.get("HOME") or _home(uid)
        state = f"{home}/.local/state" if home else ""
    if state and network_filesystem(state) is None:
        return f"{state}/runlog/events.db"
    return f"/var/tmp/runlog-{uid}/events.db"


def _home(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def private_dir(path: str, uid: int) -> None:
    """Make ``path`` (mode 0700; its missing parents too, 0700) unless it
    exists, then check it: a directory, not a symlink, owned by ``uid``,
    mode 0700. Anything else is refused, naming the path."""
    try:
        st = posix.lstat(path)
    except FileNotFoundError:
        _makedirs(path)
        st = posix.lstat(path)
    except OSError as err:  # a HOME not the caller's (sudo keeps root's)
        raise PlaceError(
            f"cannot use {path}: {err.strerror}; give --root/--db or RUNLOG_ROOT/RUNLOG_DB"
        ) from err
    kind = st.st_mode & _S_IFMT
    if kind == _S_IFLNK:
        raise PlaceError(f"{path} is a symlink; runlog uses only a directory of its own there")
    if kind != _S_IFDIR:
        raise PlaceError(f"{path} is not a directory")
    if st.st_uid != uid:
        raise PlaceError(
            f"{path} belongs to uid {st.st_uid}, not to uid {uid}: another user may have "
            "made it; remove it, or give --root/--db"
        )
    if st.st_mode & 0o7777 != 0o700:
        raise PlaceError(
            f"{path} has mode {st.st_mode & 0o7777:04o}, not 0700: others could reach "
            f"runlog's files there; chmod 700 {path}"
        )


def _makedirs(path: str) -> None:
    """mkdir -p with mode 0700."""
    parent = path.rsplit("/", 1)[0]
    if parent and not exists(parent):
        _makedirs(parent)
    try:
        posix.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise PlaceError(f"cannot make {path}: {err.strerror}") from err
