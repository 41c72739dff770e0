"""The monitor at rest: the same process, exec'd into a lean one that only waits.

A monitor that has been idle for a while (5 seconds once its container is
created, or what ``RUNLOG_MONITOR_LEAN`` or the site configuration's
``monitor_rest`` say: :attr:`engine.settings.Settings.monitor_rest`,
resolved by ``create``) replaces itself
(``execve``: the same pid, so it is still the init's parent and child
subreaper, in the same cgroup, session and limits) with a fresh interpreter
running :func:`main`, which imports no more than this module needs: the loop
below, the C modules it drives and :mod:`engine.jsonfast`. What the monitor
imported to create the container and to run its machine (the OCI model, the
drivers, the machine and ``transitions``, the event log and SQLite) and what
it allocated doing so are gone with the old image; see
``docs/monitor-cost.md`` for what that saves. Its descriptors that matter
are kept across the exec (without close-on-exec): ``control.sock``, the
init's pidfd, the inotify instance (with its watches), the init's sync
socket, connections waiting for the init's end, pidfds of exec'd processes
watched; the rest of the monitor (the container, the dispatcher's memory,
the machine definition in force) is pickled into a memfd by
:mod:`engine.runtime.monitor.handover`.

The lean process answers alone what changes nothing and needs no record:

- ``state`` (from the owner or root, unless queries are recorded): the
  reply the monitor would give, made before the exec;
- ``wait``: held until the init's end (answered at once once it is
  recorded);
- the spool client's wake-up (:data:`~engine.wire.POKE`) with nothing new in
  the spool;

and reaps orphans re-parented to it. Anything else - any other request, a
request it cannot read at once, the init's end, a file arriving in the
spool, a freezer that changed, a waiter gone, a watched exec'd process's
end - *wakes* the monitor: :func:`engine.runtime.monitor.handover.revive`
imports the monitor's code into this process, rebuilds it from the memfd
and hands it what woke it, and the usual loop
(:class:`engine.runtime.monitor.server.Server`) serves on, in the same
process, until it has been idle again. Every change of state is the
machine's, recorded, as before: the lean process changes nothing.
"""

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import _socket
import posix
import select
import sys
import time

from engine import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Conn", "Lean", "main", "read_text"]

# engine.wire's, without importing it: the lean process's imports are few.
_POKE = b"spool"
_POKED = b'{"ok":true}\n'
_MAX_REQUEST = 64 * 1024
_REPLY = ".reply"
_SO_PEERCRED = 17
_READ_TIMEOUT = 5.0


class Conn:
    """A client of control.sock as the lean process has it: its socket, its
    credentials and what it has sent so far."""

    __slots__ = ("data", "deadline", "pid", "sock", "uid")

    def __init__(self, sock: _socket.socket, uid: int, pid: int) -> None:
        self.sock = sock
        self.uid = uid
        self.pid = pid
        self.data = b""
        self.deadline = time.monotonic() + _READ_TIMEOUT

    def complete(self) -> bool:
        return b"\n" in self.data or len(self.data) > _MAX_REQUEST


class Lean:
    """The lean loop over what the header (written by the monitor before
    its exec) says it holds."""

    def __init__(self, header: "dict[str, Any]", memfd: int) -> None:
        self.header = header
        self.memfd = memfd
        self.sock = _socket.socket(fileno=header["sock"])
        self.sock.setblocking(False)
        self.pidfd: int | None = header["pidfd"]
        self.watcher: int | None = header["watcher"]
        self.init_pid: int | None = header["init_pid"]
        self.owner: int = header["owner"]
        self.quiet_state = header["state_reply"].encode() if header["state_reply"] else None
        self.wait_reply = header["wait_reply"].encode() if header["wait_reply"] else None
        self.spool: str = header["spool"]
        self.freezer: dict[str, str | None] = header["freezer"]
        self.poll_every: float | None = header["poll"]
        retry = header.get("retry")
        self.retry_at = None if retry is None else time.monotonic() + retry
        # The waiters the monitor handed over (their fds), and those that
        # came here: (connection, bind).
        self.held: list[int] = list(header["waiters"])
        self.waiters: list[tuple[Conn, bool]] = []
        self.reading: dict[int, Conn] = {}
        self.others: set[int] = set(header["wake_on"])
        self.poller = select.poll()
        self.sigchld, self._sigchld_w = posix.pipe2(posix.O_NONBLOCK | posix.O_CLOEXEC)

    # -- the loop ------------------------------------------------------------

    def serve(self) -> "tuple[str, list[Conn]]":
        """Serve until something needs the monitor itself; return why and
        the connections read so far (whose requests it is to answer)."""
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        _signal.signal(_signal.SIGCHLD, _woken)
        _signal.set_wakeup_fd(self._sigchld_w)
        poller = self.poller
        poller.register(self.sigchld, select.POLLIN)
        poller.register(self.sock.fileno(), select.POLLIN)
        for fd in (self.pidfd, self.watcher, *self.others):
            if fd is not None:
                poller.register(fd, select.POLLIN)
        for fd in self.held:
            poller.register(fd, 0)  # a hang-up only
        self._reap_orphans()  # what ended during the exec
        due = None if self.poll_every is None else time.monotonic() + self.poll_every
        while True:
            timeout = self._timeout(due)
            for fd, _events in poller.poll(timeout):
                why = self._ready(fd)
                if why is not None:
                    return self._leave(why)
            now = time.monotonic()
            if any(c.deadline <= now for c in self.reading.values()):
                return self._leave("a slow request")
            if self.retry_at is not None and self.retry_at <= now:
                return self._leave("the journal")
            if due is not None and due <= now and self.poll_every is not None:
                due = now + self.poll_every
                why = self._look()
                if why is not None:
                    return self._leave(why)

    def _timeout(self, due: float | None) -> int | None:
        deadlines = [c.deadline for c in self.reading.values()]
        if due is not None:
            deadlines.append(due)
        if self.retry_at is not None:
            deadlines.append(self.retry_at)
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _ready(self, fd: int) -> str | None:
        if fd == self.sigchld:
            _drain(fd)
            self._reap_orphans()
            return None
        if fd == self.sock.fileno():
            return self._accept()
        if fd in self.reading:
            return self._read(self.reading[fd])
        if fd == self.watcher:
            _drain(fd)
            return self._look()
        if fd == self.pidfd:
            return "the init's end"
        if fd in self.held or any(c.sock.fileno() == fd for c, _ in self.waiters):
            return "a waiter gone"
        return "an exec'd process's end"

    def _leave(self, why: str) -> "tuple[str, list[Conn]]":
        _signal.set_wakeup_fd(-1)
        posix.close(self.sigchld)
        posix.close(self._sigchld_w)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        return why, list(self.reading.values())

    # -- what changes under the monitor's feet ------------------------------

    def _look(self) -> str | None:
        """After an inotify event, or every so often: a new request in the
        spool, or a freezer other than the one the monitor left, wakes it."""
        try:
            names = posix.listdir(self.spool)
        except OSError:
            names = []
        for name in names:
            if _is_request(name) and not _is_dir(self.spool + "/" + name):
                return "a spooled request"
        for path, seen in self.freezer.items():
            if read_text(path) != seen:
                return "the freezer"
        return None

    def _reap_orphans(self) -> None:
        """Reap every ended child but the init (the monitor's to collect
        and record: waitid with WNOWAIT looks without reaping)."""
        while True:
            try:
                info = posix.waitid(posix.P_ALL, 0, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == self.init_pid:
                return
            try:
                posix.waitpid(info.si_pid, 0)
            except ChildProcessError:
                return

    # -- control.sock ----------------------------------------------------------

    def _accept(self) -> str | None:
        try:
            fd, _ = self.sock._accept()  # type: ignore[attr-defined]
        except OSError:
            return None
        sock = _socket.socket(fileno=fd)
        raw = sock.getsockopt(_socket.SOL_SOCKET, _SO_PEERCRED, 12)
        pid = int.from_bytes(raw[0:4], sys.byteorder, signed=True)
        uid = int.from_bytes(raw[4:8], sys.byteorder, signed=True)
        sock.setblocking(False)
        conn = Conn(sock, uid, pid)
        self.reading[fd] = conn
        self.poller.register(fd, select.POLLIN)
        return self._read(conn)

    def _read(self, conn: Conn) -> str | None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            chunk = b""
        conn.data += chunk
        if not chunk or conn.complete():
            return self._request(conn)
        return None

    def _request(self, conn: Conn) -> str | None:
        line, newline, _rest = conn.data.partition(b"\n")
        if not newline or len(line) > _MAX_REQUEST:
            return "a request"  # as the monitor reads it: malformed, or a shutdown's
        permitted = conn.uid in (0, self.owner)
        if line == _POKE:
            why = self._look()
            if why is not None:
                return why
            self._answer(conn, _POKED)
            return None
        try:
            request = jsonfast.loads(line.decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "a request"
        if not permitted or not isinstance(request, dict):
            return "a request"
        op = request.get("op")
        if op == "state" and len(request) == 1 and self.quiet_state is not None:
            if self.pidfd is not None and select.select([self.pidfd], [], [], 0)[0]:
                return "the init's end"
            self._answer(conn, self.quiet_state)
            return None
        bind = request.get("bind", False)
        if op == "wait" and set(request) <= {"op", "bind"} and isinstance(bind, bool):
            if self.header["record_queries"]:
                return "a request"
            if self.wait_reply is not None:
                self._answer(conn, self.wait_reply)
                return None
            if self.pidfd is None:
                return "a request"
            del self.reading[conn.sock.fileno()]
            self.poller.modify(conn.sock.fileno(), 0)
            self.waiters.append((conn, bind))
            return None
        return "a request"

    def _answer(self, conn: Conn, reply: bytes) -> None:
        fd = conn.sock.fileno()
        self.reading.pop(fd, None)
        self.poller.unregister(fd)
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(_READ_TIMEOUT)
            conn.sock.sendall(reply)
        except OSError:
            pass
        conn.sock.close()


def main(memfd: int) -> None:
    """The lean process: read the header, serve, and once woken, hand over
    to the monitor's own code (:mod:`engine.runtime.monitor.handover`)."""
    size = int.from_bytes(posix.pread(memfd, 8, 0), "little")
    header = jsonfast.loads(posix.pread(memfd, size, 8).decode())
    lean = Lean(header, memfd)
    why, reading = lean.serve()
    sys.path[:] = header["path"]
    try:
        from engine.runtime.monitor import handover

        handover.wake(lean, why, reading, 8 + size)
    except BaseException as err:
        # The monitor cannot be itself again: it ends, as a monitor that
        # died would (the command line reconciles the container), saying why.
        log, log_format = header["runtime_log"]
        if log:
            from engine.settings import log_line

            text = f"container {header['id']}: its monitor ends: woken ({why}), {err!r}"
            log_line(log, log_format, "error", text)
        raise


def _is_request(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not name.endswith(_REPLY)


def _is_dir(path: str) -> bool:
    try:
        return posix.lstat(path).st_mode & 0o170000 == 0o040000
    except OSError:
        return True  # gone: nothing to answer


def read_text(path: str) -> str | None:
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        return posix.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        posix.close(fd)


def _woken(_signo: int, _frame: object) -> None:
    """SIGCHLD's handler: the wakeup fd does the work."""


def _drain(fd: int) -> None:
    try:
        while posix.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
