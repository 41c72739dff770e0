"""``runlog create`` forks its monitor as soon as its command line is read.

The monitor imports its code - the machine, the drivers, the event log:
about 16 ms here - before it can create anything, while ``create`` loads
its own (the launch, about 3 ms) and claims the state directory. Forked
here, before either, the two overlap on a second core. The monitor-to-be,
in a new session after a second fork (:mod:`engine.runtime.cli.launch` says
why), imports :mod:`engine.runtime.monitor.main` and waits on a socket for
what to create: one line, which :meth:`Early.go` writes once the state
directory is claimed. The line goes on a unix socket, so that a
foreground ``run`` can send with it the descriptors the container's
stdio are to be (pipes it copies: :mod:`engine.runtime.cli.foreground`);
the monitor-to-be makes them its own stdio, which the init inherits as it
inherits create's. For a terminal, ``run`` sends instead the socket the
init sends its pty master back on (:mod:`engine.runtime.cli.terminal`).
If ``create`` gives up first (a flag it refuses, an id in use),
:meth:`Early.abandon` closes the socket, and the monitor-to-be exits
having made nothing; create waits for that, so no process of it outlives
it.

The monitor-to-be runs without the garbage collector until create has
reported: its imports and the create allocate some 100,000 objects that
live as long as it does, and each pass of the collector over them cost
about 1 ms here, two or three times a create (cyclic garbage from that
time is negligible). :func:`engine.runtime.monitor.main.run` then freezes what
is there (``gc.freeze``) and turns the collector back on.

The monitor-to-be starts on another CPU than create's (:func:`_apart`).
Left to the scheduler, a child forked by a busy parent here often waited
on the parent's CPU for 2-4 ms before it ran; set apart, it starts at once.
It takes back the CPUs create was allowed (:func:`restore_affinity`) as
soon as it is told what to create, before it makes anything: the
container inherits create's affinity, as with runc.

Light, as :mod:`engine.cli` is: :mod:`posix`, :mod:`gc` and :mod:`_socket`
(which :mod:`engine.control` loads for create anyway).
"""

import _socket
import gc
import posix
import sys

__all__ = ["Early", "restore_affinity", "start", "take"]

_pending: "Early | None" = None
#: The CPUs create may run on, for the monitor-to-be to take back.
_affinity: "set[int] | None" = None


class Early:
    """``create``'s side of a monitor forked early: the pipe that tells it
    what to create, and the one it reports on."""

    __slots__ = ("_go", "_intermediate", "_report")

    def __init__(self, intermediate: int, go: int, report: int) -> None:
        self._intermediate = intermediate
        self._go = go
        self._report = report

    def go(
        self,
        line: bytes,
        stdio: "tuple[int, int, int] | None" = None,
        console: "int | None" = None,
    ) -> None:
        """Tell the monitor what to create: one line, no newline in it;
        with ``stdio``, three descriptors the monitor takes as its (and so
        the container's) stdin, stdout and stderr; with ``console``, the
        socket the init sends its pty master on (after them)."""
        data = line + b"\n"
        fds = (*(stdio or ()), *(() if console is None else (console,)))
        try:
            if fds:
                sock = _socket.socket(fileno=self._go)
                try:
                    rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
                    sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
                finally:
                    sock.detach()
                data = data[sent:]
            while data:
                data = data[posix.write(self._go, data) :]
        except BrokenPipeError:
            pass  # it died: its report pipe says so (EOF)
        finally:
            posix.close(self._go)
            self._go = -1

    def report(self) -> str:
        """The monitor's one-line report (``ok PID`` or ``error ...``);
        ``""`` if it died first."""
        data = b""
        # One line: the init may hold a copy of the pipe until it execs, so
        # EOF cannot be the end of the message.
        while not data.endswith(b"\n"):
            chunk = posix.read(self._report, 65536)
            if not chunk:
                break
            data += chunk
        self._close()
        return data.decode(errors="replace").rstrip("\n")

    def abandon(self) -> None:
        """Nothing to create: the monitor-to-be exits; return once it has."""
        if self._go >= 0:
            posix.close(self._go)
            self._go = -1
        while self._report >= 0 and posix.read(self._report, 65536):
            pass  # until EOF: the monitor-to-be has exited
        self._close()

    def _close(self) -> None:
        if self._report >= 0:
            posix.close(self._report)
            self._report = -1
        if self._intermediate > 0:
            posix.waitpid(self._intermediate, 0)
            self._intermediate = 0


def start() -> Early:
    """Fork the monitor-to-be now; :func:`take` hands it over."""
    global _pending, _affinity
    if _pending is not None:
        return _pending
    # Both ends close-on-exec (_socket's default), as pipe2's were.
    go_read, go_write = (end.detach() for end in _socket.socketpair(_socket.AF_UNIX))
    report_read, report_write = posix.pipe2(posix.O_CLOEXEC)
    try:
        _affinity = posix.sched_getaffinity(0)
    except OSError:
        _affinity = None  # left to the scheduler
    child = posix.fork()
    if child == 0:
        posix.close(go_write)
        posix.close(report_read)
        code = 1
        try:
            posix.setsid()
            intermediate = posix.getpid()
            if posix.fork() == 0:
                # Until create has reported (engine.runtime.monitor.main.run).
                gc.disable()
                _serve_when_told(go_read, report_write, intermediate)
            code = 0
        except BaseException:
            code = 1
        posix._exit(code)
    if _affinity is not None:
        _apart(child, _affinity)
    posix.close(go_read)
    posix.close(report_write)
    _pending = Early(child, go_write, report_read)
    return _pending


def _apart(child: int, allowed: "set[int]") -> None:
    """Move ``child`` (the intermediate process, and the monitor-to-be it
    forks) off this process's CPU, if there is another it may use."""
    if len(allowed) < 2:
        return
    try:
        fd = posix.open("/proc/self/stat", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            # Field 39, "processor": the CPU this process last ran on.
            here = int(posix.read(fd, 4096).rpartition(b")")[2].split()[36])
        finally:
            posix.close(fd)
        posix.sched_setaffinity(child, allowed - {here})
    except (OSError, ValueError, IndexError):
        pass  # an optimisation only


def _serve_when_told(go_fd: int, report_fd: int, intermediate: int) -> None:
    """In the monitor-to-be: load the monitor's code, wait for what to
    create, create it and serve it; exit at once if create gave up."""
    try:
        from engine.runtime.monitor import main
    except BaseException as err:  # reported once there is something to report on
        problem: BaseException | None = err
    else:
        problem = None
    line = b""
    stdio: list[int] = []
    sock = _socket.socket(fileno=go_fd)
    try:
        while not line.endswith(b"\n"):
            chunk, rights, _flags, _addr = sock.recvmsg(65536, _RIGHTS_SPACE)
            for level, kind, data in rights:
                if (level, kind) == (_socket.SOL_SOCKET, _socket.SCM_RIGHTS):
                    stdio += memoryview(data[: len(data) - len(data) % 4]).cast("i")
            if not chunk:
                return  # create gave up: nothing to do
            line += chunk
    finally:
        sock.close()
    # Three: run's pipes; one after them, or alone: run's console socket.
    console = stdio.pop() if len(stdio) in (1, 4) else None
    if len(stdio) == 3:
        _take_stdio(stdio)
    else:
        for fd in stdio:
            posix.close(fd)
    restore_affinity()
    if problem is None:
        main.serve(line, report_fd, intermediate, console)
        return
    if console is not None:
        posix.close(console)
    # create removes the state directory; the report names the container.
    import json

    text = f"error container {json.loads(line)['id']}: the monitor cannot start: {problem!r}\n"
    try:
        posix.write(report_fd, text.replace("\n", " ").rstrip().encode() + b"\n")
    finally:
        posix.close(report_fd)


def _take_stdio(fds: "list[int]") -> None:
    """Make ``fds`` (run's pipes) this process's stdin, stdout and stderr,
    in place of create's; lifted above 2 first, where one was received
    into a free slot among them."""
    import fcntl

    lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
    for fd in fds:
        posix.close(fd)
    for target, fd in enumerate(lifted):
        posix.dup2(fd, target)
        posix.close(fd)


#: Room for the four descriptors of :meth:`Early.go`.
_RIGHTS_SPACE = _socket.CMSG_SPACE(4 * 4)


def restore_affinity() -> None:
    """In the monitor-to-be, once told what to create (so after create has
    set it apart): run where create was allowed to."""
    if _affinity is None or len(_affinity) < 2:
        return
    try:
        posix.sched_setaffinity(0, _affinity)
    except OSError:
        # None of those CPUs is allowed any more (the cpuset changed): all
        # that are, which the kernel takes from this wider mask.
        posix.sched_setaffinity(0, range(1024))


def take() -> "Early | None":
    """The monitor forked by :func:`start` and not yet taken."""
    global _pending
    early, _pending = _pending, None
    return early
