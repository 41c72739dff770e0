"""When a container's monitor is gone: answer from the real world, and record it.

The monitor is the init's parent and the only one who learns its exit
status; if it was killed, the status is lost. The CLI then reads what is
left - the init's pid with its start time (against pid reuse), the freezer -
answers ``state`` from that, lets ``delete`` clean up (kill what remains,
remove the cgroup and the state directory), refuses the rest, and records
what it found (crun computes status on read the same way).
"""

from __future__ import annotations

import os
import signal

from engine import jsonfast
from engine.errors import LifecycleError, RunlogError
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.oci import gojson
from engine.runtime import record
from engine.runtime.statedir import STATE, StateDir, alive
from engine.settings import Settings
from engine.status import Actor, Outcome, Status, Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["handle", "state"]


class MonitorLost(LifecycleError):
    def __init__(self, container_id: str, trigger: str) -> None:
        super().__init__(
            container_id,
            f"{trigger} {container_id}: the container's monitor is gone (exit status lost); "
            f"only delete works now",
        )


def _status(info: dict[str, Any], recorded: str) -> str:
    if not alive(info, "init"):
        return Status.STOPPED
    paths = info.get("cgroup_paths") or {}
    if paths:
        from engine.cgroups import manager_at

        try:
            if manager_at(paths).freezer_state() == "frozen":
                return Status.PAUSED
        except RunlogError:
            pass
    return Status.RUNNING if recorded == Status.PAUSED else recorded


def _record_lost_exit(settings: Settings, container_id: str, source: str) -> None:
    """Once: the log still shows the container alive, the world does not."""
    digest = record.machine_digest(settings)
    with open_store(settings.db) as store:
        row = store.container(container_id)
        if row is None or row.state in (Status.STOPPED, Status.DELETED, None):
            return
        actor = Actor(os.getuid(), os.getpid(), Transport.EXTERNAL)
        payload = {"exit": "lost", "reason": "the monitor is gone; its exit status with it"}
        store.append(
            NewEvent(
                container_id, "exit", source, Status.STOPPED, Outcome.OK, actor, digest, payload
            )
        )


def state(settings: Settings, statedir: StateDir) -> bytes:
    doc: dict[str, Any] = jsonfast.loads(statedir.read(STATE))
    info = statedir.runtime()
    status = _status(info, str(doc.get("status")))
    if status == Status.STOPPED and doc.get("status") != Status.STOPPED:
        _record_lost_exit(settings, statedir.id, str(doc.get("status")))
    doc["status"] = status
    if status == Status.STOPPED:
        doc["pid"] = 0
    return gojson.render(doc, "  ").encode()


def handle(
    settings: Settings, statedir: StateDir, trigger: str, request: dict[str, Any]
) -> dict[str, Any]:
    if trigger != "delete":
        lost = MonitorLost(statedir.id, trigger)
        record.rejected(settings, statedir.id, trigger, lost, request)
        raise lost
    info = statedir.runtime()
    doc: dict[str, Any] = jsonfast.loads(statedir.read(STATE))
    status = _status(info, str(doc.get("status")))
    if status != Status.STOPPED and not request.get("force"):
        error = LifecycleError(
            statedir.id,
            f"cannot delete container {statedir.id} that is not stopped: {status}",
        )
        record.rejected(settings, statedir.id, "delete", error, request, source=status)
        raise error
    paths = info.get("cgroup_paths") or {}
    cleaned: dict[str, Any] = {"reconciled": True}
    if paths:
        from engine.cgroups import manager_at

        manager = manager_at(paths)
        pids = manager.pids() if manager.exists() else []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pids and manager.freezer_state() != "thawed":
            manager.thaw()
        cleaned["killed"] = pids
        _destroy(manager)
    _record_lost_exit(settings, statedir.id, str(doc.get("status")))
    statedir.remove()
    digest = record.machine_digest(settings)
    with open_store(settings.db) as store:
        store.append(
            NewEvent(
                statedir.id,
                "delete",
                Status.STOPPED,
                Status.DELETED,
                Outcome.OK,
                Actor.current(),
                digest,
                cleaned,
            )
        )
    return {"ok": True}


def _destroy(manager: Any) -> None:
    import time

    deadline = time.monotonic() + 5
    while True:
        try:
            manager.destroy()
            return
        except RunlogError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
