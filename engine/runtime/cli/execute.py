"""``runlog exec``'s process: made by the caller, in the container.

The process is the caller's child (it inherits the caller's stdio, and
conmon, which runs ``exec --detach``, reaps it), not the monitor's. As
runc's exec, in three processes:

- **P**, the caller (``runlog exec``), a child subreaper, builds the seccomp
  filter, forks C into the container's cgroup2 directory (clone3) and
  waits on a sync socket;
- **C**, the intermediate process (as the init has one,
  :mod:`engine.runtime.init.stages`), joins the container's v1 cgroups,
  takes the process's rlimits (still in the host's user namespace, where
  a hard limit may be raised),
  opens every namespace file of the container's init at once, then joins
  them in runc's order - user first (then root in it), ipc, uts, network,
  pid, mount, cgroup, time - forks G and exits: joining a pid namespace
  takes effect for children only;
- **G**, the process itself, in every namespace, re-parented to P (the
  subreaper) when C exits, takes what the init took before its exec, with the init's own code
  (:mod:`engine.runtime.init.stages`, :func:`engine.linux.finalize.prepare_exec`):
  a pty from the container's devpts sent to the console socket for a
  terminal, cwd, ``args[0]`` on the container's PATH, OOM score,
  capabilities, user, umask, no_new_privs, the seccomp filter; and execs,
  or says why it could not (the socket is close-on-exec: P reads EOF).

Namespaces the config does not list are the host's, shared with the
container, and not joined; nor is one that is already the caller's.
Nothing is imported in G: after joining the mount namespace it sees the
container's root, which has no Python.
"""

from __future__ import annotations

import _socket
import fcntl
import os

from engine.errors import ActionError
from engine.frozen import replace
from engine.linux import clone, rlimits, syscalls
from engine.linux.finalize import default_signals, prepare_exec
from engine.runtime.init import stages
from engine.runtime.monitor import spawn as monitor_spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.linux.libseccomp import Filter
    from engine.oci.model import Config, Process

__all__ = ["Spawned", "cgroup_entry", "spawn"]

#: /proc/PID/ns/ names of the config's namespace types, in the order joined.
_PROC_NS = {
    "user": "user",
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "mount": "mnt",
    "cgroup": "cgroup",
    "time": "time",
}


class Spawned:
    """The process P made: its pid (P's child once C has exited), or why
    it could not exec."""

    def __init__(self, pid: int, error: str | None) -> None:
        self.pid = pid
        self.error = error


def cgroup_entry(
    paths: dict[str, str], sub: dict[str, str] | None = None
) -> tuple[list[str], str | None]:
    """The v1 ``tasks`` files and the cgroup2 directory of a container's
    cgroups (``cgroup_paths`` of runtime.json); ``sub`` (``--cgroup``):
    sub-cgroups by controller, ``""`` for all of them (runc's format)."""
    tasks: list[str] = []
    unified: str | None = None
    seen: set[str] = set()
    sub = sub or {}
    for controller, directory in paths.items():
        extra = sub.get(controller, sub.get("", ""))
        if controller == "unified":
            extra = sub.get("unified", sub.get("", ""))
        path = os.path.join(directory, extra.lstrip("/")) if extra else directory
        if extra and not os.path.isdir(path):
            raise ActionError(f"--cgroup: no sub-cgroup {path}")
        if controller == "unified":
            unified = path
        elif path not in seen:
            seen.add(path)
            tasks.append(os.path.join(path, "tasks"))
    return tasks, unified


def _above(fd: int, low: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return moved


def spawn(
    config: Config,
    process: Process,
    init_pid: int,
    cgroups: tuple[list[str], str | None],
    *,
    console: int | None = None,
    preserve_fds: int = 0,
) -> Spawned:
    """Make the process (P's side); return once it has exec'd, or failed to.

    ``config``: the container's (its namespaces and seccomp filter);
    ``process``: what to run; ``console``: a socket for the pty master,
    for ``process.terminal``. The caller becomes a child subreaper here.
    """
    seccomp = monitor_spawn._build_filter(replace(config, process=process))
    if process.terminal:
        monitor_spawn._import_console()
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    # Above the descriptors the process keeps (stdio and --preserve-fds).
    low = 3 + preserve_fds
    sync = _above(child.detach(), low)
    if console is not None:
        console = _above(console, low)
    tasks, unified = cgroups
    joins = list(tasks)
    pid = None
    if unified is not None:
        try:
            fd = clone.open_cgroup(unified)
        except OSError:
            fd = None
        if fd is not None:
            try:
                pid = clone.fork_into_cgroup(fd)
            finally:
                os.close(fd)
        if pid is None:
            joins.append(os.path.join(unified, "cgroup.procs"))
    if pid is None:
        pid = os.fork()
    if pid == 0:
        parent.close()
        try:
            _intermediate(config, process, init_pid, joins, sync, console, preserve_fds, seccomp)
        except BaseException as err:
            try:
                stages.send_line(sync, f"error {str(err) or type(err).__name__}")
            finally:
                os._exit(1)
        os._exit(0)
    os.close(sync)
    if console is not None:
        os.close(console)
    if seccomp is not None:
        seccomp.release()
    try:
        return _await(parent.fileno(), pid)
    finally:
        parent.close()


def _await(fd: int, pid_c: int) -> Spawned:
    """C says G's pid; G execs (the socket, close-on-exec, reaches EOF
    once C has exited too) or says why it could not."""
    buffer = bytearray()
    grandchild = 0
    error: str | None = None
    while True:
        line = stages.recv_line(fd, buffer)
        if line is None:
            break
        word, _, rest = line.partition(" ")
        if word == "pid":
            grandchild = int(rest)
        elif word == "error":
            error = rest
            break
    try:
        os.waitpid(pid_c, 0)
    except ChildProcessError:
        pass
    if error is None and not grandchild:
        error = "the process ended before it could exec"
    if error is not None and grandchild:
        _reap(grandchild)
    return Spawned(grandchild, error)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _intermediate(
    config: Config,
    process: Process,
    init_pid: int,
    joins: list[str],
    sync: int,
    console: int | None,
    preserve: int,
    seccomp: Filter | None,
) -> None:
    for name in joins:
        cgroup_fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(cgroup_fd, b"0")
        except OSError as err:
            raise ActionError(f"join cgroup {os.path.dirname(name)}: {err.strerror}") from err
        finally:
            os.close(cgroup_fd)
    rlimits.apply(process.rlimits)
    namespaces: list[tuple[str, int]] = []
    try:
        for ns_type, proc_name in _PROC_NS.items():
            if config.linux.namespace(ns_type) is None:
                continue
            path = f"/proc/{init_pid}/ns/{proc_name}"
            try:
                if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{proc_name}").st_ino:
                    continue  # already there (a namespace shared with the host)
                namespaces.append((ns_type, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                # The init has ended; the monitor has not recorded it yet.
                raise ActionError("cannot exec in a stopped container") from None
            except OSError as err:
                raise ActionError(f"{ns_type} namespace of pid {init_pid}: {err.strerror}") from err
        for ns_type, nsfd in namespaces:
            try:
                syscalls.setns(nsfd, syscalls.CLONE_FLAGS[ns_type])
            except OSError as err:
                raise ActionError(f"join {ns_type} namespace: {err.strerror}") from err
            if ns_type == "user":
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
    finally:
        for _, nsfd in namespaces:
            os.close(nsfd)
    pid = os.fork()
    if pid == 0:
        _process(config, process, sync, console, preserve, seccomp)
    stages.send_line(sync, f"pid {pid}")


def _process(
    config: Config,
    process: Process,
    sync: int,
    console: int | None,
    preserve: int,
    seccomp: Filter | None,
) -> None:
    """In the container: what the init does before its exec. Never returns."""
    try:
        stages._close_fds_except({sync, console} if console is not None else {sync}, preserve)
        if console is not None:
            from engine.runtime.init.console import setup_console

            setup_console(console, replace(config, process=process), False)
        try:
            os.chdir(process.cwd)
        except OSError as err:
            raise ActionError(f"chdir to cwd ({process.cwd!r}): {err.strerror}") from err
        path = stages.find_executable(process.args[0], process.env_path())
        env = {k: v for k, _, v in (item.partition("=") for item in process.environ())}
        nnp = process.no_new_privileges
        prepare_exec(
            process,
            set_rlimits=False,
            load_filter=seccomp.load if seccomp is not None and not nnp else None,
        )
        default_signals()
        if seccomp is not None and nnp:
            seccomp.load()
        try:
            os.execve(path, list(process.args), env)
        except OSError as err:
            raise ActionError(f"exec {path}: {(err.strerror or str(err)).lower()}") from None
    except BaseException as err:
        try:
            stages.send_line(sync, f"error {str(err) or type(err).__name__}")
        except OSError:
            pass
    os._exit(1)
