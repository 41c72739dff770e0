"""The per-container monitor: parent of the init, keeper of its state, server of requests.

``runlog create`` forks the monitor as soon as its command line is read
(:mod:`engine.runtime.cli.prefork`); the monitor, in a new session, imports
this module - its imports are the monitor's, never ``create``'s - while
``create`` claims the state directory (:mod:`engine.runtime.cli.launch`),
and once told what to create (:func:`serve`), :func:`run` runs the
machine's ``create`` trigger (cgroup, init, hooks) and reports ``ok PID``
or the error on a pipe that ``create`` reads. Then it lives until
``delete``, in one thread and one poll loop (:mod:`engine.runtime.monitor.server`):
it reaps the init and records ``exit`` with the
code or signal, keeps ``state.json`` current, and serves ``control.sock``
and the request spool (``requests/``), both through one
:class:`engine.runtime.monitor.dispatch.Dispatcher`. With ``--log-path`` it also
keeps the container's stdio: the log and ``attach.sock``
(:mod:`engine.runtime.monitor.streams`).
"""

from __future__ import annotations

import gc
import os
import time

from engine import codecache, jsonfast
from engine.actions.registry import REGISTRY
from engine.errors import EventLogError, LifecycleError, RunlogError
from engine.eventlog import open_store
from engine.frozen import replace
from engine.identity import from_annotations
from engine.linux import lsm, syscalls
from engine.machine.definition import load, resolve
from engine.machine.runtime import Lifecycle
from engine.machine.vocabulary import CREATE
from engine.oci.config import load_bundle
from engine.runtime.init import rootfs
from engine.runtime.monitor.container import Container
from engine.runtime.shared.journal import JOURNAL, Journal
from engine.runtime.shared.statedir import StateDir
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

    from engine.eventlog.record import Event
    from engine.eventlog.store import EventStore
    from engine.machine.definition import MachineDefinition
    from engine.oci.model import Config
    from engine.runtime.monitor.dispatch import Dispatcher
    from engine.runtime.monitor.server import Server
    from engine.runtime.monitor.streams import LogFile
    from engine.runtime.shared.watcher import Watcher

__all__ = ["init_parent", "report", "run", "serve"]


def serve(line: bytes, report_fd: int, intermediate: int, console: int | None = None) -> None:
    """The monitor, told what to create (one line from ``create``,
    :mod:`engine.runtime.cli.prefork`): create it and serve it. ``console``:
    a foreground run's socket for the pty master, received with the line."""
    request = jsonfast.loads(line)
    settings = Settings(**request["settings"])
    statedir = StateDir(settings.root, request["id"])
    options = {**request["options"], "intermediate": intermediate}
    actor = Actor(**request["actor"])
    if console is not None:
        os.set_inheritable(console, False)
        if not options.get("console"):
            os.close(console)
            console = None
    run(settings, statedir, request["bundle"], options, actor, report_fd, console)


def run(
    settings: Settings,
    statedir: StateDir,
    bundle: str,
    options: dict[str, Any],
    actor: Actor,
    report_fd: int,
    console: int | None = None,
) -> None:
    """Create the container, then serve it until delete. Runs in the monitor."""
    cid = statedir.id
    try:
        config = _checked_config(bundle, cid, options, console is not None, settings.no_cgroup())
        console_socket = options["console_socket"]
        log_path = options["log_path"]
        caller_reaps = init_parent(options) == "caller"
        if not caller_reaps:
            # The init is the monitor's child, or the intermediate's, which
            # exits once it has forked it: the init comes to the monitor,
            # which reaps it and keeps its status.
            syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        definition, store = _machine_and_log(settings, cid, config)
        container = Container(
            statedir,
            config,
            systemd_cgroup=settings.systemd_cgroup,
            rootless=settings.is_rootless(),
            no_cgroup=settings.no_cgroup(),
            no_pivot=options["no_pivot"],
            console_socket=os.path.abspath(console_socket) if console_socket else None,
            preserve_fds=options["preserve_fds"] + options.get("listen_fds", 0),
            owner=actor.uid or 0,
            capture=bool(log_path),
            caller_reaps=caller_reaps,
            console_fd=_pty_socket(config, console),
        )
        container.restore = options.get("restore")
        # Before anything is made: whoever finds this create dead finds
        # its monitor and cgroups by the id (engine.runtime.cli.remains).
        container.write_runtime(os.getpid())
        log = None
        if log_path:
            # Only with --log-path: the streams' module (and socket) load then.
            from engine.runtime.monitor.streams import LogFile

            log = LogFile(log_path, options["log_format"], actor.uid or 0)
        service = Service(store, Lifecycle(definition, REGISTRY), lambda _cid: container.drivers())
        service.journal = Journal(statedir.file(JOURNAL))
        watcher, given_up = _watcher()
        created, sock, dispatcher = _create(service, container, actor, given_up)
        _let_go_of_inherited()
    except RunlogError as err:
        _refused(settings, cid, err, bundle, options.get("restore"))
        statedir.remove()
        report(report_fd, f"error {err}")
        return
    except BaseException as err:
        statedir.remove()
        report(report_fd, f"error container {cid}: {type(err).__name__}: {err}")
        return
    try:
        # state.json from create's event; every later event's through the
        # service, the one writer from here on.
        container.project(created)
        service.project = container.project
        server = _server(dispatcher, statedir, sock, log, watcher)
        _told(server, settings)
        container.runtime_names_init(os.getpid())
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
    _settle(store, server, settings)
    # The container keeps create's stdio (runc passes it through), unless
    # the monitor keeps its streams (--log-path); the monitor lets go of
    # create's, so a caller reading create's output sees EOF when the
    # container closes it - at once with --log-path.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    server.serve()


def _let_go_of_inherited() -> None:
    """Close what create's caller passed beyond stdio (a lock, a pipe, the
    ``--preserve-fds``), now that the init holds its own copies of what it
    keeps: runc's create exits and its init keeps only those, so a caller
    waiting for EOF on a pipe it gave create, or for a lock, is not held by
    the monitor until delete. The caller's descriptors are those without
    close-on-exec: every one runlog opens itself has it (Python's default,
    SQLite's, pidfds, inotify). Stdio is let go after the report (:func:`run`)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3:
            continue
        try:
            if not os.get_inheritable(fd):
                continue
            os.close(fd)
        except OSError:
            continue  # the listing's own descriptor, gone with it


def init_parent(options: dict[str, Any]) -> str:
    """``monitor`` or ``caller``: who reaps the init (see the module's
    docstring). Run in the monitor; ``auto`` waits for the intermediate
    process's exit to have re-parented it."""
    chosen = str(options["init_parent"])
    if chosen != "auto":
        return chosen
    caller = int(options["caller"])
    if caller <= 1:
        return "monitor"  # pid 1 adopts every orphan: no sign of a supervisor
    deadline = time.monotonic() + 1.0
    while os.getppid() == options["intermediate"] and time.monotonic() < deadline:
        time.sleep(0.0002)
    # runc's rule: the init goes to the nearest child subreaper above the
    # caller - the caller itself, or one further up (conmon, when a wrapper
    # script runs runlog without exec). pid 1 (0: a parent outside this pid
    # namespace) adopts every orphan: then there is none, and the monitor keeps it.
    return "monitor" if os.getppid() in (0, 1) else "caller"


def report(fd: int, text: str) -> None:
    """Write the one-line report ``create`` waits for, and close the pipe.

    A ``create`` that died meanwhile (killed, its terminal closed) reads
    nothing: the report is dropped, and the monitor goes on as it would
    have - a created container is served all the same, for whoever comes
    next to start or delete, and the log has its events."""
    data = (text.replace("\n", " ") + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _refused(
    settings: Settings, cid: str, err: RunlogError, bundle: str, restore: Any = None
) -> None:
    """Record a create (or restore) refused before the machine was asked
    (the service recorded the rest), unless the log itself is what refused."""
    if isinstance(err, (LifecycleError, EventLogError)):
        return
    from engine.runtime.shared import record  # only on this path

    try:
        trigger = "restore" if restore else CREATE
        record.rejected(settings, cid, trigger, err, {"bundle": bundle, **(restore or {})})
    except RunlogError:
        pass  # the log refuses it too: the error create reports is the record


def _settle(store: EventStore, server: Server, settings: Settings) -> None:
    """Once create has reported. The code file has served its imports (what
    the monitor imports later is not in it): it is closed. What
    the monitor's code and the create made stays until it exits: later
    passes of the collector leave it alone, and the processes the monitor
    forks (hooks) do not copy its pages to mark it (engine.runtime.cli.prefork
    turned the collector off until now). The event log's write-ahead log
    is checkpointed while create's caller goes on: the next process to
    open the log alone reads what is left of it."""
    codecache.release()
    gc.freeze()
    gc.enable()
    store.checkpoint()
    # Idle long enough, the monitor rests as a lean process
    # (engine.runtime.monitor.lean), after the seconds create resolved
    # (the variable, else the site configuration: Settings.monitor_rest); one that
    # keeps the container's streams never does.
    server.rest_with = _rest
    server.lean_after = None if server.streams is not None else settings.rest_after()


def _rest(server: Server) -> str | None:
    """Rest (engine.runtime.monitor.handover), imported when the monitor
    rests: its modules (pickle, socket, typing: about 11 ms here) imported
    right after create's report kept the monitor from the next request -
    a scheduler's ``start``, 5 ms later - for as long (docs/performance.md).
    If it cannot be imported now (runlog upgraded halfway), the monitor stays
    awake, as when the exec fails."""
    try:
        from engine.runtime.monitor.handover import rest
    except Exception:
        return None
    return rest(server)


def _checked_config(
    bundle: str, cid: str, options: dict[str, Any], console: bool = False, no_cgroup: bool = False
) -> Config:
    """config.json, and what create refuses before anything is made."""
    config = load_bundle(bundle)
    pid_ns = config.linux.namespace("pid")
    if no_cgroup and (pid_ns is None or pid_ns.path):
        # Without a cgroup the container's processes are found through its
        # init alone: killing it must end them all, as it does in a pid
        # namespace of the container's own.
        raise RunlogError(
            f"container {cid}: --cgroup-manager=disabled needs a new pid namespace "
            "(linux.namespaces: pid, without a path): with no cgroup of its own, the "
            "container's processes are ended through its init"
        )
    if os.geteuid() != 0 and config.linux.namespace("user") is None:
        # runc's words: not root, the init can do nothing of what a
        # container needs without a user namespace of its own.
        raise RunlogError(
            f"container {cid}: rootless container requires user namespaces "
            f"(runlog runs as uid {os.geteuid()}; `runlog spec --rootless` writes a config "
            "with one)"
        )
    lsm.refuse_labels(config)
    rootfs.check_no_pivot(config, bool(options["no_pivot"]))
    rootfs.check_root_path(config)
    console_socket, log_path = options["console_socket"], options["log_path"]
    if log_path and config.process.terminal and console_socket:
        raise RunlogError(
            f"container {cid}: --log-path and --console-socket: the terminal goes to "
            "one of them; give one"
        )
    if config.process.terminal and not (console_socket or log_path or console):
        # runc's words, at create time, before anything is made.
        raise RunlogError(
            "cannot allocate tty if runlog will detach without setting console socket"
        )
    if options.get("pipes"):
        from engine.runtime.cli.foreground import own_pipes

        own_pipes(config)  # a foreground run's stdio, given as runc gives them
    return _socket_activated(config, int(options.get("listen_fds", 0)))


def _pty_socket(config: Config, console: int | None) -> int | None:
    """A foreground run's socket for the pty master, for a terminal; without
    one it is closed (run hears its end)."""
    if console is not None and not config.process.terminal:
        os.close(console)
        return None
    return console


def _socket_activated(config: Config, count: int) -> Config:
    """With ``count`` descriptors from socket activation (create's fds 3 to
    3+count-1, given to the init ahead of ``--preserve-fds``), the
    process's environment says so, as runc's: ``LISTEN_FDS=count`` and
    ``LISTEN_PID=1`` after the config's own entries, which they override."""
    if count <= 0:
        return config
    env = (*config.process.env, f"LISTEN_FDS={count}", "LISTEN_PID=1")
    return replace(config, process=replace(config.process, env=env))


def _machine_and_log(
    settings: Settings, cid: str, config: Config
) -> tuple[MachineDefinition, EventStore]:
    """The machine in force and the event log, whose every event of this
    life names its root and podman's identity."""
    cache = settings.cache_dir()
    machines = None if cache is None else os.path.join(cache, "machines")
    definition = load(resolve(settings.machine, {}), cache=machines)
    store = open_store(settings.db, group=settings.log_group)
    store.stamp(os.path.abspath(settings.root), from_annotations(cid, config.annotations))
    return definition, store


def _watcher() -> tuple[Watcher | None, str | None]:
    """The monitor's inotify instance, or None and what is given up without
    one (the per-user limit, fs.inotify.max_user_instances, is reached)."""
    from engine.runtime.shared.watcher import Watcher

    try:
        return Watcher(), None
    except OSError as err:
        return None, _looked_at(["the request spool", "the freezer"], err)


def _looked_at(what: list[str], err: OSError) -> str:
    from engine.runtime.monitor.server import looked_at

    return looked_at(what, err)


def _create(
    service: Service, container: Container, actor: Actor, given_up: str | None
) -> tuple[Event, _socket.socket, Dispatcher]:
    """Run the machine's ``create``; return control.sock and the
    dispatcher, made while the init sets itself up (the monitor would only
    wait) and before state.json says "created" (a client that sees that can
    connect). If they cannot be made, the spawn fails. What the monitor
    gives up (``given_up``) is in the create event (``given_up``)."""
    made: list[tuple[_socket.socket, Dispatcher]] = []

    def meanwhile(init_pid: int | None) -> None:
        made.append(_loop(service, container))
        if init_pid is not None:
            # runtime.json names the init now, while it sets itself up,
            # rather than after create's synced commit, where a new file in
            # the state directory waits for the journal (docs/performance.md).
            container.write_runtime(os.getpid(), init_pid)

    container.meanwhile = meanwhile
    try:
        args = {"bundle": container.config.bundle}
        if given_up:
            args["given_up"] = given_up
        # runlog restore: the same monitor, CRIU's tree for the init.
        restore = container.restore
        args.update(restore or {})
        event = service.request(container.id, "restore" if restore else CREATE, actor, args)
    finally:
        container.meanwhile = None
    # A machine whose create spawns nothing has no init to wait for.
    return (event, *(made[0] if made else _loop(service, container)))


def _loop(service: Service, container: Container) -> tuple[_socket.socket, Dispatcher]:
    """control.sock and the dispatcher; the loop's modules load here."""
    from engine.runtime.monitor.dispatch import Dispatcher
    from engine.runtime.monitor.server import listen

    return listen(container.statedir, container.owner), Dispatcher(service, container)


def _told(server: Server, settings: Settings) -> None:
    """What the loop is told of runlog's settings: its ``--log``, where it
    says what it gives up, and the event log a monitor woken from its rest
    opens again."""
    server.runtime_log = (settings.log, settings.log_format)
    server.log_place = (settings.db, settings.log_group)


def _server(
    dispatcher: Dispatcher,
    statedir: StateDir,
    sock: _socket.socket,
    log: LogFile | None,
    watcher: Watcher | None,
) -> Server:
    """The loop, with the container's streams when the monitor keeps them."""
    from engine.runtime.monitor.server import Server

    if log is None:
        return Server(dispatcher, statedir, sock, watcher=watcher)
    from engine.runtime.monitor.streams import Streams

    container = dispatcher.container
    streams = None
    if container.stdio is not None:
        streams = Streams(log, *container.stdio, statedir, container.owner)
        dispatcher.log = streams
    elif container.pty is not None:
        streams = Streams.terminal(log, container.pty, statedir, container.owner)
        dispatcher.log = dispatcher.terminal = streams
    return Server(dispatcher, statedir, sock, streams, watcher)
