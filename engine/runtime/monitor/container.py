"""One real container as its monitor holds it, and the drivers its actions use.

The drivers are the real side of the boundaries in
:mod:`engine.actions.base`: the init through :mod:`engine.runtime.monitor.spawn`, the
cgroup through :mod:`engine.cgroups`, hooks through
:mod:`engine.runtime.monitor.hooks`, files through :mod:`engine.runtime.shared.statedir`.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import _socket
import fcntl
import os
import select
import time

from engine import jsonfast
from engine.actions.base import Drivers
from engine.cgroups import CgroupManager, manager_for
from engine.cgroups.resources import Resources
from engine.errors import ActionError
from engine.frozen import replace
from engine.linux import caps, lsm
from engine.oci import gojson
from engine.oci.model import Config
from engine.oci.state import hook_state, oci_state
from engine.runtime.monitor import spawn
from engine.runtime.monitor.hooks import HookRunner
from engine.runtime.shared.statedir import (
    RELEASED,
    RUNTIME,
    STATE,
    SocketAddress,
    StateDir,
    process_start_time,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from engine.eventlog.record import Event

__all__ = ["Container"]


# runc's AllowedDevices (libcontainer/specconv): what every container may
# use whatever its config's device rules say - mknod of anything, and the
# standard nodes and ptys.
_ALLOWED = (
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # null
    ("c", 1, 8, "rwm"),  # random
    ("c", 1, 7, "rwm"),  # full
    ("c", 5, 0, "rwm"),  # tty
    ("c", 1, 5, "rwm"),  # zero
    ("c", 1, 9, "rwm"),  # urandom
    ("c", 5, 1, "rwm"),  # console
    ("c", 136, None, "rwm"),  # pts
    ("c", 5, 2, "rwm"),  # ptmx
    ("c", 10, 200, "rwm"),  # tun
)


def _with_default_devices(resources: Resources, config: Config) -> Resources:
    from engine.cgroups.resources import DeviceRule

    if not resources.devices:
        return resources
    extra = [DeviceRule(True, t, major, minor, access) for t, major, minor, access in _ALLOWED]
    extra += [
        DeviceRule(True, d.type if d.type != "u" else "c", d.major, d.minor, "rwm")
        for d in config.linux.devices
        if d.type != "p"  # a FIFO is no device: the cgroup has no rule for it
    ]
    return replace(resources, devices=(*resources.devices, *extra))


class Container:
    """Config, state directory, cgroup and init of one container."""

    def __init__(
        self,
        statedir: StateDir,
        config: Config,
        *,
        systemd_cgroup: bool = False,
        rootless: bool = False,
        no_cgroup: bool = False,
        no_pivot: bool = False,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        owner: int = 0,
        capture: bool = False,
        caller_reaps: bool = False,
        console_fd: int | None = None,
    ) -> None:
        self.statedir = statedir
        self.id = statedir.id
        self.config = config
        self.no_pivot = no_pivot
        self.console_socket = console_socket
        # ... or a foreground run's socket for it, received with create's
        # request (engine.runtime.cli.terminal).
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.owner = owner
        # create --log-path: the init's stdio are pipes to the monitor, whose
        # ends (stdout, stderr, stdin) are kept here once it is forked.
        self.capture = capture
        # The init's parent is create's caller (see engine.runtime.cli.launch),
        # which reaps it: the monitor sees its end through a pidfd, not its
        # status.
        self.caller_reaps = caller_reaps
        self._pidfd: int | None = None
        self.stdio: tuple[int, int, int] | None = None
        # ... or, for terminal: true without --console-socket, the pty master.
        self.pty: int | None = None
        self.created_ns = time.time_ns()
        self.manager: CgroupManager = manager_for(
            self.id,
            config.linux.cgroups_path,
            systemd=systemd_cgroup,
            rootless=rootless,
            disabled=no_cgroup,
        )
        self.resources = _with_default_devices(
            Resources.from_oci(dict(config.linux.resources or {})), config
        )
        self.handle: spawn.InitHandle | None = None
        self.released: spawn.InitHandle | None = None
        # The monitor's work while the init sets itself up (spawn.spawn),
        # given the init's pid where it is known by then.
        self.meanwhile: Callable[[int | None], None] | None = None
        # The init runtime.json names (write_runtime).
        self.runtime_init: int | None = None
        # runlog restore: its request (image path, CRIU's flags), for the
        # monitor to run the machine's ``restore`` rather than ``create``.
        self.restore: dict[str, Any] | None = None
        self.pid: int | None = None
        self.exit: dict[str, Any] | None = None
        self.started_ns: int | None = None
        self.finished_ns: int | None = None
        self.status = "creating"
        # What state.json says: the OCI state as last written, and its text.
        self.state: dict[str, Any] | None = None
        self.state_text: bytes | None = None

    # -- files other processes read --------------------------------------

    def project(self, event: Event) -> None:
        """What others read of the container - its status here and
        ``state.json`` - from the event that just changed its state (the
        service calls this; nothing else writes a status)."""
        assert event.dest is not None
        self.status = event.dest
        self._write_state()

    def _write_state(self) -> None:
        exit_code = None
        if self.exit is not None and "exit_code" in self.exit:
            exit_code = int(self.exit["exit_code"])
        elif self.exit is not None and "signal" in self.exit:
            exit_code = 128 + int(self.exit["signal"])
        state = oci_state(
            container_id=self.id,
            pid=0 if self.status == "stopped" or self.pid is None else self.pid,
            status=self.status if self.status != "creating" else "creating",
            bundle=self.config.bundle,
            rootfs=self.config.root.path,
            created=self.created_ns,
            annotations=self.config.annotations,
            exit_code=exit_code,
            started_at=self.started_ns,
            finished_at=self.finished_ns,
        )
        text = gojson.render(state, "  ").encode()
        self.statedir.write(STATE, text)
        self.state, self.state_text = state, text

    def write_runtime(self, monitor_pid: int, init_pid: int | None = None) -> None:
        """runtime.json: the monitor, and the init (``init_pid``, known
        before the spawn has returned, else :attr:`pid`)."""
        init = self.pid if init_pid is None else init_pid
        info = {
            "monitor_pid": monitor_pid,
            "monitor_start": process_start_time(monitor_pid),
            "init_pid": init,
            "init_start": None if init is None else process_start_time(init),
            "bundle": self.config.bundle,
            "rootfs": self.config.root.path,
            "created_ns": self.created_ns,
            "owner": self.owner,
            "cgroup_paths": self.manager.paths,
            "init_parent": "caller" if self.caller_reaps else "monitor",
            # What the init runs until it execs the user's process (it is
            # the monitor's clone): how a command finds, once the monitor is
            # gone, whether a start had released it (engine.runtime.cli.reconcile).
            "init_exe": _exe_identity(),
        }
        self.statedir.write(RUNTIME, jsonfast.dumps(info).encode())
        self.runtime_init = init

    def runtime_names_init(self, monitor_pid: int) -> None:
        """Once created: runtime.json names the init, unless it does already
        (written while the init set itself up)."""
        if self.runtime_init != self.pid:
            self.write_runtime(monitor_pid)

    # -- the init's end ----------------------------------------------------

    def reap(self, block: bool) -> bool:
        """Collect the init's status if it has ended; True once it has."""
        if self.exit is not None:
            return True
        if self.pid is None:
            return False
        if self.caller_reaps:
            return self._ended(block)
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exit = {"exit_code": 255, "lost": True}
            self._ended_exec()
            return True
        if pid == 0:
            return False
        if os.WIFSIGNALED(status):
            self.exit = {"signal": os.WTERMSIG(status)}
        else:
            self.exit = {"exit_code": os.waitstatus_to_exitcode(status)}
        self._ended_exec()
        return True

    def _ended(self, block: bool) -> bool:
        """The init's end, seen on its pidfd: its status is its parent's."""
        if self._pidfd is not None:
            ready, _, _ = select.select([self._pidfd], [], [], None if block else 0)
            if not ready:
                return False
            os.close(self._pidfd)
            self._pidfd = None
        self.exit = {"reaped_by_caller": True}
        self._ended_exec()
        return True

    def _ended_exec(self) -> None:
        """The init has ended (``exit`` is set): add why its exec failed, if
        it did - after start had returned, as runc's start returns before
        its init's exec."""
        self.finished_ns = time.time_ns()
        if self.released is not None:
            error = self.released.exec_error()
            self.released = None
            if error is not None and self.exit is not None:
                self.exit["exec_error"] = error

    def watch(self) -> None:
        """Hold a pidfd of the init (caller_reaps): it may exit, and its pid
        be reused, before anything else looks."""
        assert self.pid is not None
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._pidfd = None  # gone already: reap() records that

    def drivers(self) -> Drivers:
        return Drivers(
            _Process(self),
            HookRunner(self.config.hooks, lambda: self.pid),
            _Cgroups(self),
            _State(self),
        )


class _Process:
    def __init__(self, container: Container) -> None:
        self.c = container

    def spawn_init(self) -> dict[str, Any]:
        c = self.c
        tasks, unified = c.manager.entry()
        terminal = c.config.process.terminal
        own_pty: _socket.socket | None = None
        if terminal and c.capture and not c.console_socket:
            # The monitor keeps the pty: the init sends its master here, as
            # it would to a --console-socket.
            own_pty, theirs_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            console: int | None = _above_stdio(theirs_end.detach())
        else:
            console = _console(c) if terminal else None
        ours: list[int] = []  # stdout's and stderr's read ends, stdin's write end
        theirs: list[int] = []  # stdin's read end, stdout's and stderr's write ends
        if c.capture and not terminal:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            ours = [_above_stdio(fd) for fd in (out_r, err_r, in_w)]
            theirs = [_above_stdio(fd) for fd in (in_r, out_w, err_w)]
        try:
            c.handle = spawn.spawn(
                c.config,
                tasks,
                unified,
                no_pivot=c.no_pivot,
                console=console,
                preserve_fds=c.preserve_fds,
                stdio=(theirs[0], theirs[1], theirs[2]) if theirs else None,
                meanwhile=c.meanwhile,
                caller_reaps=c.caller_reaps,
            )
        except BaseException:
            for fd in ours:
                os.close(fd)
            if own_pty is not None:
                own_pty.close()
            raise
        finally:
            if console is not None:
                os.close(console)
            for fd in theirs:
                os.close(fd)
        if ours:
            c.stdio = (ours[0], ours[1], ours[2])
        if own_pty is not None:
            c.pty = _receive_master(own_pty)
        c.pid = c.handle.pid
        result: dict[str, Any] = {"pid": c.pid}
        if c.caller_reaps:
            c.watch()
            result["init_parent"] = "caller"
        if c.handle.seccomp_skipped:
            # In the event: the filter lacks these, as runc's would.
            result["seccomp_skipped"] = list(c.handle.seccomp_skipped)
        dropped = caps.ambient_dropped(c.config.process.capabilities)
        if dropped:
            # The init raised the others only, as runc's does (runc spec's
            # bundle asks for ambient capabilities without inheritable ones).
            result["ambient_dropped"] = list(dropped)
            result["warning"] = caps.ambient_warning(dropped)
        ignored = lsm.ignored_labels(c.config)
        if ignored is not None:
            # After any other warning of the spawn, not in its place.
            result["warning"] = "; ".join(filter(None, (result.get("warning"), ignored)))
        return result

    def release(self) -> dict[str, Any]:
        c = self.c
        if c.handle is None:
            raise ActionError("the init is not waiting to be released")
        handle, c.handle = c.handle, None
        handle.release()
        c.released = handle  # whether its exec worked: known when it ends
        c.started_ns = time.time_ns()
        # Before the start's hooks and its event: a monitor killed from here
        # on leaves the sign that the program ran, whatever becomes of the init.
        c.statedir.mark(RELEASED)
        return {"pid": c.pid}

    def signal(self, signo: int, all_processes: bool) -> dict[str, Any]:
        c = self.c
        if c.pid is None or c.reap(block=False):
            raise ActionError("container not running")
        # Rootless without a cgroup to list them: the init alone (the rest
        # of a pid namespace ends with it).
        targets = (c.manager.pids() if all_processes else []) or [c.pid]
        for pid in targets:
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                continue
        if signo == _signal.SIGKILL and c.manager.freezer_state() != "thawed":
            # A frozen v1 task does not die until thawed (runc does the same).
            c.manager.thaw()
        return {"signal": signo, "all": all_processes, "pids": targets}

    def kill_init(self) -> None:
        c = self.c
        if c.handle is not None:
            c.handle.close()
            c.handle = None
        if c.pid is None or c.exit is not None:
            return
        try:
            os.kill(c.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        c.reap(block=True)

    def exit_status(self) -> dict[str, Any] | None:
        return None if self.c.exit is None else dict(self.c.exit)

    def confirm_exec(self) -> dict[str, Any]:
        # The monitor records its own start; it knows whether it released.
        c = self.c
        if c.released is None or c.exit is not None:
            raise ActionError("the init has not exec'd the user process")
        return {"pid": c.pid}

    def checkpoint(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """runc checkpoint (engine.linux.criu); without ``leave_running``
        CRIU ends the tree, and ``exit`` follows."""
        from engine.linux import criu as criu_

        c = self.c
        if c.pid is None or c.reap(block=False):
            raise ActionError("container not running")
        _criu_refusals(c)
        return criu_.dump(
            criu,
            c.pid,
            c.config.root.path,
            str(request["image_path"]),
            work=str(request.get("work_path") or ""),
            leave_running=bool(request.get("leave_running")),
            freezer=c.manager.paths.get("freezer"),
            cgroups=c.manager.paths,
            extra=_criu_flags(request),
        )

    def restore(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """runc restore: CRIU's tree, in this container's cgroup, is its init."""
        from engine.linux import criu as criu_

        c = self.c
        _criu_refusals(c)
        binds = {
            m.destination: m.source
            for m in c.config.mounts
            if m.source and ("bind" in m.options or "rbind" in m.options or m.type == "bind")
        }
        result = criu_.restore(
            criu,
            str(request["image_path"]),
            c.config.root.path,
            work=str(request.get("work_path") or ""),
            cgroups=c.manager.paths,
            binds=binds,
            extra=[f for f in _criu_flags(request) if not f.startswith("--manage-cgroups")],
        )
        c.pid = int(result["pid"])
        c.started_ns = time.time_ns()
        if c.caller_reaps:
            c.watch()
        return result


def _criu_refusals(c: Container) -> None:
    """What runlog does not checkpoint or restore, said before CRIU runs."""
    if c.config.process.terminal:
        raise ActionError("a container with a terminal: runlog does not checkpoint or restore it")
    if c.config.linux.namespace("user") is not None or os.geteuid() != 0:
        raise ActionError(
            "a container with a user namespace (or rootless): runlog does not checkpoint "
            "or restore it"
        )


def _criu_flags(request: Mapping[str, Any]) -> list[str]:
    """runc's flags that are CRIU's own, passed on."""
    flags = ["--" + name.replace("_", "-") for name in _CRIU_BOOLEANS if request.get(name)]
    mode = request.get("manage_cgroups_mode")
    if mode:
        flags.append(f"--manage-cgroups={mode}")
    return flags


_CRIU_BOOLEANS = ("tcp_established", "ext_unix_sk", "shell_job", "file_locks")


def _above_stdio(fd: int) -> int:
    """``fd``, moved above 2 if it is not: the monitor later points its own
    0-2 at /dev/null, which must not close a pipe to the container."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _receive_master(sock: _socket.socket) -> int:
    """The pty master the init sent (before it said "ready"), close-on-exec."""
    from engine.linux import fdpass

    try:
        sock.settimeout(5)
        _name, fds = fdpass.recv_fds(sock, 4096, 1)
    except OSError as err:
        raise ActionError(f"the init sent no pty master: {err}") from err
    finally:
        sock.close()
    if not fds:
        raise ActionError("the init sent no pty master")
    master = _above_stdio(fds[0])
    os.set_inheritable(master, False)
    return master


def _console(c: Container) -> int:
    """For ``terminal: true``: a socket connected to ``--console-socket``,
    or the one a foreground ``run`` sent (its own end of the pair is where
    the master goes; given to the init once).

    The init makes the pty inside the container (its slave must be the
    container's /dev/pts/N) and sends the master on this socket with
    SCM_RIGHTS, runc's protocol; connecting here makes a wrong socket fail
    the create before anything is forked.
    """
    if c.console_fd is not None:
        fd, c.console_fd = c.console_fd, None
        return _above_stdio(fd)
    if not c.console_socket:
        raise ActionError(
            "cannot allocate tty if runlog will detach without setting console socket"
        )
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        with SocketAddress(c.console_socket) as address:
            sock.connect(address)
    except OSError as err:
        sock.close()
        raise ActionError(f"console socket {c.console_socket}: {err.strerror or err}") from err
    return sock.detach()


class _Cgroups:
    def __init__(self, container: Container) -> None:
        self.c = container

    def create(self) -> dict[str, Any]:
        self.c.manager.create()
        try:
            applied = self.c.manager.apply(self.c.resources)
        except BaseException:
            self.c.manager.destroy()
            raise
        result: dict[str, Any] = {}
        report = getattr(self.c.manager, "report", None)
        if report is not None:
            result.update(report())
        warnings = [*self.c.resources.ignored(), *applied]
        if warnings:
            result["warning"] = "; ".join(warnings)
        return result

    def destroy(self) -> None:
        self.c.manager.destroy()

    def freeze(self) -> None:
        self.c.manager.freeze()

    def thaw(self) -> None:
        self.c.manager.thaw()

    def update(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        """runc update: write ``resources`` (OCI ``linux.resources``), and
        read the limit files back, before and after."""
        from engine.cgroups.errors import CgroupError

        try:
            wanted = Resources.from_oci(resources)
        except CgroupError as err:
            raise ActionError(str(err)) from err
        if wanted.unsupported:
            raise ActionError(f"runlog does not set {', '.join(wanted.unsupported)}")
        before = _limits(self.c.manager.paths)
        try:
            self.c.manager.apply(wanted)
        except CgroupError as err:
            raise ActionError(str(err), before=before) from err
        return {"before": before, "after": _limits(self.c.manager.paths)}


# The limit files runc update writes, by hierarchy (v1 controller, or the
# cgroup2 directory): what an update event shows before and after.
_LIMIT_FILES = {
    "memory": (
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.memsw.limit_in_bytes",
    ),
    "cpu": ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max",),
    "unified": (
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "cpu.weight",
        "cpu.max",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
    ),
}


def _limits(paths: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, names in _LIMIT_FILES.items():
        directory = paths.get(key)
        if directory is None:
            continue
        for name in names:
            try:
                with open(os.path.join(directory, name)) as fh:
                    found[name if key != "unified" else f"unified:{name}"] = fh.read().strip()
            except OSError:
                continue
    return found


class _State:
    def __init__(self, container: Container) -> None:
        self.c = container

    def remove(self) -> None:
        # Events the log has not taken yet (a kill, an exit) stay, before
        # the delete's own (engine.runtime.journal).
        self.c.statedir.remove(keep="journal")

    def oci_state(self, status: str) -> dict[str, Any]:
        c = self.c
        pid = None if status == "stopped" else c.pid
        return hook_state(
            container_id=c.id,
            status=status,
            pid=pid,
            bundle=c.config.bundle,
            annotations=c.config.annotations,
        )


def _exe_identity() -> str | None:
    """This process's executable as ``device:inode``."""
    try:
        st = os.stat("/proc/self/exe")
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"
