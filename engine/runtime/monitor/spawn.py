"""Forking the container's init: the monitor's side (the init's own is
:mod:`engine.runtime.init.stages`).

Usually the monitor clones the init straight into its new namespaces
(clone3 with their CLONE_NEW* flags, and into its cgroup2 cgroup): the
init, pid 1 of its pid namespace and the monitor's child, joins its v1
cgroups and
then makes its cgroup namespace itself (so that its root is the
container's cgroup, as with runc); in a new user namespace, made by the
same clone, it first has the monitor write the namespace's maps. Where
that cannot be - a namespace joined by path, a new time namespace, a
caller that reaps the init (it must be re-parented to the caller), a
kernel that refuses the clone - the monitor forks the intermediate
process, which joins the container's cgroup, joins or creates its
namespaces (a new user namespace first, mapped by the monitor), and forks
the init (pid 1 in a new pid namespace). The intermediate reports the init's pid and exits; the
monitor is a child subreaper (PR_SET_CHILD_SUBREAPER), so the init
becomes the monitor's child and the monitor reaps it. Cloning the init
directly saves a fork and the intermediate's work (1-2 ms of create). The
init builds the root filesystem, checks cwd and finds ``args[0]`` on the
container's PATH, applies rlimits (in a new user namespace the monitor
sets them, on "ready"), user and capabilities, tells the monitor it is
ready, and blocks until the monitor releases it (runtime-spec "start"):
then it says "exec" and execs the user's process. Until then the init
writes any error back on the sync socket, and the monitor's release
returns on "exec", as runc's start returns before its init's exec. The
socket is close-on-exec: EOF after "exec" means the exec happened, an
error line that it failed, which the monitor reads when the init has
ended (:meth:`InitHandle.exec_error`).

A ``linux.seccomp`` filter is built by the monitor before the fork
(:mod:`engine.linux.seccomp`, imported then and only for a config that has
one), so the init only loads it: as runc's standard_init_linux.go does,
before the capabilities are dropped when ``noNewPrivileges`` is false (loading needs
``CAP_SYS_ADMIN`` then), else as the last step before execve, so that as
few of the init's own syscalls as possible run under the container's filter.
"""

from __future__ import annotations

import _socket
import os

from engine.errors import ActionError
from engine.linux import clone, rlimits
from engine.oci.model import Config
from engine.runtime.init import stages

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.linux.libseccomp import Filter

__all__ = ["InitHandle", "spawn"]


class InitHandle:
    """The monitor's side of one init: its pid and the sync socket."""

    def __init__(
        self, pid: int, sock: _socket.socket, seccomp_skipped: tuple[str, ...] = ()
    ) -> None:
        self.pid = pid
        self._sock = sock
        self._buffer = bytearray()
        # Syscalls of linux.seccomp this libseccomp does not know, left out
        # of the filter as runc leaves them out: for the caller to record.
        self.seccomp_skipped = seccomp_skipped

    def release(self) -> None:
        """Let the init exec: return once it is about to (runc's start
        returns there too); raise ActionError if it failed before. Whether
        the exec itself worked, :meth:`exec_error` tells once it has ended."""
        fd = self._sock.fileno()
        try:
            stages.send_line(fd, "release")
            line = stages.recv_line(fd, self._buffer)
        except BaseException:
            self._sock.close()
            raise
        if line == "exec":
            return
        self._sock.close()
        if line is None:
            raise ActionError("the container's init ended before it could exec")
        raise ActionError(line.removeprefix("error "))

    def exec_error(self) -> str | None:
        """Once the init has ended: why its exec failed, or None if it
        exec'd (the socket closed on exec without a word)."""
        try:
            self._sock.setblocking(False)
            line = stages.recv_line(self._sock.fileno(), self._buffer)
        except (BlockingIOError, OSError):
            line = None
        finally:
            self._sock.close()
        return None if line is None else line.removeprefix("error ")

    def close(self) -> None:
        self._sock.close()


def _map_user_namespace(pid: int, config: Config) -> None:
    from engine.linux import userns

    userns.map_process(pid, config.linux.uid_mappings, config.linux.gid_mappings)


def spawn(
    config: Config,
    cgroup_tasks: list[str],
    cgroup2: str | None,
    *,
    no_pivot: bool = False,
    console: int | None = None,
    preserve_fds: int = 0,
    stdio: tuple[int, int, int] | None = None,
    meanwhile: Callable[[int | None], None] | None = None,
    caller_reaps: bool = False,
) -> InitHandle:
    """Fork the init and wait until it is ready to exec, or failed.

    The init enters its cgroup as :mod:`engine.linux.clone` says, without
    waiting on the kernel's threadgroup lock: the init (or the
    intermediate) is forked into the
    cgroup2 directory ``cgroup2`` and writes ``0`` to the v1 ``tasks``
    files ``cgroup_tasks``; where clone3 is refused, it is forked as usual
    and writes the cgroup2 directory's ``cgroup.procs`` as well.
    ``console``: a socket connected to ``--console-socket``, for
    ``terminal: true``; the init sends the pty master on it. The caller must
    be a child subreaper and single-threaded. ``stdio``: descriptors for
    the init's stdin, stdout and stderr (else it keeps the caller's).
    ``meanwhile``: the caller's own work, run once the init (or the
    intermediate) is forked, while the init sets itself up (some 5 ms the caller
    would spend waiting), given the init's pid if it is known by then
    (cloned directly; else ``None``); if it raises, the init is killed and
    the error goes on. ``caller_reaps``: the init must be re-parented to create's
    caller, through the intermediate.
    """
    seccomp = _build_filter(config)
    if console is not None:
        _import_console()
    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    if no_pivot:
        os.environ["_RUNLOG_NO_PIVOT"] = "1"
    flags = None if caller_reaps else stages.direct_flags(config)
    pid, joins, direct = _fork_init(cgroup_tasks, cgroup2, flags)
    if pid == 0:
        parent.close()
        stage = stages.init_direct if direct else stages.intermediate
        try:
            stage(config, child.fileno(), joins, console, preserve_fds, stdio, seccomp)
            os._exit(0)
        except BaseException as err:
            try:
                stages.send_line(child.fileno(), f"error {err}")
            finally:
                os._exit(1)
    os.environ.pop("_RUNLOG_NO_PIVOT", None)
    if seccomp is not None:
        seccomp.release()  # the children hold their own copies
    child.close()
    # The init's pid: known now if cloned directly, else once the
    # intermediate has said it.
    found: list[int] = [pid] if direct else []
    pid_intermediate = None if direct else pid
    failed: BaseException | None = None
    buffer = bytearray()
    try:
        if meanwhile is not None:
            userns = config.linux.namespace("user")
            if userns is not None and not userns.path:
                # The init (or the intermediate) waits for its user
                # namespace's mapping before it goes on: mapped first, the
                # caller's work then overlaps the rest of the set-up
                # instead of holding it.
                _await_ready(parent.fileno(), pid, config, found, buffer, until_mapped=True)
            try:
                meanwhile(found[0] if found else None)
            except BaseException as err:
                failed = err  # once the init is ready or gone: undone below
        _await_ready(parent.fileno(), pid, config, found, buffer)
        if failed is not None:
            raise failed
    except BaseException:
        parent.close()
        if pid_intermediate is not None:
            _reap(pid_intermediate)
        if found:
            _kill(found[0])
        raise
    if pid_intermediate is not None:
        _reap(pid_intermediate)
    return InitHandle(found[0], parent, () if seccomp is None else seccomp.skipped)


def _await_ready(
    fd: int,
    child: int,
    config: Config,
    found: list[int],
    buffer: bytearray,
    *,
    until_mapped: bool = False,
) -> None:
    """Serve the init's set-up until it is ready; its pid goes into
    ``found`` (there already when it was cloned directly). ``child``: the
    process forked, the intermediate or the init, whose user namespace the
    monitor maps. ``until_mapped``: return once that mapping is done.
    ``buffer``: what was read past the last line, kept between calls."""
    ready = False
    # The intermediate's "pid" and the init's "ready" share the socket: either may come first.
    while not ready or not found:
        line = stages.recv_line(fd, buffer)
        if line is None:
            raise ActionError("the container's init exited during set-up")
        word, _, rest = line.partition(" ")
        if word == "userns":
            _map_user_namespace(child, config)
            stages.send_line(fd, "mapped")
            if until_mapped:
                return
        elif word == "pid":
            found.append(int(rest))
        elif word == "ready":
            ready = True
        elif word == "error":
            raise ActionError(rest)
    if config.linux.namespace("user") is not None:
        # runc sets them from the parent on procReady: raising a hard limit
        # needs CAP_SYS_RESOURCE in the initial user namespace, which the
        # init in a new one never has.
        rlimits.apply(config.process.rlimits, found[0])


def _fork_init(
    cgroup_tasks: list[str], cgroup2: str | None, flags: int | None
) -> tuple[int, list[str], bool]:
    """The init cloned with ``flags`` into ``cgroup2`` where it can be,
    else the intermediate: the pid (0 in the child), the files the child
    writes ``0`` to, and whether it is the init itself."""
    if flags is not None:
        pid = _clone_init(cgroup2, flags)
        if pid is not None:
            return pid, list(cgroup_tasks), True
    pid, joins = _fork_intermediate(cgroup_tasks, cgroup2)
    return pid, joins, False


def _clone_init(cgroup2: str | None, flags: int) -> int | None:
    """clone3 into the new namespaces and the cgroup2 directory; ``None``
    where the kernel refuses (the intermediate then says what is wrong, if
    anything)."""
    fd = None
    if cgroup2 is not None:
        try:
            fd = clone.open_cgroup(cgroup2)
        except OSError:
            return None
    try:
        return clone.fork_into_cgroup(fd, flags)
    finally:
        if fd is not None:
            os.close(fd)


def _fork_intermediate(cgroup_tasks: list[str], cgroup2: str | None) -> tuple[int, list[str]]:
    """Fork the intermediate, into ``cgroup2`` where the kernel allows;
    return its pid (0 in the intermediate) and the files it writes ``0``
    to. If clone3 is refused (an old kernel, a seccomp filter above runlog)
    or the directory cannot be opened, it is forked as usual and joins
    through ``cgroup.procs``, whose write then says what is wrong, if
    anything."""
    joins = list(cgroup_tasks)
    if cgroup2 is not None:
        try:
            fd = clone.open_cgroup(cgroup2)
        except OSError:
            pass
        else:
            try:
                pid = clone.fork_into_cgroup(fd)
            finally:
                os.close(fd)
            if pid is not None:
                return pid, joins
        joins.append(os.path.join(cgroup2, "cgroup.procs"))
    return os.fork(), joins


def _import_console() -> None:
    """The init's terminal set-up, imported now: after its pivot_root, the
    init cannot import it (and a container without a terminal never does)."""
    from engine.runtime.init import console  # noqa: F401


def _build_filter(config: Config) -> Filter | None:
    """The container's seccomp filter, built here in the monitor; ``None``
    without one. The module (and libseccomp) load only for such a config."""
    if config.linux.seccomp is None:
        return None
    from engine.linux import seccomp

    try:
        plan = seccomp.plan(config.linux.seccomp)  # checked at load: cannot fail here
        if plan is None:
            return None
        from engine.linux.libseccomp import Filter

        return Filter(plan)
    except seccomp.SeccompError as err:
        raise ActionError(str(err)) from err


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    _reap(pid)
