"""What a create whose monitor died (or hangs) leaves, and taking it away.

The monitor writes ``runtime.json`` with its pid and the container's cgroup
paths before it makes anything, so whatever it made can be found by the id
alone: ``create`` cleans up when its monitor died without reporting, and
``delete --force ID`` does for a state directory without ``state.json``
(a create killed, or a journal left by a delete the log refused). Either
way the processes in the cgroups are killed, the cgroups removed, the
journal written into the log, the state directory removed, and what was
done recorded: the id can be used again.
"""

from __future__ import annotations

import time

from engine.errors import ContainerNotFound, RunlogError
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.runtime.shared import record
from engine.runtime.shared.journal import JOURNAL, Journal
from engine.runtime.shared.statedir import StateDir, kill_monitor
from engine.settings import Settings
from engine.status import Actor, Outcome, Status

# On a scheduler's path (delete --force of a container already gone,
# which Slurm's clean-up calls after every run): typing costs it more
# than the rest of what it loads.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["clean", "forgotten"]

#: States in which the log still shows the container alive.
_LIVE = (Status.CREATING, Status.CREATED, Status.RUNNING, Status.PAUSED)


def clean(settings: Settings, statedir: StateDir, reason: str) -> dict[str, Any]:
    """Take away all of the container's remains and record it; what was done.
    Without a state directory, only the log is put right: a container it
    still shows (its monitor killed mid-delete) gets its exit and delete."""
    try:
        info = statedir.runtime()
    except ContainerNotFound:  # a bare state directory
        info = {}
    done: dict[str, Any] = {"reason": reason}
    # A monitor hanging in create (on a log that is a FIFO, ...).
    killed = kill_monitor(info)
    if killed is not None:
        done["monitor_killed"] = killed
    paths = info.get("cgroup_paths") or {}
    if paths:
        done["killed"] = _remove_cgroups(paths)
    try:
        _record(settings, statedir, done)
    finally:
        statedir.remove()
    return done


def forgotten(settings: Settings, statedir: StateDir, *, wait: bool = True) -> bool:
    """``delete ID`` without a state directory while the log still shows
    the container (its monitor killed once delete had removed it, or
    ``--root`` wiped by a reboot): record its lost exit and its delete, so
    that the log agrees with ``state``; whether it did. Not for ``state``:
    a monitor between removing the directory and appending its delete
    would find its delete recorded by another. ``wait=False``: a log whose
    write lock another process holds is left as it is (StoreBusyError)."""
    if statedir.exists():
        return False  # a journal or a dead create's remains: delete --force's
    reason = f"container {statedir.id}: its state directory is gone"
    return _record(settings, statedir, {"reason": reason}, wait=wait, gone=True)


def _remove_cgroups(paths: dict[str, str]) -> list[int]:
    from engine.cgroups import manager_at

    manager = manager_at(paths)
    killed: list[int] = []
    deadline = time.monotonic() + 5
    while True:
        try:
            if manager.exists():
                killed += manager.kill_all()
            manager.destroy()
            return killed
        except RunlogError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _record(
    settings: Settings,
    statedir: StateDir,
    done: dict[str, Any],
    *,
    wait: bool = True,
    gone: bool = False,
) -> bool:
    """The journal's events first; then, if the log shows the container
    alive, its lost exit and its delete; if it shows nothing, the create
    that failed. Whether the log showed it alive or stopped. ``gone``:
    only if the state directory is still missing once the log is read (a
    create claims it before its event is appended)."""
    cid = statedir.id
    journal = Journal(statedir.file(JOURNAL))
    actor = Actor.current()
    with open_store(settings.db, wait=wait, group=settings.log_group) as store:
        journaled = journal.events()
        for event in journaled:
            store.append(event)
        row = store.container(cid)
        state = None if row is None else row.state
        if state not in (*_LIVE, Status.STOPPED) and not statedir.exists():
            return False  # nothing to put right (and no machine to load)
        if gone and (state not in (*_LIVE, Status.STOPPED) or statedir.exists()):
            return False  # a new life's create, under way
        digest = record.machine_digest(settings)
        events: list[NewEvent] = []
        if state in _LIVE:
            lost = {"exit": "lost", "reason": "the monitor is gone; its exit status with it"}
            events.append(
                NewEvent(cid, "exit", state, Status.STOPPED, Outcome.OK, actor, digest, lost)
            )
            state = Status.STOPPED
        if state == Status.STOPPED:
            payload = {"reconciled": True, **done}
            events.append(
                NewEvent(cid, "delete", state, Status.DELETED, Outcome.OK, actor, digest, payload)
            )
        elif not journaled and state in (None, Status.DELETED) and statedir.exists():
            payload = {"error": done["reason"], "undone": done}
            events.append(
                NewEvent(cid, "create", None, None, Outcome.FAILED, actor, digest, payload)
            )
        for event in events:
            store.append(event)
    return state == Status.STOPPED
