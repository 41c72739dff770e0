"""Forking the container's init, and what the init does before it execs.

The monitor forks stage A; A joins the container's cgroup, joins or creates
its namespaces (a new user namespace first, mapped by the monitor), and
forks B. In a new pid namespace B is pid 1. A reports B's pid and exits; the
monitor is a child subreaper (PR_SET_CHILD_SUBREAPER), so B becomes the
monitor's child and the monitor reaps it. B builds the root filesystem,
checks cwd and finds ``args[0]`` on the container's PATH, applies rlimits
(in a new user namespace the monitor sets them, on "ready"), user and
capabilities, tells the monitor it is ready, and blocks until the
monitor releases it (runtime-spec "start"): then it execs the user's
process. Until the exec, B writes any error back on the sync socket, which
is close-on-exec: EOF after "release" means the exec happened.

Nothing in B may import a module after pivot_root (the new root has no
Python): everything it runs is imported here, before the fork. That is also
why the PATH lookup is done by hand (``os.execvpe`` imports lazily).

A ``linux.seccomp`` filter is built by the monitor before the fork
(:mod:`engine.linux.seccomp`, imported then and only for a config that has
one), so B only loads it: as runc's standard_init_linux.go does, before the
capabilities are dropped when ``noNewPrivileges`` is false (loading needs
``CAP_SYS_ADMIN`` then), else as the last step before execve, so that as
few of the init's own syscalls as possible run under the container's filter.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import struct
import termios

from engine.errors import ActionError
from engine.linux import clone, rlimits, syscalls
from engine.linux.finalize import default_signals, prepare_exec
from engine.oci.model import Config
from engine.runtime import rootfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.linux.libseccomp import Filter

__all__ = ["InitHandle", "find_executable", "spawn"]

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


def _send(fd: int, line: str) -> None:
    data = (line.replace("\n", " ") + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _recv(fd: int, buffer: bytearray) -> str | None:
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
    monitor's (its database, its sockets, create's result pipe)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 + preserve and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own fd, already closed


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


def _stage_a(
    config: Config,
    fd: int,
    cgroup_files: list[str],
    console: int | None,
    preserve: int,
    stdio: tuple[int, int, int] | None = None,
    seccomp: Filter | None = None,
) -> None:
    """Join the cgroup and the namespaces, fork B, report its pid."""
    if stdio is not None:
        _install_stdio(stdio)
    _close_fds_except({fd, console} if console is not None else {fd}, preserve)
    buffer = bytearray()
    for name in cgroup_files:
        with open(name, "w") as fh:
            fh.write("0")
    # Read before a new cgroup namespace would make every path "/": what
    # the container's cgroup mount shows (rootfs.CgroupView).
    cgroups = rootfs.CgroupView(rootfs.own_cgroups(), config.linux.namespace("cgroup") is not None)
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
            # The monitor writes uid_map/gid_map from outside (user_namespaces(7)).
            syscalls.unshare(syscalls.CLONE_FLAGS["user"])
            _send(fd, "userns")
            if _recv(fd, buffer) != "mapped":
                raise ActionError("the monitor did not map the user namespace")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        else:
            new_flags |= syscalls.CLONE_FLAGS[ns_type]
    for ns_type, path in joins:
        _join(ns_type, path)
    if new_flags:
        syscalls.unshare(new_flags)
    pid = os.fork()
    if pid == 0:
        _stage_b(config, fd, buffer, console, cgroups, seccomp)
    _send(fd, f"pid {pid}")


def _setup_console(console: int, config: Config, mount_console: bool) -> None:
    """runc's setupConsole: a pty from the container's own devpts (so its
    slave is the container's /dev/pts/N), sized as ``consoleSize`` says,
    bound onto /dev/console; the master goes to ``--console-socket`` (the
    connected socket ``console``) with SCM_RIGHTS, the slave becomes the
    init's controlling terminal and stdio."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        size = config.process.console_size
        if size is not None and size.height and size.width:
            winsize = struct.pack("HHHH", size.height, size.width, 0, 0)
            fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
        if mount_console:
            rootfs.mount_console(name)
        with socket.socket(fileno=console) as sock:
            socket.send_fds(sock, [name.encode()], [master])
    finally:
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


# Signals whose default action ends a process, less the synchronous ones
# (ILL, TRAP, BUS, FPE, SEGV) and those Python ignores (PIPE, XFSZ).
_FATAL = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGABRT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGTERM,
    signal.SIGXCPU,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGSYS,
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
)


def _die_of_signals() -> None:
    """Die of any signal whose default would end the process.

    As pid 1 of a new pid namespace the init is sent only the signals it
    handles (pid_namespaces(7)), so ``kill`` of a created container would
    otherwise do nothing; runc's init, a Go program, handles them and dies.
    """

    def die(signo: int, _frame: object) -> None:
        os._exit(128 + signo)

    for signo in _FATAL:
        try:
            signal.signal(signo, die)
        except (OSError, ValueError):
            pass  # glibc's reserved real-time signals


def _stage_b(
    config: Config,
    fd: int,
    buffer: bytearray,
    console: int | None,
    cgroups: rootfs.CgroupView,
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
            # After the pivot, before the root may turn read-only (runc's order).
            _setup_console(console, config, new_mount_ns)
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
        _send(fd, f"ready {os.getpid()}")
        if _recv(fd, buffer) != "release":
            os._exit(1)  # the monitor went away before start: never run
        env = {k: v for k, _, v in (item.partition("=") for item in environ)}
        argv = list(process.args)
        default_signals()
        if seccomp is not None and nnp:
            seccomp.load()
        os.execve(path, argv, env)
    except BaseException as err:  # report anything; B cannot print a traceback here
        message = str(err) or type(err).__name__
        try:
            _send(fd, f"error {message}")
        except OSError:
            pass
    os._exit(code)


class InitHandle:
    """The monitor's side of one init: its pid and the sync socket."""

    def __init__(
        self, pid: int, sock: socket.socket, seccomp_skipped: tuple[str, ...] = ()
    ) -> None:
        self.pid = pid
        self._sock = sock
        self._buffer = bytearray()
        # Syscalls of linux.seccomp this libseccomp does not know, left out
        # of the filter as runc leaves them out: for the caller to record.
        self.seccomp_skipped = seccomp_skipped

    def release(self) -> None:
        """Let the init exec; raise ActionError if the exec failed."""
        fd = self._sock.fileno()
        try:
            _send(fd, "release")
            line = _recv(fd, self._buffer)
        finally:
            self._sock.close()
        if line is not None:
            raise ActionError(line.removeprefix("error "))

    def close(self) -> None:
        self._sock.close()


def _map_user_namespace(pid: int, config: Config) -> None:
    linux = config.linux

    def write(name: str, text: str) -> None:
        with open(f"/proc/{pid}/{name}", "w") as fh:
            fh.write(text)

    def table(mappings: tuple[object, ...]) -> str:
        rows = [f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings]  # type: ignore[attr-defined]
        return "".join(rows)

    if linux.uid_mappings:
        write("uid_map", table(linux.uid_mappings))
    if linux.gid_mappings:
        write("gid_map", table(linux.gid_mappings))


def spawn(
    config: Config,
    cgroup_tasks: list[str],
    cgroup2: str | None,
    *,
    no_pivot: bool = False,
    console: int | None = None,
    preserve_fds: int = 0,
    stdio: tuple[int, int, int] | None = None,
) -> InitHandle:
    """Fork the init and wait until it is ready to exec, or failed.

    The init enters its cgroup as :mod:`engine.linux.clone` says, without
    waiting on the kernel's threadgroup lock: stage A is forked into the
    cgroup2 directory ``cgroup2`` and writes ``0`` to the v1 ``tasks``
    files ``cgroup_tasks``; where clone3 is refused, it is forked as usual
    and writes the cgroup2 directory's ``cgroup.procs`` as well.
    ``console``: a socket connected to ``--console-socket``, for
    ``terminal: true``; the init sends the pty master on it. The caller must
    be a child subreaper and single-threaded. ``stdio``: descriptors for
    the init's stdin, stdout and stderr (else it keeps the caller's).
    """
    seccomp = _build_filter(config)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if no_pivot:
        os.environ["_RUNLOG_NO_PIVOT"] = "1"
    pid_a, joins = _fork_a(cgroup_tasks, cgroup2)
    if pid_a == 0:
        parent.close()
        try:
            _stage_a(config, child.fileno(), joins, console, preserve_fds, stdio, seccomp)
            os._exit(0)
        except BaseException as err:
            try:
                _send(child.fileno(), f"error {err}")
            finally:
                os._exit(1)
    os.environ.pop("_RUNLOG_NO_PIVOT", None)
    if seccomp is not None:
        seccomp.release()  # the children hold their own copies
    child.close()
    fd = parent.fileno()
    buffer = bytearray()
    pid_b: int | None = None
    ready = False
    try:
        # A's "pid" and B's "ready" share the socket: either may come first.
        while not ready or pid_b is None:
            line = _recv(fd, buffer)
            if line is None:
                raise ActionError("the container's init exited during set-up")
            word, _, rest = line.partition(" ")
            if word == "userns":
                _map_user_namespace(pid_a, config)
                _send(fd, "mapped")
            elif word == "pid":
                pid_b = int(rest)
            elif word == "ready":
                ready = True
            elif word == "error":
                raise ActionError(rest)
        if config.linux.namespace("user") is not None:
            # runc sets them from the parent on procReady: raising a hard
            # limit needs CAP_SYS_RESOURCE in the initial user namespace,
            # which the init in a new one never has.
            rlimits.apply(config.process.rlimits, pid_b)
    except BaseException:
        parent.close()
        _reap(pid_a)
        if pid_b is not None:
            _kill(pid_b)
        raise
    _reap(pid_a)
    return InitHandle(pid_b, parent, () if seccomp is None else seccomp.skipped)


def _fork_a(cgroup_tasks: list[str], cgroup2: str | None) -> tuple[int, list[str]]:
    """Fork stage A, into ``cgroup2`` where the kernel allows; return its pid
    (0 in A) and the files A writes ``0`` to. If clone3 is refused (an old
    kernel, a seccomp filter above runlog) or the directory cannot be
    opened, A is forked as usual and joins through ``cgroup.procs``, whose
    write then says what is wrong, if anything."""
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
