"""The per-container monitor: parent of the init, keeper of its state, server of requests.

``runlog create`` forks the monitor as soon as its command line is read
(:mod:`engine.runtime.prefork`); the monitor, in a new session, imports
this module - its imports are the monitor's, never ``create``'s - while
``create`` claims the state directory (:mod:`engine.runtime.launch`),
and then :func:`run` runs the machine's ``create`` trigger (cgroup, init,
hooks) and reports ``ok PID`` or the error on a pipe that ``create`` reads. Then it lives until
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

import gc
import os

from engine import codecache
from engine.actions.registry import REGISTRY
from engine.errors import LifecycleError, RunlogError
from engine.eventlog import open_store
from engine.linux import lsm, syscalls
from engine.machine.definition import load, resolve
from engine.machine.runtime import Lifecycle
from engine.oci.config import load_bundle
from engine.runtime import record, rootfs
from engine.runtime.container import Container
from engine.runtime.launch import init_parent, report
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

    from engine.eventlog.store import EventStore
    from engine.oci.model import Config
    from engine.runtime.dispatch import Dispatcher
    from engine.runtime.server import Server
    from engine.runtime.statedir import StateDir
    from engine.runtime.streams import LogFile
    from engine.runtime.watcher import Watcher

__all__ = ["run"]


def run(
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
        config = _checked_config(bundle, cid, options)
        console_socket = options["console_socket"]
        log_path = options["log_path"]
        caller_reaps = init_parent(options) == "caller"
        if not caller_reaps:
            # The init is the monitor's child, or its first stage's, which
            # exits once it has forked it: the init comes to the monitor,
            # which reaps it and keeps its status.
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
            caller_reaps=caller_reaps,
        )
        log = None
        if log_path:
            # Only with --log-path: the streams' module (and socket) load then.
            from engine.runtime.streams import LogFile

            log = LogFile(log_path, options["log_format"], actor.uid or 0)
        service = Service(store, Lifecycle(definition, REGISTRY), lambda _cid: container.drivers())
        watcher, given_up = _watcher()
        sock, dispatcher = _create(service, container, actor, given_up)
    except RunlogError as err:
        if not isinstance(err, LifecycleError):
            record.rejected(settings, cid, "create", err, {"bundle": bundle})
        statedir.remove()
        report(report_fd, f"error {err}")
        return
    except BaseException as err:
        statedir.remove()
        report(report_fd, f"error container {cid}: {type(err).__name__}: {err}")
        return
    try:
        server = _server(dispatcher, statedir, sock, log, watcher)
        container.write_state(Status.CREATED)
        container.write_runtime(os.getpid())
    except BaseException as err:
        # Created, but not to be served: undone, and the undoing recorded.
        try:
            dispatcher.abandon(dispatcher.me)
        except BaseException:
            pass
        statedir.remove()
        report(report_fd, f"error container {cid}: cannot serve it: {type(err).__name__}: {err}")
        return
    assert container.pid is not None
    report(report_fd, f"ok {container.pid}" + (f" {given_up}" if given_up else ""))
    _settle(store)
    # The container keeps create's stdio (runc passes it through), unless
    # the monitor keeps its streams (--log-path); the monitor lets go of
    # create's, so a caller reading create's output sees EOF when the
    # container closes it - at once with --log-path.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    server.serve()


def _settle(store: EventStore) -> None:
    """Once create has reported. The code file has served its imports (what
    the monitor imports later is not in it): it is closed. What
    the monitor's code and the create made stays until it exits: later
    passes of the collector leave it alone, and the processes the monitor
    forks (hooks) do not copy its pages to mark it (engine.runtime.prefork
    turned the collector off until now). The event log's write-ahead log
    is checkpointed while create's caller goes on: the next process to
    open the log alone reads what is left of it."""
    codecache.release()
    gc.freeze()
    gc.enable()
    store.checkpoint()


def _checked_config(bundle: str, cid: str, options: dict[str, Any]) -> Config:
    """config.json, and what create refuses before anything is made."""
    config = load_bundle(bundle)
    lsm.refuse_labels(config)
    rootfs.check_no_pivot(config, bool(options["no_pivot"]))
    console_socket, log_path = options["console_socket"], options["log_path"]
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
    return config


def _watcher() -> tuple[Watcher | None, str | None]:
    """The monitor's inotify instance, or None and what is given up without
    one (the per-user limit, fs.inotify.max_user_instances, is reached)."""
    from engine.runtime.watcher import Watcher

    try:
        return Watcher(), None
    except OSError as err:
        return None, _looked_at(["the request spool", "the freezer"], err.strerror or str(err))


def _looked_at(what: list[str], why: str) -> str:
    from engine.runtime.server import POLL

    return (
        f"{' and '.join(what)} looked at every {POLL:g}s, not watched "
        f"(inotify: {why}; see fs.inotify.max_user_instances)"
    )


def _create(
    service: Service, container: Container, actor: Actor, given_up: str | None
) -> tuple[_socket.socket, Dispatcher]:
    """Run the machine's ``create``; return control.sock and the
    dispatcher, made while the init sets itself up (the monitor would only
    wait) and before state.json says "created" (a client that sees that can
    connect). If they cannot be made, the spawn fails. What the monitor
    gives up (``given_up``) is in the create event (``given_up``)."""
    made: list[tuple[_socket.socket, Dispatcher]] = []

    def meanwhile() -> None:
        made.append(_loop(service, container))

    container.meanwhile = meanwhile
    try:
        args = {"bundle": container.config.bundle}
        if given_up:
            args["given_up"] = given_up
        service.request(container.id, "create", actor, args)
    finally:
        container.meanwhile = None
    # A machine whose create spawns nothing has no init to wait for.
    return made[0] if made else _loop(service, container)


def _loop(service: Service, container: Container) -> tuple[_socket.socket, Dispatcher]:
    """control.sock and the dispatcher; the loop's modules load here."""
    from engine.runtime.dispatch import Dispatcher
    from engine.runtime.server import listen

    return listen(container.statedir, container.owner), Dispatcher(service, container)


def _server(
    dispatcher: Dispatcher,
    statedir: StateDir,
    sock: _socket.socket,
    log: LogFile | None,
    watcher: Watcher | None,
) -> Server:
    """The loop, with the container's streams when the monitor keeps them."""
    from engine.runtime.server import Server

    if log is None:
        return Server(dispatcher, statedir, sock, watcher=watcher)
    from engine.runtime.streams import Streams

    container = dispatcher.container
    streams = None
    if container.stdio is not None:
        streams = Streams(log, *container.stdio, statedir, container.owner)
        dispatcher.log = streams
    elif container.pty is not None:
        streams = Streams.terminal(log, container.pty, statedir, container.owner)
        dispatcher.log = dispatcher.terminal = streams
    return Server(dispatcher, statedir, sock, streams, watcher)
