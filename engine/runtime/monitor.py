"""The per-container monitor: parent of the init, keeper of its state, server of requests.

``runlog create`` claims the state directory (and its request spool) and
forks; the child starts a new session and forks the monitor (a double fork:
the monitor belongs to no terminal and outlives ``create``). The monitor
runs the machine's ``create`` trigger - cgroup, init, hooks - and reports
``ok PID`` or the error on a pipe that ``create`` reads. Then it lives until
``delete``, in one thread and one poll loop (:mod:`engine.runtime.server`;
the shape of Apptainer's OCI engine, ``handleControl``, with the machine
and the log made explicit): it reaps the init and records ``exit`` with the
code or signal, keeps ``state.json`` current, and serves ``control.sock``
and the request spool (``requests/``), both through one
:class:`engine.runtime.dispatch.Dispatcher`. With ``--log-path`` it also
keeps the container's stdio: the log and ``attach.sock``
(:mod:`engine.runtime.streams`).
"""

from __future__ import annotations

import os
from typing import Any

from engine.actions.registry import REGISTRY
from engine.errors import LifecycleError, RunlogError
from engine.eventlog import open_store
from engine.linux import syscalls
from engine.machine.definition import load, resolve
from engine.machine.runtime import Lifecycle
from engine.oci.config import load_bundle
from engine.runtime import record
from engine.runtime.container import Container
from engine.runtime.dispatch import Dispatcher
from engine.runtime.server import Server
from engine.runtime.spool import REQUESTS, Spool
from engine.runtime.statedir import StateDir
from engine.runtime.streams import LogFile, Streams
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor, Status

__all__ = ["launch"]


def launch(
    settings: Settings,
    container_id: str,
    bundle: str,
    *,
    no_pivot: bool = False,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    log_path: str | None = None,
    log_format: str = "basic",
    actor: Actor,
) -> int:
    """Start a monitor that creates the container; return the init's pid."""
    statedir = StateDir(settings.root, container_id)
    try:
        statedir.create()
    except LifecycleError as err:
        record.rejected(settings, container_id, "create", err, {"bundle": bundle})
        raise
    # The spool exists as soon as the container's directory does: a request
    # dropped during create waits there until the monitor serves.
    try:
        Spool(statedir.file(REQUESTS)).make(actor.uid or 0)
    except OSError as err:
        statedir.remove()
        raise RunlogError(f"container {container_id}: request spool: {err.strerror}") from err
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
                    "log_path": log_path,
                    "log_format": log_format,
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
        log_path = options["log_path"]
        if log_path and config.process.terminal and console_socket:
            raise RunlogError(
                f"container {cid}: --log-path and --console-socket: the terminal goes to "
                "one of them; give one"
            )
        if config.process.terminal and not console_socket and not log_path:
            # runc's words, at create time, before anything is made.
            raise RunlogError(
                "cannot allocate tty if runlog will detach without setting console socket"
            )
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        cache = settings.cache_dir()
        machines = None if cache is None else os.path.join(cache, "machines")
        definition = load(resolve(settings.machine, {}), cache=machines)
        store = open_store(settings.db)
        container = Container(
            statedir,
            config,
            systemd_cgroup=settings.systemd_cgroup,
            no_pivot=options["no_pivot"],
            console_socket=os.path.abspath(console_socket) if console_socket else None,
            preserve_fds=options["preserve_fds"],
            owner=actor.uid or 0,
            capture=bool(log_path),
        )
        log = LogFile(log_path, options["log_format"], actor.uid or 0) if log_path else None
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
    # Listen before state.json says "created": a client that sees it can connect.
    dispatcher = Dispatcher(service, container)
    streams = None
    if log is not None and container.stdio is not None:
        streams = Streams(log, *container.stdio, statedir, container.owner)
        dispatcher.log = streams
    elif log is not None and container.pty is not None:
        streams = Streams.terminal(log, container.pty, statedir, container.owner)
        dispatcher.log = dispatcher.terminal = streams
    server = Server(dispatcher, statedir, streams)
    container.write_state(Status.CREATED)
    container.write_runtime(os.getpid())
    assert container.pid is not None
    _report(report_fd, f"ok {container.pid}")
    # The container keeps create's stdio (runc passes it through), unless
    # the monitor keeps its streams (--log-path); the monitor lets go of
    # create's, so a caller reading create's output sees EOF when the
    # container closes it - at once with --log-path.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    server.serve()
