"""Where a container's files are under ``--root``: names, ids, socket addresses.

No imports but :mod:`posix`: :mod:`engine.quick` answers a scheduler's
polls with this alone, and :mod:`engine.runtime.shared.statedir` builds on it;
outside :mod:`engine.runtime`, whose package costs the short way 0.3 ms.
"""

import posix

__all__ = [
    "CONTROL",
    "DEFAULT_ROOT",
    "FORKS_MONITOR",
    "MAX_ID",
    "RELEASED",
    "REQUEST_TIMEOUT",
    "RUNTIME",
    "STATE",
    "STATE_TIMEOUT",
    "SocketAddress",
    "container_path",
    "default_root",
    "exists",
    "is_valid_id",
    "join",
    "private",
]

#: ``--root`` when neither the flag nor RUNLOG_ROOT gives one.
DEFAULT_ROOT = "/run/runlog"
STATE = "state.json"
RUNTIME = "runtime.json"
CONTROL = "control.sock"
#: An empty file the monitor makes once a start has released the init to
#: exec the user's process, before the start's hooks: what tells a later
#: command, if the monitor and the init are both gone before the start's
#: event was written, that the program did run (engine.runtime.cli.reconcile).
RELEASED = "released"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
#: How long a client waits for the monitor's answer. A scheduler polls
#: ``state``: a monitor that does not answer that in time is busy (a long
#: hook), and state.json answers instead.
REQUEST_TIMEOUT = 60.0
STATE_TIMEOUT = 2.0
#: The commands whose monitor is forked as soon as the command line is read
#: (by engine.quick, else engine.cli).
FORKS_MONITOR = frozenset({"create", "run"})
# sun_path: 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107


def default_root(uid: int, runtime_dir: str | None) -> str:
    """``--root`` when neither the flag nor RUNLOG_ROOT gives one: root's
    :data:`DEFAULT_ROOT`; an unprivileged user's ``$XDG_RUNTIME_DIR/runlog``
    (``runtime_dir``), else ``/tmp/runlog-<uid>`` (engine.places)."""
    if uid == 0:
        return DEFAULT_ROOT
    if runtime_dir and runtime_dir.startswith("/"):
        return join(runtime_dir, "runlog")
    return f"/tmp/runlog-{uid}"


def exists(path: str) -> bool:
    """``os.path.exists`` with :mod:`posix` alone."""
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def private(path: str, uid: int) -> bool:
    """Whether ``path`` is a directory of ``uid``'s own, mode 0700, not a
    symlink (engine.places.private_dir says what is wrong otherwise)."""
    try:
        st = posix.lstat(path)
    except OSError:
        return False
    return st.st_mode & 0o177777 == 0o040700 and st.st_uid == uid


#: The longest id: it names the container's state directory and cgroup,
#: and a file name holds 255 bytes (NAME_MAX), where runc's ids fail too.
MAX_ID = 255


def is_valid_id(container_id: str) -> bool:
    """runc's rule: ``^[\\w+-\\.]+$``, and not ``.`` or ``..``; at most
    :data:`MAX_ID` characters."""
    return (
        bool(container_id)
        and container_id not in (".", "..")
        and _ID_CHARS.issuperset(container_id)
        and len(container_id) <= MAX_ID
    )


def join(directory: str, name: str) -> str:
    """``os.path.join`` for a name without slashes (an id, a file name)."""
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def container_path(root: str, container_id: str, name: str) -> str:
    """The file ``name`` of container ``container_id`` under ``root``."""
    return join(join(root, container_id), name)


class SocketAddress:
    """The address of the unix socket at ``path`` as bind(2) and connect(2)
    take it: ``with SocketAddress(path) as address: sock.connect(address)``.

    A socket address holds 107 bytes of path; a container's control.sock
    under a long ``--root`` (podman's 64-character ids under a test's
    temporary directory) does not fit. Such a path is reached through the
    directory, opened, as ``/proc/self/fd/N/NAME``, which the kernel
    resolves to the same file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> str:
        if len(self.path.encode()) <= _SUN_PATH_MAX:
            return self.path
        directory, _, name = self.path.rpartition("/")
        self._fd = posix.open(directory or "/", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{name}"

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            posix.close(self._fd)
            self._fd = -1
