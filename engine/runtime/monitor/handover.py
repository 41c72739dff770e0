"""The monitor's way to rest and to wake: into the lean process and back.

:func:`rest` runs in the monitor's loop once it has been idle for
:attr:`~engine.runtime.monitor.server.Server.lean_after` seconds: if
nothing is in hand, it pickles what the monitor knows into a memfd, keeps
the descriptors that matter open across ``execve`` and execs the lean
process (:mod:`engine.runtime.monitor.lean`). :func:`wake` runs in the lean
process when something needs the monitor itself: it imports the monitor's
code, rebuilds the container, the dispatcher and the loop from the memfd,
opens the event log again, adopts the connections the lean process held,
and serves on (:meth:`engine.runtime.monitor.server.Server.serve`).

What goes through the memfd:

- the :class:`~engine.runtime.monitor.container.Container` as it is (its
  configuration as create read it, not the bundle's config.json as it is
  now; the cgroup manager; the init's sync socket before ``start``, and its
  exec-error socket after);
- what the dispatcher remembers (signals runlog sent, the freezer it saw,
  the OOM kills counted, the exec ids and the exec'd processes it watches);
- the machine definition in force for this container (not
  ``statemachine.yaml`` as it is now);
- the watcher (its inotify descriptor and what each watch is for), the
  loop's looks at what is not watched, runlog's ``--log``;
- the event log's name and group, and the root and context every event of
  this life is stamped with.

A monitor with something in hand does not rest (:func:`busy` says what):
container streams it keeps (``--log-path``), a request being read or a
spooled ``wait``, a freezer still FREEZING, watches not yet set, a
container not yet created or already deleted. Events waiting in the
journal (the log refused them) do not keep it awake: it wakes every
:data:`JOURNAL_RETRY` seconds to write them into the log.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import socket
import sys
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine import wire
from engine.errors import EventLogError
from engine.eventlog.store import EventStore

if TYPE_CHECKING:
    from engine.eventlog.record import ContainerRow, Event, NewEvent
    from engine.runtime.monitor import lean
    from engine.runtime.monitor.container import Container
    from engine.runtime.monitor.server import Server

__all__ = ["Unopened", "busy", "rest", "resting", "wake"]

#: Seconds a monitor rests before it wakes to write its journal into the
#: log that refused it (awake, it tries every second: server.JOURNAL_RETRY).
JOURNAL_RETRY = 5.0

#: What the dispatcher and the loop keep across a rest (the rest they make anew).
_DISPATCHER = ("me", "sent", "oom_kills", "freezer_seen", "record_queries", "exec_watches", "execs")
_SERVER = (
    "watcher",
    "spool_poll",
    "spool_due",
    "freezer_poll",
    "freezer_due",
    "runtime_log",
    "lean_after",
    "log_place",
)

# The lean process's first line: its module, found where this one is.
_BOOT = (
    "import sys; sys.path[0:0] = [sys.argv[1]]; "
    "from engine.runtime.monitor.lean import main; main(int(sys.argv[2]))"
)


def busy(server: Server) -> str | None:
    """What keeps the monitor from resting now, or None."""
    dispatcher, container = server.dispatcher, server.container
    if server.streams is not None or dispatcher.log is not None or dispatcher.terminal is not None:
        return "it keeps the container's streams"
    if server.log_place is None:
        return "no event log to open again"
    if container.status == "creating" or dispatcher.deleted or container.pid is None:
        return "no container to rest with"
    if server.watch_by is not None:
        return "its watches are not set yet"
    if server.taken or dispatcher.after or dispatcher.queries:
        return "requests in hand"
    if any(c.reply is None or c.reply not in dispatcher.waiters for c in server.conns.values()):
        return "a connection in hand"
    if len(dispatcher.waiters) != len(server.conns):
        return "a waiter of the spool"
    if container.exit is not None and container.status != "stopped":
        return "the init's end is not recorded"
    if dispatcher.freezer_seen == "freezing":
        return "the freezer is freezing"
    if server.spool.pending():
        return "requests in the spool"
    return None


def rest(server: Server) -> str | None:
    """Exec the lean process; return (only) if the monitor stays as it is:
    why, or None if the exec failed (it will not try again)."""
    why = busy(server)
    if why is not None:
        return why
    import engine
    from engine import jsonfast
    from engine.runtime.monitor import dispatch

    dispatcher, container = server.dispatcher, server.container
    keep: list[int] = []
    memfd = -1
    try:
        memfd = os.memfd_create("runlog-monitor", 0)  # no close-on-exec: the lean one reads it
        header, blob = _snapshot(server, keep)
        # What the lean process compares the freezer with is what it is now
        # (read into the header): it must be what the monitor last saw,
        # or a change made meanwhile would go unnoticed.
        if dispatch.freezer_of(container) != dispatcher.freezer_seen:
            os.close(memfd)
            return "the freezer changed"
        data = jsonfast.dumps(header).encode()
        view = memoryview(len(data).to_bytes(8, "little") + data + blob)
        while view:
            view = view[os.write(memfd, view) :]
        for fd in keep:
            os.set_inheritable(fd, True)
        where = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__ or "")))
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _BOOT, where, str(memfd)])
    except Exception as err:  # whatever it is, the monitor serves on as it is
        for fd in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
        if memfd >= 0:
            os.close(memfd)
        _said(server, f"its monitor stays as it is (it cannot go lean: {err!r})")
        return None


def _snapshot(server: Server, keep: list[int]) -> tuple[dict[str, Any], bytes]:
    """The lean process's header (JSON) and the monitor's pickle."""
    from engine.runtime.monitor.server import POLL, freezer_file

    dispatcher, container = server.dispatcher, server.container
    store = dispatcher.service.store
    journal = dispatcher.service.journal
    waiters = [(c.sock, c.actor, c.reply in dispatcher.bound) for c in server.conns.values()]
    state = {
        "container": container,
        "dispatcher": {name: getattr(dispatcher, name) for name in _DISPATCHER},
        "server": {name: getattr(server, name) for name in _SERVER},
        "pidfd": server.pidfd,
        "waiters": waiters,
        "definition": dispatcher.service.definition,
        "stamp": (store.life_root, store.life_context),
    }
    buffer = io.BytesIO()
    _Pickler(buffer, keep).dump(state)
    for fd in (server.pidfd, container._pidfd, *dispatcher.exec_watches):
        if fd is not None:
            keep.append(fd)
    if server.watcher is not None:
        keep.append(server.watcher.fileno())
    keep.append(server.sock.fileno())
    freezer: dict[str, str | None] = {}
    found = freezer_file(container.manager.paths)
    if found is not None:
        for name in sorted(found[1]):
            path = os.path.join(found[0], name)
            freezer[path] = _read_text(path)
    state_reply = None
    wait_reply = None
    if not dispatcher.record_queries:
        assert container.state_text is not None
        text = container.state_text.decode()
        state_reply = wire.encode_reply(
            wire.state_reply(container.status, dispatcher.state(), text)
        ).decode()
        if container.exit is not None:
            reply = wire.ok(container.status, dispatcher.state(), exit=dict(container.exit))
            wait_reply = wire.encode_reply(reply).decode()
    header = {
        "path": sys.path,
        "id": container.id,
        "runtime_log": list(server.runtime_log),
        "sock": server.sock.fileno(),
        "pidfd": server.pidfd,
        "watcher": None if server.watcher is None else server.watcher.fileno(),
        "init_pid": container.pid,
        "owner": container.owner,
        "state_reply": state_reply,
        "wait_reply": wait_reply,
        "record_queries": dispatcher.record_queries,
        "spool": server.spool.directory,
        "freezer": freezer,
        "poll": POLL if server.spool_poll is not None or server.freezer_poll is not None else None,
        "waiters": [sock.fileno() for sock, _actor, _bound in waiters],
        "wake_on": list(dispatcher.exec_watches),
        # Events wait in the journal (the log refused them): woken to try again.
        "retry": JOURNAL_RETRY if journal is not None and journal.pending else None,
    }
    return header, buffer.getvalue()


def wake(lean_: lean.Lean, why: str, reading: list[lean.Conn], offset: int) -> None:
    """In the lean process: become the monitor again, answer what woke
    it, and serve until ``delete`` (or the next rest, which execs)."""
    from engine.identity import enriched
    from engine.status import Actor, Transport

    size = os.fstat(lean_.memfd).st_size
    blob = os.pread(lean_.memfd, size - offset, offset)
    os.close(lean_.memfd)
    sockets: dict[int, socket.SocketType] = {lean_.sock.fileno(): lean_.sock}
    state = _Unpickler(io.BytesIO(blob), sockets).load()
    server = _rebuild(state, lean_.sock)
    for sock, actor, bound in state["waiters"]:
        server.adopt(sock, actor, bound=bound)
    for conn, bind in lean_.waiters:
        server.adopt(conn.sock, enriched(Actor(conn.uid, conn.pid, Transport.SOCKET)), bound=bind)
    for conn in reading:
        actor = enriched(Actor(conn.uid, conn.pid, Transport.SOCKET))
        server.adopt(conn.sock, actor, conn.data)
    server.serve(resumed=True)


def _rebuild(state: dict[str, Any], sock: socket.SocketType) -> Server:
    """The monitor's objects again, from what :func:`_snapshot` kept."""
    import select

    from engine.actions.registry import REGISTRY
    from engine.eventlog import open_store
    from engine.machine.runtime import Lifecycle
    from engine.runtime.monitor.dispatch import Dispatcher
    from engine.runtime.monitor.server import Server
    from engine.runtime.shared.journal import JOURNAL, Journal
    from engine.service import Service

    container = state["container"]
    db, group = state["server"]["log_place"]
    store: EventStore
    try:
        store = open_store(db, group=group)
    except EventLogError as err:
        store = Unopened(db, group, err, container)
    store.stamp(*state["stamp"])
    service = Service(
        store, Lifecycle(state["definition"], REGISTRY), lambda _cid: container.drivers()
    )
    service.journal = Journal(container.statedir.file(JOURNAL))
    service.project = container.project
    dispatcher = Dispatcher(service, container)
    for name, value in state["dispatcher"].items():
        setattr(dispatcher, name, value)
    if isinstance(store, Unopened):
        dispatcher.log_problem = store.problem
    server = Server(dispatcher, container.statedir, sock, watcher=state["server"]["watcher"])
    if server.pidfd is not None:
        os.close(server.pidfd)  # the one kept across the exec is the one to watch
    server.pidfd = state["pidfd"]
    for name, value in state["server"].items():
        setattr(server, name, value)
    for fd in dispatcher.exec_watches:
        server.poller.register(fd, select.POLLIN)
    server.rest_with = rest
    return server


def _read_text(path: str) -> str | None:
    """The file's text as the lean process reads it (None: unreadable)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4096).decode(errors="replace")
    except OSError:
        return None


def _said(server: Server, text: str) -> None:
    """A warning in runlog's ``--log``, when there is one."""
    log, log_format = server.runtime_log
    if log:
        from engine.settings import log_line

        log_line(log, log_format, "warning", f"container {server.container.id}: {text}")


def _mappingproxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return _proxy, (dict(proxy),)


def _proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


class _Pickler(pickle.Pickler):
    """Sockets go as their descriptors (kept open across the exec);
    read-only mappings (the configuration's) as what they show."""

    def __init__(self, file: io.BytesIO, keep: list[int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.keep = keep
        self.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _mappingproxy}

    def persistent_id(self, obj: object) -> object:
        if isinstance(obj, socket.SocketType):
            self.keep.append(obj.fileno())
            return ("socket", obj.fileno())
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, sockets: dict[int, socket.SocketType]) -> None:
        super().__init__(file)
        self.sockets = sockets

    def persistent_load(self, pid: object) -> object:
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "socket"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        fd = int(pid[1])
        if fd not in self.sockets:
            self.sockets[fd] = socket.socket(fileno=fd)
        return self.sockets[fd]


def resting(pid: int) -> bool:
    """Whether the monitor ``pid`` rests: it runs the lean process
    (:mod:`engine.runtime.monitor.lean`) and has not woken since (a woken
    one keeps the lean command line, with the event log's SQLite loaded)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"engine.runtime.monitor.lean" not in cmdline.read():
                return False
        with open(f"/proc/{pid}/maps") as maps:
            return "_sqlite3" not in maps.read()
    except OSError:
        return False


class Unopened(EventStore):
    """The event log of a monitor woken from its rest that cannot open it
    again (a schema newer than this runlog's, a file unreadable, corrupt or
    locked): it stays so until a use finds the log fine again, and is then
    the log opened.

    Until then every use raises why the log cannot be opened, but for the
    monitor's own container's row, which is what the monitor knows (its
    status, as the log followed by the journal has it): the dispatcher
    refuses its clients' requests before anything is done (``log_problem``),
    and what happens by itself - the init's end - goes into the journal as
    an awake monitor's does when the log refuses it (engine.service), to be
    written into the log once it can be."""

    def __init__(
        self, db: str, group: str | None, error: EventLogError, container: Container
    ) -> None:
        self.place = (db, group)
        self.error = error
        self.known = container
        self.store: EventStore | None = None

    def problem(self) -> EventLogError | None:
        """Why the log cannot be opened now (it is tried again), or None."""
        if self.store is not None:
            return None
        from engine.eventlog import open_store

        try:
            store = open_store(self.place[0], group=self.place[1])
        except EventLogError as err:
            self.error = err
            return err
        store.stamp(self.life_root, self.life_context)
        self.store = store
        return None

    def _opened(self) -> EventStore:
        error = self.problem()
        if error is not None:
            raise error
        assert self.store is not None
        return self.store

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        return self._opened().append(event, expected_seq, durable=durable)

    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        return self._opened().history(container_id, after_seq)

    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        return self._opened().events(after_id, limit)

    def container(self, container_id: str) -> ContainerRow | None:
        if self.problem() is None:
            return self._opened().container(container_id)
        if container_id != self.known.id:
            raise self.error
        from engine.eventlog.record import ContainerRow

        # The status already follows the journal, whose events Service adds
        # to the row: the state they lead to is the same.
        return ContainerRow(container_id, self.known.status, 0, 0, 0, "")

    def containers(self) -> list[ContainerRow]:
        return self._opened().containers()

    def archive_machine(self, digest: str, text: str, path: str | None = None) -> None:
        # The create archived it in this log; a log opened again later has it.
        if self.problem() is None:
            self._opened().archive_machine(digest, text, path)

    def machine_text(self, digest: str) -> str | None:
        return self._opened().machine_text(digest)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def checkpoint(self) -> None:
        if self.store is not None:
            self.store.checkpoint()
