"""The monitor's loop: one thread, one poll, every source of work.

- the init's pidfd: its end is recorded (``exit``) and ``wait`` answered;
- ``control.sock`` (0600, the owner's): connections are read without
  blocking the loop, each until a newline, the client's shutdown, more than
  :data:`~engine.wire.MAX_REQUEST` bytes or
  :data:`READ_TIMEOUT`; the peer's uid and pid (SO_PEERCRED) are the actor;
- a :class:`~engine.runtime.shared.watcher.Watcher` (one inotify instance, no
  thread) on the request spool and the cgroup's freezer file, with a look
  every :data:`POLL` seconds at whatever cannot be watched: no inotify
  instance left (``fs.inotify.max_user_instances`` is per user, 128 by
  default), a freezer the kernel does not report. A spool client wakes the
  loop over control.sock (:data:`~engine.wire.POKE`) once its
  request is in place, so the spool needs no watch to be served at once.

- with ``--log-path``, the container's pipes and ``attach.sock``
  (:class:`~engine.runtime.monitor.streams.Streams`).

Every request goes to the one :class:`~engine.runtime.monitor.dispatch.Dispatcher`,
here, so every transition runs in this thread. The loop ends after a
``delete``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import _socket
import errno
import os
import select
import struct
import time

from engine import faults
from engine.identity import enriched
from engine.runtime.monitor.dispatch import Dispatcher
from engine.runtime.shared.spool import REQUESTS, Spool, is_request
from engine.runtime.shared.statedir import CONTROL, SocketAddress, StateDir
from engine.runtime.shared.watcher import ARRIVED, CHANGED, OVERFLOW, Watcher
from engine.status import Actor, Transport
from engine.wire import MAX_REQUEST, POKE, POKED, encode_reply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from engine.runtime.monitor.streams import Streams

__all__ = ["Server", "freezer_file", "listen"]

_SO_PEERCRED = struct.Struct("3i")
#: Seconds a client has to send its whole request.
READ_TIMEOUT = 5.0
#: Seconds between looks at a spool or a freezer that cannot be watched.
POLL = 1.0
#: The watches are set after this long without a request, or this long
#: after serving: a container deleted before has none to tear down (closing
#: an inotify instance that has watches waits for the kernel's grace
#: period, some 15 ms here; one without is free).
WATCH_IDLE = 0.02
WATCH_BY = 0.25
#: Seconds between looks at a freezer still FREEZING.
FREEZING_RECHECK = 0.05
#: Seconds between tries to write the journal into an event log that refused it.
JOURNAL_RETRY = 1.0
_SPOOL = "spool"
_FREEZER = "freezer"


class _Conn:
    """One client of control.sock: its request as it arrives, then (once
    ``reply`` is set) the way to answer it - at once, or at the init's end."""

    __slots__ = ("actor", "data", "deadline", "reply", "sock")

    def __init__(self, sock: _socket.socket, actor: Actor) -> None:
        self.sock = sock
        self.actor = actor
        self.data = bytearray()
        self.deadline = time.monotonic() + READ_TIMEOUT
        self.reply: _SocketReply | None = None


def listen(statedir: StateDir, owner: int) -> _socket.socket:
    """Bind and listen on the container's control.sock (0600, ``owner``'s).
    The monitor does this before it creates anything: a client that
    connects before the loop runs waits in the backlog."""
    path = statedir.file(CONTROL)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # 0600: the owner and root only
        try:
            with SocketAddress(path) as address:
                sock.bind(address)
        finally:
            os.umask(old)
        os.chown(path, owner, -1)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """The monitor's loop: the init's pidfd, control.sock, the watcher."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        statedir: StateDir,
        sock: _socket.socket,
        streams: Streams | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.container = dispatcher.container
        self.statedir = statedir
        self.streams = streams
        self.spool = Spool(statedir.file(REQUESTS))
        self.sock = sock
        self.poller = select.poll()
        self.conns: dict[int, _Conn] = {}
        self.taken: set[str] = set()  # spooled requests being answered (wait)
        self.watcher = watcher
        # Seconds between looks, and when the next is due, at what cannot be watched.
        self.spool_poll: float | None = None
        self.spool_due: float | None = None
        self.freezer_poll: float | None = None
        self.freezer_due: float | None = None
        self.watch_idle: float | None = None
        self.watch_by: float | None = None
        # When to try again to write the journal into the event log.
        self.journal_due: float | None = None
        # runlog's --log and its format, where the loop says what it gives up.
        self.runtime_log: tuple[str | None, str] = (None, "text")
        # Seconds idle before the monitor goes lean (engine.runtime.monitor.lean;
        # None: never), when that is due, and the event log to open again
        # when it is woken (its name and group).
        self.lean_after: float | None = None
        self.lean_due: float | None = None
        # How it rests (engine.runtime.monitor.handover.rest): why it cannot
        # now, or None if it never will; it does not return if it rests.
        self.rest_with: Callable[[Server], str | None] | None = None
        self.log_place: tuple[str, str | None] | None = None
        assert self.container.pid is not None
        self.pidfd: int | None = _pidfd(self.container.pid)
        # SIGCHLD wakes the loop (set_wakeup_fd) so the monitor, a child
        # subreaper, reaps what is re-parented to it: daemons a hook left.
        self.sigchld, self._sigchld_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        dispatcher.on_watch = lambda fd: self.poller.register(fd, select.POLLIN)

    # -- the loop --------------------------------------------------------------

    def serve(self, resumed: bool = False) -> None:
        """Serve until ``delete``. ``resumed``: by a monitor woken from its
        lean rest (engine.runtime.monitor.handover), whose watches are set
        and whose connections are adopted already."""
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        _signal.signal(_signal.SIGCHLD, _woken)
        _signal.set_wakeup_fd(self._sigchld_w)
        self.poller.register(self.sigchld, select.POLLIN)
        self.poller.register(self.sock.fileno(), select.POLLIN)
        if self.pidfd is not None:  # None: a monitor woken after the init's end
            self.poller.register(self.pidfd, select.POLLIN)
        if self.streams is not None:
            self.streams.register(self.poller)
        if self.watcher is not None:
            self.poller.register(self.watcher.fileno(), select.POLLIN)
        now = time.monotonic()
        if not resumed:
            self.watch_idle, self.watch_by = now + WATCH_IDLE, now + WATCH_BY
        self._idle_since(now)
        try:
            if resumed:
                self._resume()
            self._look_at_spool()
            while not self._done():
                ready = self.poller.poll(self._timeout())
                for fd, events in ready:
                    self._ready(fd, events)
                    if self._done():
                        return
                self._expire()  # may have run a delete too (the spool, polled)
                if self._done():
                    return
                self._close_pidfd()
                if ready:
                    self._idle_since(time.monotonic())
                elif self.lean_due is not None and time.monotonic() >= self.lean_due:
                    self._rest()
        finally:
            self._close()

    def _idle_since(self, now: float) -> None:
        if self.lean_after is not None:
            self.lean_due = now + self.lean_after

    def _rest(self) -> None:
        """Idle long enough: exec the lean process (which does not return),
        unless something is in hand; then look again later."""
        self.lean_due = None
        if self.rest_with is None or self.rest_with(self) is None:
            self.lean_after = None  # the exec failed: this monitor stays as it is
        else:
            self._idle_since(time.monotonic())

    def _resume(self) -> None:
        """Woken from the lean rest: what the lean process had read is
        answered, and what it may have seen (a spooled request, a freezer
        written to) is looked at."""
        for conn in [c for c in self.conns.values() if c.reply is None]:
            if b"\n" in conn.data or len(conn.data) > MAX_REQUEST:
                self._complete(conn)
        self._freezer()
        journal = self.dispatcher.service.journal
        if journal is not None and journal.pending:
            self.journal_due = time.monotonic()  # written now, if the log takes it

    def adopt(
        self, sock: _socket.socket, actor: Actor, data: bytes = b"", bound: bool | None = None
    ) -> None:
        """A connection the lean process held: a request it read (``data``),
        or a ``wait`` (``bound`` not None) waiting for the init's end."""
        conn = _Conn(sock, actor)
        conn.data += data
        self.conns[sock.fileno()] = conn
        if bound is None:
            self.poller.register(sock.fileno(), select.POLLIN)
            return
        conn.reply = _SocketReply(self, conn)
        self.poller.register(sock.fileno(), 0)
        self.dispatcher.waiters.append(conn.reply)
        if bound:
            self.dispatcher.bound[conn.reply] = actor

    def _start_watching(self) -> None:
        self.watch_idle = self.watch_by = None
        self._watch()
        # What happened before the watches were in place: requests dropped
        # into the spool, a freezer written to.
        self._look_at_spool()
        self._freezer()

    def _done(self) -> bool:
        return self.dispatcher.deleted

    def _watch(self) -> None:
        """Watch the spool and the freezer with the watcher the monitor got
        (None: no inotify instance was left, which create said). What
        cannot be watched is looked at every :data:`POLL` seconds instead;
        a watch that fails now is said too (:meth:`_given_up`)."""
        freezer = freezer_file(self.container.manager.paths)
        lost: list[tuple[str, OSError]] = []
        spool = self.spool.directory
        if not self._try_watch(spool, _SPOOL, ARRIVED, is_request, "the request spool", lost):
            self.spool_poll = POLL
            self.spool_due = time.monotonic() + POLL
        if freezer is None or not self._try_watch(
            freezer[0], _FREEZER, CHANGED, freezer[1].__contains__, "the freezer", lost
        ):
            self.freezer_poll = POLL
            self.freezer_due = time.monotonic() + POLL
        if lost:
            self._given_up(lost)

    def _try_watch(
        self,
        directory: str,
        tag: str,
        kind: str,
        accept: Callable[[str], bool],
        what: str,
        lost: list[tuple[str, OSError]],
    ) -> bool:
        """Add one watch; False if there is none (``lost`` says why, when
        the instance refused it)."""
        if self.watcher is None:
            return False
        try:
            if faults.fails("watch", tag):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)
            self.watcher.watch(directory, tag, kind, accept)
        except OSError as err:
            lost.append((what, err))
            return False
        return True

    def _given_up(self, lost: list[tuple[str, OSError]]) -> None:
        """Watches the instance refused after create had reported: said in
        the container's events (``watch``, with ``given_up``) and in
        runlog's ``--log``; the looks every :data:`POLL` seconds cover them."""
        text = looked_at([what for what, _ in lost], lost[0][1])
        dispatcher = self.dispatcher
        try:
            request = {"given_up": text}
            dispatcher.service.record_query(dispatcher.id, "watch", dispatcher.me, request)
        except Exception:  # the log cannot take it: --log still says it
            pass
        if self.runtime_log[0]:
            from engine.settings import log_line

            log_line(*self.runtime_log, "warning", f"container {dispatcher.id}: {text}")

    def _timeout(self) -> int | None:
        deadlines = [c.deadline for c in self.conns.values() if c.reply is None]
        journal = self.dispatcher.service.journal
        if journal is not None and journal.pending and self.journal_due is None:
            self.journal_due = time.monotonic() + JOURNAL_RETRY
        elif journal is None or not journal.pending:
            self.journal_due = None
        due = (
            self.spool_due,
            self.freezer_due,
            self.watch_idle,
            self.watch_by,
            self.journal_due,
            self.lean_due,
        )
        deadlines += [t for t in due if t is not None]
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _ready(self, fd: int, events: int) -> None:
        if self.streams is not None and self.streams.owns(fd):
            # The container's output is no request: the watcher may start.
            self.streams.event(fd, events)
            return
        if self.watch_idle is not None:
            self.watch_idle = time.monotonic() + WATCH_IDLE  # busy: not yet
        if fd == self.sigchld:
            _drain(self.sigchld)
            self._reap_orphans()
        elif fd == self.pidfd:
            self.dispatcher.refresh()  # records the end unless it is already
            self._reap_orphans()
        elif fd == self.sock.fileno():
            self._accept()
        elif fd in self.dispatcher.exec_watches:
            self.poller.unregister(fd)
            self.dispatcher.exec_ended(fd)
        elif self.watcher is not None and fd == self.watcher.fileno():
            for tag, name in self.watcher.drain():
                if tag == _SPOOL and name == OVERFLOW:
                    self._look_at_spool()
                elif tag == _SPOOL:
                    self._spooled(name)
                elif tag == _FREEZER:
                    self._freezer()
        elif fd in self.conns:
            self._readable(self.conns[fd])

    def _expire(self) -> None:
        now = time.monotonic()
        if self.journal_due is not None and self.journal_due <= now:
            self.journal_due = None
            if self.dispatcher.retry_journal():
                self.journal_due = now + JOURNAL_RETRY
        if self.watch_by is not None and (
            now >= self.watch_by or (self.watch_idle is not None and now >= self.watch_idle)
        ):
            self._start_watching()
        for conn in [c for c in self.conns.values() if c.reply is None and c.deadline <= now]:
            self._complete(conn)  # what came in time is the request
        if self.freezer_due is not None and self.freezer_due <= now:
            self.freezer_due = None
            self._freezer()
        if self.spool_due is not None and self.spool_due <= now:
            assert self.spool_poll is not None
            self.spool_due = now + self.spool_poll
            self._look_at_spool()

    def _freezer(self) -> None:
        if self.dispatcher.freezer_changed():
            self.freezer_due = time.monotonic() + FREEZING_RECHECK
        elif self.freezer_poll is not None:
            self.freezer_due = time.monotonic() + self.freezer_poll

    def _close_pidfd(self) -> None:
        if self.pidfd is not None and self.container.exit is not None:
            self.poller.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    def _reap_orphans(self) -> None:
        """Reap every ended child but the init, which is the dispatcher's to
        collect (through its pidfd) and record. waitid(WNOWAIT) looks
        without reaping, so the init's status is never taken here."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == self.container.pid:
                return
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                return

    def _close(self) -> None:
        _signal.set_wakeup_fd(-1)
        for fd in (self.sigchld, self._sigchld_w):
            os.close(fd)
        for conn in list(self.conns.values()):
            self.drop(conn)
        if self.watcher is not None:
            self.watcher.close()
        self.sock.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        for fd in list(self.dispatcher.exec_watches):
            os.close(fd)
        if self.streams is not None:
            self.streams.close()

    # -- control.sock ------------------------------------------------------------

    def _accept(self) -> None:
        try:
            # socket.socket.accept() is this and a wrapper object; the
            # monitor does without the socket module (engine.linux.fdpass).
            fd, _ = self.sock._accept()  # type: ignore[attr-defined]
        except OSError:
            return  # gone before accepted, or no descriptor left: the next poll retries
        sock = _socket.socket(fileno=fd)
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _SO_PEERCRED.size)
        pid, uid, _gid = _SO_PEERCRED.unpack(raw)
        sock.setblocking(False)
        conn = _Conn(sock, enriched(Actor(uid, pid, Transport.SOCKET)))
        self.conns[sock.fileno()] = conn
        self.poller.register(sock.fileno(), select.POLLIN)

    def _readable(self, conn: _Conn) -> None:
        if conn.reply is not None:
            # A client waiting for the init's end hung up.
            self.dispatcher.forget(conn.reply)
            self.drop(conn)
            return
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        conn.data += chunk
        # The request ends at a newline, at the client's shutdown, or where
        # it has become too large.
        if not chunk or b"\n" in chunk or len(conn.data) > MAX_REQUEST:
            self._complete(conn)

    def _complete(self, conn: _Conn) -> None:
        data = bytes(conn.data)
        line, newline, _rest = data.partition(b"\n")
        request = line if newline and len(line) <= MAX_REQUEST else data
        conn.reply = _SocketReply(self, conn)
        if request == POKE:
            # A spool client's wake-up, no request: the spool is looked at
            # now, and the client told once what was there has been taken.
            self.poller.modify(conn.sock.fileno(), 0)
            self._look_at_spool()
            conn.reply(dict(POKED))
            return
        # Read no more. A wait keeps the connection open: only a hang-up
        # (the client gone, not merely done sending) is of interest now.
        self.poller.modify(conn.sock.fileno(), 0)
        self.dispatcher.handle(request, conn.actor, conn.reply)

    def drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self.conns.pop(fd, None) is not None:
            self.poller.unregister(fd)
        conn.sock.close()

    # -- the spool -------------------------------------------------------------------

    def _look_at_spool(self) -> None:
        for name in self.spool.pending():
            self._spooled(name)

    def _spooled(self, name: str) -> None:
        if name in self.taken:
            return
        try:
            entry = self.spool.read(name)
        except OSError:
            return  # the spool itself is going (delete) or unreadable
        if entry is None:
            return
        self.taken.add(name)
        actor = enriched(Actor(entry.uid, None, Transport.SPOOL))

        def respond(reply: dict[str, Any]) -> None:
            self.spool.answer(name, encode_reply(reply), entry.uid)
            self.taken.discard(name)

        if entry.problem is not None:
            self.dispatcher.unreadable(actor, entry.problem, respond)
        else:
            self.dispatcher.handle(entry.data, actor, respond)


class _SocketReply:
    """Answers one connection, then closes it."""

    def __init__(self, server: Server, conn: _Conn) -> None:
        self.server = server
        self.conn = conn

    def __call__(self, reply: dict[str, Any]) -> None:
        sock = self.conn.sock
        try:
            sock.setblocking(True)
            sock.settimeout(READ_TIMEOUT)
            sock.sendall(encode_reply(reply))
        except OSError:
            pass  # the client went away; the event is recorded all the same
        self.server.drop(self.conn)


def freezer_file(paths: dict[str, str]) -> tuple[str, frozenset[str]] | None:
    """The directory holding the container's freezer, and the files in it that
    change when it is frozen or thawed: v1 ``freezer.state`` (inotify fires
    on every write to it), v2 ``cgroup.freeze`` and ``cgroup.events`` (the
    kernel reports each change of "frozen" as a modification)."""
    if "freezer" in paths:
        return paths["freezer"], frozenset({"freezer.state"})
    if "unified" in paths and os.path.exists(os.path.join(paths["unified"], "cgroup.freeze")):
        return paths["unified"], frozenset({"cgroup.freeze", "cgroup.events"})
    return None


def looked_at(what: list[str], err: OSError | str) -> str:
    """What the monitor gives up when inotify refuses (an instance, a
    watch), and the limit to raise."""
    why = err if isinstance(err, str) else err.strerror or str(err)
    limit = _LIMITS.get(err.errno or 0) if isinstance(err, OSError) else None
    hint = f"; see {limit}" if limit else ""
    return f"{' and '.join(what)} looked at every {POLL:g}s, not watched (inotify: {why}{hint})"


#: The sysctl behind each errno inotify gives when a per-user limit is reached.
_LIMITS = {
    errno.EMFILE: "fs.inotify.max_user_instances",
    errno.ENOSPC: "fs.inotify.max_user_watches",
}


def _woken(_signo: int, _frame: object) -> None:
    """SIGCHLD's handler: the wakeup fd does the work."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _pidfd(pid: int) -> int:
    """A descriptor readable once the init has ended. The monitor's own
    child is there until reaped; an init its caller reaps may be gone
    already: then a descriptor that is readable at once."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return os.eventfd(1, os.EFD_CLOEXEC)
