"""When a container's monitor is gone: the same service, with drivers that need no monitor.

The monitor is the init's parent and the only one who learns its exit
status; if it was killed, the status is lost. The CLI then runs the
request through :class:`engine.service.Service` as the monitor would -
refresh, guard, act, record, project - with drivers built from what is
left: ``runtime.json`` (the init's pid with its start time, against pid
reuse; the cgroup's paths), the bundle's ``config.json`` (its hooks) and the
state directory. So the init's end is the machine's ``exit``, a freezer
written by hand its ``pause`` or ``resume``, and a delete its ``delete``
with every action (the cgroup removed, poststop hooks run, the state
directory removed) - or its refusal, recorded in the state the container
is in. crun computes the status on read the same way.

Only ``state``, ``kill`` and ``delete`` are served: a created container's
init waits for its monitor to release it, and nobody would reap a running
one. ``kill`` signals the init (its pid checked against its start time) or,
with ``--all``, the processes of its cgroup, as runc's kill does after the
``runc run`` that started the container was killed: a scheduler that
killed the monitor with the job's other processes (Slurm's
``proctrack/cgroup``) stops the container with its ``RunTimeKill``. Every
other request is refused, and recorded so.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from engine import faults, jsonfast, wire
from engine.actions.base import Drivers
from engine.actions.registry import REGISTRY
from engine.errors import (
    ActionError,
    ContainerNotFound,
    LifecycleError,
    MonitorBusy,
    RunlogError,
)
from engine.eventlog import open_store
from engine.machine import vocabulary
from engine.machine.definition import load, resolve
from engine.machine.runtime import Lifecycle
from engine.oci import gojson
from engine.oci.state import hook_state
from engine.runtime.monitor.hooks import HookRunner
from engine.runtime.shared.journal import JOURNAL, Journal
from engine.runtime.shared.statedir import CONTROL, RELEASED, STATE, StateDir, alive
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor, Status, Transport

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from contextlib import AbstractContextManager
    from typing import Any

    from engine.cgroups import CgroupManager
    from engine.eventlog.record import Event

__all__ = ["handle", "state"]

#: How long delete --force waits for a killed container's processes.
_GONE_TIMEOUT = 5.0
#: How long ``state`` lets a freezer that is still freezing settle.
_SETTLE = 1.0
#: What names one container's monitor and init in runtime.json.
_IDENTITY = ("monitor_pid", "monitor_start", "init_pid", "init_start", "created_ns")


class MonitorLost(LifecycleError):
    def __init__(self, container_id: str, trigger: str) -> None:
        super().__init__(
            container_id,
            f"{trigger} {container_id}: the container's monitor is gone (exit status lost); "
            f"only delete works now",
        )


# -- drivers that need no monitor ---------------------------------------------


class _World:
    """What is left of one container: runtime.json, its cgroup, its config."""

    def __init__(self, statedir: StateDir) -> None:
        self.statedir = statedir
        self.info = statedir.runtime()
        paths = self.info.get("cgroup_paths") or {}
        self.manager: CgroupManager | None = None
        if paths:
            from engine.cgroups import manager_at

            self.manager = manager_at(paths)
        self._config: Any = None
        self._config_error: str | None = None

    def monitor_gone(self) -> bool:
        """Whether the monitor this world was read for has ended, as
        runtime.json says it *now*: the same monitor (a create since then
        wrote its own) that no longer runs. Until then nothing is
        reconciled around it: a monitor that has not written runtime.json
        yet (a create under way) or has not begun to serve is not gone, and
        a runtime.json read before another create of the same id describes
        another container. Asked after the log is read, so that what the
        log shows is this monitor's container's."""
        try:
            now = self.statedir.runtime()
        except ContainerNotFound:
            return False  # removed meanwhile (deleted): nothing of it to reconcile
        if any(now.get(key) != self.info.get(key) for key in _IDENTITY):
            return False
        return isinstance(now.get("monitor_pid"), int) and not alive(now, "monitor")

    def init_alive(self) -> bool:
        """The init runs: its pid with its start time, and not a zombie
        (its new parent reaps it when it will; it has ended all the same)."""
        return alive(self.info, "init") and not _zombie(self.info["init_pid"])

    def exec_done(self) -> bool:
        """A start released the init to exec the user's process: the
        monitor's sign of it (``released``, made before the start's hooks),
        or, for a monitor killed before it made it, an init that lives and
        no longer runs the interpreter its monitor ran (runtime.json's
        ``init_exe``; an init that was never released ends when its
        monitor does). Without the sign, a container whose program is that
        very file is not told apart: its start stays unrecorded."""
        if os.path.exists(self.statedir.file(RELEASED)):
            return True
        identity = self.info.get("init_exe")
        if not isinstance(identity, str) or not self.init_alive():
            return False
        try:
            st = os.stat(f"/proc/{self.info['init_pid']}/exe")
        except OSError:
            return False
        return f"{st.st_dev}:{st.st_ino}" != identity and self.init_alive()

    def pids(self) -> list[int]:
        if self.manager is not None and self.manager.exists():
            return self.manager.pids()
        pid = self.info.get("init_pid")
        return [pid] if isinstance(pid, int) and self.init_alive() else []

    def freezer(self) -> str | None:
        if self.manager is None:
            return None
        try:
            return self.manager.freezer_state()
        except RunlogError:
            return None

    def config(self) -> Any:
        """The bundle's config (for its hooks and annotations), or None if
        it no longer loads (``_config_error`` says why)."""
        if self._config is None and self._config_error is None:
            from engine.oci.config import load_bundle

            try:
                self._config = load_bundle(str(self.info.get("bundle") or ""))
            except RunlogError as err:
                self._config_error = str(err)
        return self._config

    def drivers(self) -> Drivers:
        return Drivers(_Process(self), _Hooks(self), _Cgroups(self), _State(self))


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] in (b"Z", b"X")


def _no_monitor(what: str) -> ActionError:
    return ActionError(f"{what} needs the container's monitor, which is gone")


class _Process:
    def __init__(self, world: _World) -> None:
        self.w = world

    def spawn_init(self) -> dict[str, Any]:
        raise _no_monitor("spawning the init")

    def release(self) -> dict[str, Any]:
        raise _no_monitor("releasing the init")

    def confirm_exec(self) -> dict[str, Any]:
        if not self.w.exec_done():
            raise ActionError("the init has not exec'd the user process")
        return {"pid": self.w.info["init_pid"]}

    def checkpoint(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        raise _no_monitor("a checkpoint")

    def restore(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        raise _no_monitor("a restore")

    def signal(self, signo: int, all_processes: bool) -> dict[str, Any]:
        w = self.w
        if not w.init_alive():
            raise ActionError("container not running")
        targets = w.pids() if all_processes else [int(w.info["init_pid"])]
        for pid in targets:
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                continue
        if signo == signal.SIGKILL and w.manager is not None and w.freezer() != "thawed":
            w.manager.thaw()  # a frozen v1 task does not die until thawed
        return {"signal": signo, "all": all_processes, "pids": targets}

    def kill_init(self) -> None:
        for pid in self.w.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def exit_status(self) -> dict[str, Any] | None:
        # The service asks once it has read the log: only a container
        # whose monitor is gone for good has an end nobody else records.
        if self.w.init_alive() or not self.w.monitor_gone():
            return None
        return {"lost": "the monitor is gone, and the init's exit status with it"}


class _Hooks:
    def __init__(self, world: _World) -> None:
        self.w = world

    def run(
        self, point: str, state: Mapping[str, Any], *, keep_going: bool = False
    ) -> list[dict[str, Any]]:
        config = self.w.config()
        if config is None:
            raise ActionError(f"{point} hooks: the bundle's config: {self.w._config_error}")
        return HookRunner(config.hooks, lambda: None).run(point, state, keep_going=keep_going)


class _Cgroups:
    def __init__(self, world: _World) -> None:
        self.w = world

    def create(self) -> dict[str, Any]:
        raise _no_monitor("creating the cgroup")

    def update(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        raise _no_monitor("updating the cgroup")

    def destroy(self) -> None:
        manager = self.w.manager
        if manager is None:
            return
        # The init's end ends its pid namespace; what is left goes as it
        # dies (or was never in one): wait for it, a little.
        deadline = time.monotonic() + _GONE_TIMEOUT
        while True:
            try:
                manager.destroy()
                return
            except RunlogError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def freeze(self) -> None:
        if self.w.manager is not None:
            self.w.manager.freeze()

    def thaw(self) -> None:
        if self.w.manager is not None:
            self.w.manager.thaw()


class _State:
    def __init__(self, world: _World) -> None:
        self.w = world

    def remove(self) -> None:
        self.w.statedir.remove(keep=JOURNAL)  # its events go first (the monitor's rule)

    def oci_state(self, status: str) -> dict[str, Any]:
        w = self.w
        config = w.config()
        pid = w.info.get("init_pid")
        return hook_state(
            container_id=w.statedir.id,
            status=status,
            pid=pid if isinstance(pid, int) and status != Status.STOPPED else None,
            bundle=str(w.info.get("bundle") or ""),
            annotations=None if config is None else config.annotations,
        )


# -- the projection: state.json from the event ----------------------------------


def _projector(statedir: StateDir) -> Callable[[Event], None]:
    def project(event: Event) -> None:
        assert event.dest is not None
        _project(statedir, event.dest)

    return project


def _project(statedir: StateDir, status: str) -> None:
    """state.json's status made ``status``, as the log has it."""
    try:
        doc: dict[str, Any] = jsonfast.loads(statedir.read(STATE))
    except ContainerNotFound:
        return  # the monitor died before it wrote one: nothing to keep current
    if doc.get("status") == status:
        return
    doc["status"] = status
    if status == Status.STOPPED:
        doc["pid"] = 0
    statedir.write(STATE, gojson.render(doc, "  ").encode())


# -- requests ---------------------------------------------------------------------


def _service(settings: Settings, world: _World) -> AbstractContextManager[Service]:
    from contextlib import contextmanager

    @contextmanager
    def opened() -> Iterator[Service]:
        cache = settings.cache_dir()
        machines = None if cache is None else os.path.join(cache, "machines")
        definition = load(resolve(settings.machine, {}), cache=machines)
        drivers = world.drivers()
        with open_store(settings.db, group=settings.log_group) as store:
            service = Service(
                store,
                Lifecycle(definition, REGISTRY),
                lambda _cid: drivers,
                _projector(world.statedir),
            )
            # What the log refuses and cannot be undone (a kill, an exit, a
            # delete) waits in the journal, as the monitor's would.
            service.journal = Journal(world.statedir.file(JOURNAL))
            # Its events go into the log as soon as it takes writes again,
            # as a live monitor's do (engine.runtime.monitor.dispatch), not
            # only at the next event: a `state` after the disk is freed
            # leaves the log saying what `state` says.
            if service.journal.pending:
                try:
                    service.flush_journal()
                except RunlogError:
                    pass  # still refused: they wait there, and are read from there
            yield service

    return opened()


def _freezer_noticed(service: Service, world: _World, actor: Actor) -> None:
    """A freezer written by hand: recorded as the dispatcher records it."""
    cid = world.statedir.id
    now = world.freezer()
    deadline = time.monotonic() + _SETTLE
    while now == "freezing" and time.monotonic() < deadline:
        time.sleep(0.01)  # a v1 freezer on its way: what it ends up as counts
        now = world.freezer()
    trigger = vocabulary.FREEZER.get((service.state(cid) or "", now or ""))
    if trigger is None or not world.monitor_gone():
        return  # a live monitor records its container's freezer itself
    _noticed(service, cid, trigger, actor, "freezer")


def _noticed(service: Service, cid: str, trigger: str, actor: Actor, what: str) -> None:
    """Record what the real world shows and the log does not, through the
    machine's ``trigger``, by this caller as ``external``."""
    external = Actor(actor.uid, actor.pid, Transport.EXTERNAL)
    try:
        service.request(cid, trigger, external, {"noticed": what})
    except RunlogError:
        pass  # recorded as rejected or failed


def _exec_noticed(service: Service, world: _World, actor: Actor) -> None:
    """A start whose monitor was killed after it had released the init
    (before the start's event was written): the init runs the user's
    process while the log says ``created``. Recorded as the machine's
    ``started``, noticed by this caller, before anything else is asked."""
    cid = world.statedir.id
    if service.state(cid) != Status.CREATED or not service.lifecycle.may(
        Status.CREATED, vocabulary.STARTED
    ):
        return
    if world.monitor_gone() and world.exec_done():
        _noticed(service, cid, vocabulary.STARTED, actor, "exec")


def state(settings: Settings, statedir: StateDir) -> bytes:
    """``state``, answered from the real world after recording what changed.
    Raises MonitorBusy when the container's monitor is not gone after all
    (a create under way): its ``state.json`` is the answer then."""
    world = _World(statedir)
    actor = Actor.current()
    with _service(settings, world) as service:
        faults.point("state", "reconcile")
        if not world.monitor_gone():
            raise _not_gone(statedir, "state")
        _exec_noticed(service, world, actor)
        service.refresh(statedir.id, actor)
        _freezer_noticed(service, world, actor)
        # The monitor may have died between an event's commit and its
        # projection: state.json follows the log, the one authority.
        now = service.state(statedir.id)
        if now is not None:
            _project(statedir, now)
    doc: dict[str, Any] = jsonfast.loads(statedir.read(STATE))
    return gojson.render(doc, "  ").encode()


def handle(
    settings: Settings, statedir: StateDir, trigger: str, request: dict[str, Any]
) -> dict[str, Any]:
    """A request whose monitor is gone: ``kill`` and ``delete`` through the
    machine, anything else refused; either way recorded."""
    world = _World(statedir)
    cid = statedir.id
    actor = Actor.current()
    with _service(settings, world) as service:
        if world.info and not world.monitor_gone():
            busy = _not_gone(statedir, trigger)
            service.refuse(cid, trigger, actor, busy, request, "monitor busy")
            raise busy
        _exec_noticed(service, world, actor)
        if trigger == vocabulary.KILL:
            args = {"signal": int(request["signal"]), "all": bool(request.get("all"))}
            service.request(cid, vocabulary.KILL, actor, args)
            now = service.state(cid) or ""
            return wire.ok(now, jsonfast.loads(statedir.read(STATE)))
        if trigger != vocabulary.DELETE:
            service.refresh(cid, actor)
            lost = MonitorLost(cid, trigger)
            service.refuse(cid, trigger, actor, lost, request, "monitor gone")
            raise lost
        force = bool(request.get("force"))
        current = service.refresh(cid, actor)
        if current is None:
            return _never_created(service, world, actor, request, force)
        if force and current is not None and world.init_alive():
            if service.lifecycle.may(current, vocabulary.KILL):
                kill = {"signal": int(signal.SIGKILL), "all": True}
                service.request(cid, vocabulary.KILL, actor, kill)
            _wait_gone(world)
        service.request(cid, vocabulary.DELETE, actor, {"force": force})
    return dict(wire.DELETED)


def _not_gone(statedir: StateDir, trigger: str) -> MonitorBusy:
    return MonitorBusy(
        f"{trigger} {statedir.id}: its monitor runs but does not answer yet "
        f"on {statedir.file(CONTROL)}"
    )


def _never_created(
    service: Service, world: _World, actor: Actor, request: dict[str, Any], force: bool
) -> dict[str, Any]:
    """A state directory whose create the log does not have (its monitor
    died creating it): there is no container to delete, so the machine
    is not asked. delete --force clears what is left, as runc's does for
    a container that does not exist; both are recorded as refused."""
    cid = world.statedir.id
    error = ContainerNotFound(cid)
    cleared: dict[str, Any] = {}
    if force:
        drivers = world.drivers()
        cleared["killed"] = world.pids()
        drivers.process.kill_init()
        _wait_gone(world)
        drivers.cgroups.destroy()
        world.statedir.remove()
    service.refuse(cid, vocabulary.DELETE, actor, error, request, "not created", cleared=cleared)
    if not force:
        raise error
    return dict(wire.DELETED)


def _wait_gone(world: _World) -> None:
    deadline = time.monotonic() + _GONE_TIMEOUT
    while world.init_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
