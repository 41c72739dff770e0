"""The container's init before it execs: what runs in the forked children.

:mod:`engine.runtime.monitor.spawn` (the monitor's side) clones the init
straight into its new namespaces where it can (:func:`direct_flags`,
:func:`init_direct`: the init joins its v1 cgroups and makes its cgroup
namespace, then goes on), else forks the intermediate process
(:func:`intermediate`), which joins the container's cgroup, joins or
creates its namespaces (a new user namespace first, mapped by the
monitor), and forks the init, pid 1 in a new pid namespace. The init
(:func:`_init`) builds the root filesystem, checks cwd, finds ``args[0]``
on the container's PATH, applies rlimits, user, capabilities and the
seccomp filter, says "ready" and blocks until the monitor says "release":
then it says "exec" and execs (or says why the exec failed). Both report
on the sync socket, one line each (:func:`send_line`, :func:`recv_line`).
The processes are named by their role (main, intermediate, init); the
monitor is the main process.

Nothing in the init may import a module after pivot_root (the new root has no
Python): everything it runs is imported here, before the fork. That is also
why the PATH lookup is done by hand (``os.execvpe`` imports lazily).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import errno
import fcntl
import os
import stat

from engine.errors import ActionError
from engine.linux import syscalls
from engine.linux.finalize import default_signals, prepare_exec
from engine.oci.model import Config
from engine.runtime.init import rootfs
from engine.runtime.init.cgroupfs import CgroupView, own_cgroups

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.linux.libseccomp import Filter

__all__ = [
    "direct_flags",
    "find_executable",
    "init_direct",
    "intermediate",
    "recv_line",
    "send_line",
]

_NS_ORDER = ("user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time")


def find_executable(args0: str, path_value: str | None) -> str:
    """``args[0]`` resolved as runc does, in the current (container) root."""
    if "/" in args0:
        candidates = [args0]
    else:
        dirs = (path_value or "").split(":")
        candidates = [os.path.join(d or ".", args0) for d in dirs]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    if "/" in args0:
        raise ActionError(f'exec: "{args0}": stat {args0}: no such file or directory')
    raise ActionError(f'exec: "{args0}": executable file not found in $PATH')


def send_line(fd: int, line: str) -> None:
    data = (line.replace("\n", " ") + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def recv_line(fd: int, buffer: bytearray) -> str | None:
    """One line from ``fd``; None at EOF."""
    while b"\n" not in buffer:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode(errors="replace")


def _close_fds_except(keep: set[int], preserve: int) -> None:
    """The container gets stdio, ``--preserve-fds`` more, and nothing of the
    monitor's (its database, its sockets, create's result pipe). By ranges
    around ``keep`` (close_range(2) where the kernel has it), rather than
    one close per entry of /proc/self/fd: 0.2 ms less in the init."""
    low = 3 + preserve
    for fd in sorted(k for k in keep if k >= low):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _FD_LIMIT)


# Above any descriptor: RLIMIT_NOFILE cannot exceed fs.nr_open (2^20 at most).
_FD_LIMIT = 2**31 - 1


# ioctl_ns(2): the CLONE_NEW* type of a namespace file (Linux 4.11).
_NS_GET_NSTYPE = 0xB703


def _join(ns_type: str, path: str) -> None:
    """setns into the ``ns_type`` namespace at ``path`` (config-linux.md
    "Namespaces": a path is joined, not created), saying which file is wrong."""
    try:
        nsfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise ActionError(f"{ns_type} namespace path {path}: {err.strerror}") from err
    try:
        try:
            found = fcntl.ioctl(nsfd, _NS_GET_NSTYPE)
        except OSError:
            found = None  # not a namespace file, or a kernel without the ioctl
        if found is not None and found != syscalls.CLONE_FLAGS[ns_type]:
            kinds = {flag: name for name, flag in syscalls.CLONE_FLAGS.items()}
            kind = kinds.get(found, f"{found:#x}")
            raise ActionError(
                f"{ns_type} namespace path {path} is a {kind} namespace, not a {ns_type} one"
            )
        try:
            syscalls.setns(nsfd, syscalls.CLONE_FLAGS[ns_type])
        except OSError as err:
            raise ActionError(
                f"join {ns_type} namespace {path}: {err.strerror} "
                f"(is it a {ns_type} namespace file?)"
            ) from err
    finally:
        os.close(nsfd)


def _install_stdio(fds: tuple[int, int, int]) -> None:
    """Make ``fds`` (the monitor's pipes, ``create --log-path``) stdin,
    stdout and stderr. Each is first moved above 2, so that one dup2 cannot
    overwrite another still to be installed."""
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
    for fd in fds:
        if fd > 2:
            os.close(fd)
    for target, fd in enumerate(moved):
        os.dup2(fd, target)  # inheritable: the user's process gets it
        os.close(fd)


def direct_flags(config: Config) -> int | None:
    """The clone flags of an init cloned straight into its namespaces, or
    ``None`` where it needs the intermediate process: a namespace joined by
    path (setns of a pid namespace takes effect for children only), a new
    time namespace. A new user namespace is among the flags: the others,
    made by the same clone, belong to it, as the intermediate's
    ``unshare`` after it makes them; the init has the monitor write its
    maps before it goes on (:func:`init_direct`). A new cgroup namespace
    is not among the flags: the init makes it itself once in its v1
    cgroups."""
    flags = 0
    for ns_type in _NS_ORDER:
        entry = config.linux.namespace(ns_type)
        if entry is None:
            continue
        if entry.path or ns_type == "time":
            return None
        if ns_type != "cgroup":
            flags |= syscalls.CLONE_FLAGS[ns_type]
    return flags


def _enter(
    config: Config,
    fd: int,
    cgroup_files: list[str],
    console: int | None,
    preserve: int,
    stdio: tuple[int, int, int] | None,
) -> CgroupView:
    """Take stdio, close the monitor's descriptors, join the v1 cgroups;
    return what the container's cgroup mount shows."""
    if stdio is not None:
        _install_stdio(stdio)
    _close_fds_except({fd, console} if console is not None else {fd}, preserve)
    for name in cgroup_files:
        # os-level: a Python file object costs a freshly forked process
        # ten times as much (every object it touches copies a page).
        try:
            cgroup_fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(cgroup_fd, b"0")
            finally:
                os.close(cgroup_fd)
        except OSError as err:
            raise ActionError(_join_refused(name, err)) from None
    # Read before a new cgroup namespace would make every path "/": what
    # the container's cgroup mount shows (CgroupView).
    return CgroupView(own_cgroups(), config.linux.namespace("cgroup") is not None)


def _join_refused(name: str, err: OSError) -> str:
    """Why the init could not join the cgroup whose ``tasks`` or
    ``cgroup.procs`` file is ``name``, in one line naming the cgroup."""
    message = f"cannot join cgroup {os.path.dirname(name)}: {err.strerror}"
    if err.errno == errno.EACCES and name.endswith("cgroup.procs"):
        # cgroup2 moves a process only for one that may write the
        # cgroup.procs of the common ancestor of where it is and where it goes.
        message += " (a cgroup2 cgroup is joined from inside the subtree delegated to the caller)"
    return message


def init_direct(
    config: Config,
    fd: int,
    cgroup_files: list[str],
    console: int | None,
    preserve: int,
    stdio: tuple[int, int, int] | None = None,
    seccomp: Filter | None = None,
) -> None:
    """The init cloned into its new namespaces (:func:`direct_flags`):
    join the v1 cgroups, in a new user namespace have it mapped, make the
    cgroup namespace, then go on as the init (:func:`_init`), which never
    returns. What fails before that is raised, as from :func:`intermediate`.
    Rootless, this saves the intermediate process: a fork and its work."""
    cgroups = _enter(config, fd, cgroup_files, console, preserve, stdio)
    buffer = bytearray()
    if config.linux.namespace("user") is not None:
        _mapped(fd, buffer)
    if config.linux.namespace("cgroup") is not None:
        syscalls.unshare(syscalls.CLONE_FLAGS["cgroup"])
    _init(config, fd, buffer, console, cgroups, seccomp)


def _mapped(fd: int, buffer: bytearray) -> None:
    """In a new user namespace: have the monitor write its uid_map and
    gid_map from outside (user_namespaces(7)), then be its root."""
    send_line(fd, "userns")
    if recv_line(fd, buffer) != "mapped":
        raise ActionError("the monitor did not map the user namespace")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def intermediate(
    config: Config,
    fd: int,
    cgroup_files: list[str],
    console: int | None,
    preserve: int,
    stdio: tuple[int, int, int] | None = None,
    seccomp: Filter | None = None,
) -> None:
    """Join the cgroup and the namespaces, fork the init, report its pid."""
    cgroups = _enter(config, fd, cgroup_files, console, preserve, stdio)
    buffer = bytearray()
    linux = config.linux
    new_flags = 0
    joins: list[tuple[str, str]] = []
    for ns_type in _NS_ORDER:
        entry = linux.namespace(ns_type)
        if entry is None:
            continue
        if entry.path:
            joins.append((ns_type, entry.path))
        elif ns_type == "user":
            syscalls.unshare(syscalls.CLONE_FLAGS["user"])
            _mapped(fd, buffer)
        else:
            new_flags |= syscalls.CLONE_FLAGS[ns_type]
    for ns_type, path in joins:
        _join(ns_type, path)
    if new_flags:
        syscalls.unshare(new_flags)
    pid = os.fork()
    if pid == 0:
        _init(config, fd, buffer, console, cgroups, seccomp)
    send_line(fd, f"pid {pid}")


# Signals whose default action ends a process, less the synchronous ones
# (ILL, TRAP, BUS, FPE, SEGV) and those Python ignores (PIPE, XFSZ); as
# ints, for _signal.
_FATAL = tuple(
    int(s)
    for s in (
        _signal.SIGHUP,
        _signal.SIGINT,
        _signal.SIGQUIT,
        _signal.SIGABRT,
        _signal.SIGUSR1,
        _signal.SIGUSR2,
        _signal.SIGALRM,
        _signal.SIGTERM,
        _signal.SIGXCPU,
        _signal.SIGVTALRM,
        _signal.SIGPROF,
        _signal.SIGIO,
        _signal.SIGPWR,
        _signal.SIGSYS,
        *range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1),
    )
)


def _die_of_signals() -> None:
    """Die of any signal whose default would end the process.

    As pid 1 of a new pid namespace the init is sent only the signals it
    handles (pid_namespaces(7)), so ``kill`` of a created container would
    otherwise do nothing; runc's init, a Go program, handles them and dies.
    Through ``_signal``, as :func:`engine.linux.finalize.default_signals`
    (which says why): 0.05 ms rather than 0.4.
    """

    def die(signo: int, _frame: object) -> None:
        os._exit(128 + signo)

    for signo in _FATAL:
        try:
            _signal.signal(signo, die)
        except (OSError, ValueError):
            pass  # glibc's reserved real-time signals


def _init(
    config: Config,
    fd: int,
    buffer: bytearray,
    console: int | None,
    cgroups: CgroupView,
    seccomp: Filter | None = None,
) -> None:
    """Build the root, prepare the process, wait for release, exec. Never returns."""
    code = 1
    try:
        _die_of_signals()
        process = config.process
        linux = config.linux
        if linux.namespace("uts") is not None:
            if config.hostname:
                syscalls.sethostname(config.hostname)
            if config.domainname:
                syscalls.setdomainname(config.domainname)
        new_mount_ns = linux.namespace("mount") is not None
        no_pivot = os.environ.get("_RUNLOG_NO_PIVOT") == "1"
        rootfs.prepare(config, new_mount_ns=new_mount_ns, no_pivot=no_pivot, cgroups=cgroups)
        if console is not None:
            # After the pivot, before the root may turn read-only (runc's
            # order); the monitor imported the module before the fork.
            from engine.runtime.init.console import setup_console

            setup_console(console, config, new_mount_ns)
        else:
            # A session of its own, as runc's init (the console's set-up
            # makes one too): CRIU dumps only a session led inside.
            os.setsid()
        rootfs.finalize(config, new_mount_ns=new_mount_ns)
        try:
            os.chdir(process.cwd)
        except OSError as err:
            raise ActionError(
                f'chdir to cwd ("{process.cwd}") set in config.json failed: {err.strerror}'
            ) from err
        path = find_executable(process.args[0], process.env_path())
        environ = list(process.environ())
        # When the seccomp filter loads: see the module's docstring.
        nnp = process.no_new_privileges
        # In a new user namespace no hard limit can be raised from inside:
        # the monitor sets the rlimits (see ``spawn``).
        prepare_exec(
            process,
            set_rlimits=linux.namespace("user") is None,
            load_filter=seccomp.load if seccomp is not None and not nnp else None,
        )
        send_line(fd, f"ready {os.getpid()}")
        if recv_line(fd, buffer) != "release":
            os._exit(1)  # the monitor went away before start: never run
        env = {k: v for k, _, v in (item.partition("=") for item in environ)}
        argv = list(process.args)
        default_signals()
        if seccomp is not None and nnp:
            seccomp.load()
        # The monitor's start returns on this; an execve that fails says why
        # below, for the monitor to record when the init has ended.
        send_line(fd, "exec")
        try:
            os.execve(path, argv, env)
        except OSError as err:  # runc's words: "exec /path: exec format error"
            raise ActionError(f"exec {path}: {(err.strerror or str(err)).lower()}") from None
    except BaseException as err:  # report anything; the init cannot print a traceback here
        message = str(err) or type(err).__name__
        try:
            send_line(fd, f"error {message}")
        except OSError:
            pass
    os._exit(code)
