"""The per-container monitor: parent of the init, keeper of its state, server of requests.

``runlog create`` claims the state directory and forks; the child starts a
new session and forks the monitor (a double fork: the monitor belongs to no
terminal and outlives ``create``). The monitor runs the machine's ``create``
trigger - cgroup, init, hooks - and reports ``ok PID`` or the error on a pipe
that ``create`` reads. Then it lives until ``delete``: it reaps the init and
records ``exit`` with the code or signal, keeps ``state.json`` current, and
serves ``control.sock`` (one JSON request per connection, one JSON reply;
the peer's uid and pid from SO_PEERCRED go into the event's actor). This is
the shape of Apptainer's OCI engine (``handleControl``), with the machine
and the log made explicit.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
from typing import Any

from engine import jsonfast
from engine.actions.registry import REGISTRY
from engine.errors import LifecycleError, RunlogError
from engine.eventlog import open_store
from engine.linux import syscalls
from engine.machine.definition import load, resolve
from engine.machine.runtime import Lifecycle
from engine.oci.config import load_bundle
from engine.runtime import record
from engine.runtime.container import Container
from engine.runtime.statedir import CONTROL, StateDir
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor, Status, Transport

__all__ = ["MAX_REQUEST", "launch"]

MAX_REQUEST = 64 * 1024
_SO_PEERCRED = struct.Struct("3i")


def launch(
    settings: Settings,
    container_id: str,
    bundle: str,
    *,
    no_pivot: bool = False,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    actor: Actor,
) -> int:
    """Start a monitor that creates the container; return the init's pid."""
    statedir = StateDir(settings.root, container_id)
    try:
        statedir.create()
    except LifecycleError as err:
        record.rejected(settings, container_id, "create", err, {"bundle": bundle})
        raise
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        code = 1
        try:
            os.setsid()
            if os.fork() == 0:
                options = {
                    "no_pivot": no_pivot,
                    "console_socket": console_socket,
                    "preserve_fds": preserve_fds,
                }
                _monitor(settings, statedir, bundle, options, actor, write_fd)
                code = 0
            else:
                code = 0
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    os.waitpid(child, 0)
    # One line: the init may hold a copy of the pipe until it execs, so EOF
    # cannot be the end of the message.
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    reply = data.decode(errors="replace").rstrip("\n")
    word, _, rest = reply.partition(" ")
    if word == "ok":
        return int(rest)
    statedir.remove()
    raise RunlogError(rest or f"container {container_id}: the monitor died during create")


def _report(fd: int, text: str) -> None:
    data = (text.replace("\n", " ") + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]
    os.close(fd)


def _monitor(
    settings: Settings,
    statedir: StateDir,
    bundle: str,
    options: dict[str, Any],
    actor: Actor,
    report_fd: int,
) -> None:
    """Create the container, then serve it until delete. Runs in the monitor."""
    cid = statedir.id
    try:
        config = load_bundle(bundle)
        console_socket = options["console_socket"]
        if config.process.terminal and not console_socket:
            # runc's words, at create time, before anything is made.
            raise RunlogError(
                "cannot allocate tty if runlog will detach without setting console socket"
            )
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        definition = load(resolve(settings.machine, {}))
        store = open_store(settings.db)
        container = Container(
            statedir,
            config,
            systemd_cgroup=settings.systemd_cgroup,
            no_pivot=options["no_pivot"],
            console_socket=os.path.abspath(console_socket) if console_socket else None,
            preserve_fds=options["preserve_fds"],
            owner=actor.uid or 0,
        )
        service = Service(store, Lifecycle(definition, REGISTRY), lambda _cid: container.drivers())
        service.request(cid, "create", actor, {"bundle": config.bundle})
    except RunlogError as err:
        if not isinstance(err, LifecycleError):
            record.rejected(settings, cid, "create", err, {"bundle": bundle})
        statedir.remove()
        _report(report_fd, f"error {err}")
        return
    except BaseException as err:
        statedir.remove()
        _report(report_fd, f"error container {cid}: {type(err).__name__}: {err}")
        return
    container.write_state(Status.CREATED)
    container.write_runtime(os.getpid())
    server = _Server(service, container, statedir)
    assert container.pid is not None
    _report(report_fd, f"ok {container.pid}")
    # The container keeps create's stdio (runc passes it through); the
    # monitor lets go of it, so a caller reading create's output sees EOF
    # when the container closes it.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    server.serve()


class _Server:
    def __init__(self, service: Service, container: Container, statedir: StateDir) -> None:
        self.service = service
        self.container = container
        self.statedir = statedir
        self.me = Actor(os.getuid(), os.getpid(), Transport.MONITOR)
        path = statedir.file(CONTROL)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600: the owner and root only
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chown(path, container.owner, -1)
        self.sock.listen(16)
        self.waiters: list[socket.socket] = []
        self.deleted = False
        assert container.pid is not None
        self.pidfd: int | None = os.pidfd_open(container.pid)

    # -- the loop ------------------------------------------------------

    def serve(self) -> None:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        assert self.pidfd is not None
        poller.register(self.pidfd, select.POLLIN)
        while not self.deleted:
            for fd, _events in poller.poll():
                if fd == self.pidfd:
                    poller.unregister(fd)
                    self._exited()
                elif fd == self.sock.fileno():
                    conn, _ = self.sock.accept()
                    with conn:
                        self._serve_one(conn)
        self.sock.close()

    def _exited(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.container.reap(block=True)
        try:
            self.service.request(self.container.id, "exit", self.me)
        except RunlogError:
            pass  # recorded as rejected/failed; the status is kept all the same
        self.container.write_state(Status.STOPPED)
        for conn in self.waiters:
            with conn:
                self._reply(conn, {"ok": True, "exit": self.container.exit})
        self.waiters.clear()

    # -- one request -----------------------------------------------------

    def _serve_one(self, conn: socket.socket) -> None:
        uid, pid = self._peer(conn)
        actor = Actor(uid, pid, Transport.SOCKET)
        try:
            request = self._read(conn)
            reply = self._dispatch(conn, request, actor)
        except RunlogError as err:
            reply = {"ok": False, "error": str(err), "exit_code": err.exit_code}
        if reply is not None:
            self._reply(conn, reply)

    def _peer(self, conn: socket.socket) -> tuple[int, int]:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _SO_PEERCRED.size)
        pid, uid, _gid = _SO_PEERCRED.unpack(raw)
        return uid, pid

    def _read(self, conn: socket.socket) -> dict[str, Any]:
        conn.settimeout(5)
        data = bytearray()
        while len(data) <= MAX_REQUEST:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
        if len(data) > MAX_REQUEST:
            raise RunlogError(f"request larger than {MAX_REQUEST} bytes")
        try:
            request = jsonfast.loads(bytes(data))
        except (jsonfast.JSONError, UnicodeDecodeError) as err:
            raise RunlogError(f"malformed request: {err}") from err
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise RunlogError('malformed request: expected {"op": ...}')
        return request

    def _reply(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.sendall((jsonfast.dumps(reply) + "\n").encode())
        except OSError:
            pass  # the client went away; the event is recorded all the same

    def _state(self) -> dict[str, Any]:
        raw = self.statedir.read("state.json")
        state: dict[str, Any] = jsonfast.loads(raw)
        return state

    def _dispatch(
        self, conn: socket.socket, request: dict[str, Any], actor: Actor
    ) -> dict[str, Any] | None:
        op = request["op"]
        cid = self.container.id
        if op == "state":
            return {"ok": True, "state": self._state()}
        if op == "wait":
            if self.container.exit is not None:
                return {"ok": True, "exit": self.container.exit}
            self.waiters.append(conn.dup())
            return None
        if op in ("start", "pause", "resume"):
            event = self.service.request(cid, op, actor)
            assert event.dest is not None
            self.container.write_state(event.dest)
            return {"ok": True, "state": self._state()}
        if op == "kill":
            signo = request.get("signal", signal.SIGTERM)
            args = {"signal": signo, "all": bool(request.get("all", False))}
            self.service.request(cid, "kill", actor, args)
            return {"ok": True}
        if op == "delete":
            return self._delete(actor, bool(request.get("force", False)))
        raise RunlogError(f"unknown request {op!r}")

    def _delete(self, actor: Actor, force: bool) -> dict[str, Any]:
        cid = self.container.id
        if force and self.container.exit is None:
            # delete --force: kill everything, wait for the init, then delete.
            self.service.request(cid, "kill", actor, {"signal": signal.SIGKILL, "all": True})
            self._exited()
        elif self.container.exit is None and self.container.reap(block=False):
            self._exited()
        self.service.request(cid, "delete", actor)
        self.deleted = True
        return {"ok": True}
