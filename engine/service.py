"""Container operations: refresh, guard, act, record.

Every request - from the CLI, the control socket or the spool - comes here:

1. **refresh**: read the container's head from the log, then the real world
   (has the init ended? then record ``exit`` first);
2. **guard**: ask the machine whether the trigger is allowed now; if not,
   record a ``rejected`` event and raise with runc's wording;
3. **act**: fire the trigger, which runs its actions (undone on failure, and
   then a ``failed`` event is recorded);
4. **record**: append the ``ok`` event with every action's result;
5. **project**: hand the event to :attr:`Service.project`, the one place
   where what others read of the container (``state.json``, the monitor's
   status) is written from the event just appended.

A request that finds the container's history moved on under it (another
writer appended first) is refused, and that refusal is recorded in the
state the container is in now.

If the log refuses that last append (a full disk, a read-only file), the
actions have run all the same. What can be undone is undone (a pause is
thawed, a create taken back) and the request fails, saying why; what cannot
(a signal delivered, an exit, a delete) is kept in the container's journal
(:mod:`engine.runtime.shared.journal`), fsynced, and written into the log, in
order, before anything newer, once the log takes writes again. Refusals and
queries the log cannot take go to the journal too.
"""

from __future__ import annotations

from engine import faults
from engine.actions.base import ActionContext, Drivers
from engine.errors import (
    ConcurrencyError,
    ConcurrentChange,
    ContainerExists,
    ContainerNotFound,
    EventLogError,
    LifecycleError,
    NotRecorded,
    TransitionFailed,
    TransitionRejected,
)
from engine.eventlog.record import Event, NewEvent
from engine.eventlog.store import EventStore
from engine.lifecycle import ActionsFailed
from engine.machine import vocabulary
from engine.machine.runtime import Lifecycle
from engine.status import Actor, Outcome, Status, Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    class Journal(Protocol):
        """Where events go that the log cannot take (engine.runtime.shared.journal)."""

        pending: bool

        def add(self, event: NewEvent) -> None: ...
        def events(self) -> list[NewEvent]: ...
        def clear(self) -> None: ...

    from engine.machine.definition import MachineDefinition

__all__ = ["Service", "rejection_reason"]

#: Appends retried after writers that changed no state (refusals, queries).
_RETRIES = 8

#: The trigger by which the init's end is recorded (statemachine.yaml).
EXIT = vocabulary.EXIT
#: Triggers run without first looking for the init's end: ``exit`` records
#: it; ``started`` records a start that came before it (its monitor killed
#: mid-start), which an exit noticed first would leave unrecorded.
_UNREFRESHED = frozenset({EXIT, vocabulary.STARTED})

#: Where runc refuses these triggers with words that name the one state
#: it wanted, those words - used only when the machine, too, would allow
#: the trigger from that state (else they would say something false).
_RUNC_NEEDS = {
    vocabulary.DELETE: (
        Status.STOPPED,
        "cannot delete container {id} that is not stopped: {state}",
    ),
    vocabulary.PAUSE: (Status.RUNNING, "container not running"),
    vocabulary.KILL: (Status.RUNNING, "container not running"),
    vocabulary.UPDATE: (Status.RUNNING, "container not running"),
    vocabulary.EXEC: (Status.RUNNING, "cannot exec in a {state} container"),
    vocabulary.RESUME: (Status.PAUSED, "container not paused"),
}
_RUNC_START = {
    Status.RUNNING: "cannot start an already running container",
    Status.STOPPED: "cannot start a container that has stopped",
}


def rejection_reason(
    definition: MachineDefinition, container_id: str, trigger: str, state: str
) -> str:
    """Why the machine refuses ``trigger`` in ``state``: runc's words where
    runc has them and they hold for this machine, else the machine's answer
    (the states it allows the trigger from)."""
    sources = [s for t in definition.transitions if t.trigger == trigger for s in t.sources]
    if not sources:
        return f"this machine has no trigger {trigger!r}"
    if trigger == vocabulary.START and state in _RUNC_START:
        return _RUNC_START[state]
    wanted = _RUNC_NEEDS.get(trigger)
    if wanted is not None and wanted[0] != state and wanted[0] in sources:
        return wanted[1].format(id=container_id, state=state)
    allowed = ", ".join(dict.fromkeys(sources))
    return f"the machine allows {trigger} only from {allowed}"


class Service:
    """The lifecycle of every container in one event log, under one machine."""

    def __init__(
        self,
        store: EventStore,
        lifecycle: Lifecycle,
        drivers: Callable[[str], Drivers],
        project: Callable[[Event], None] | None = None,
    ) -> None:
        self.store = store
        #: Called with every event that changed the container's state,
        #: right after it is appended: the one writer of what others read.
        self.project = project
        #: Set by the monitor: events the log cannot take wait there.
        self.journal: Journal | None = None
        self.lifecycle = lifecycle
        self.definition = lifecycle.definition
        self._drivers = drivers
        self._gone = frozenset(self.definition.terminal_states())
        self._births = frozenset(
            t.trigger for t in self.definition.transitions if self.definition.initial in t.sources
        )
        if self.definition.text:
            # Every event names the machine by digest; keep its text, so a
            # replay finds it after statemachine.yaml has changed.
            store.archive_machine(
                self.definition.digest, self.definition.text, self.definition.path
            )

    # -- queries ----------------------------------------------------------

    def state(self, container_id: str) -> str | None:
        """The container's current state, or None if it does not exist."""
        return self._head(container_id)[0]

    def _head(self, container_id: str) -> tuple[str | None, int]:
        """The container's state (None: none, or gone) and last seq, as the
        log has them followed by the journal's events not in it yet."""
        row = self.store.container(container_id)
        state, seq = (None, 0) if row is None else (row.state, row.seq)
        if self.journal is not None and self.journal.pending:
            for event in self.journal.events():
                seq += 1
                if event.outcome == Outcome.OK and event.dest is not None:
                    state = event.dest
        if state is None or state in self._gone:
            return None, seq
        return state, seq

    # -- requests ---------------------------------------------------------

    def request(
        self,
        container_id: str,
        trigger: str,
        actor: Actor,
        args: Mapping[str, Any] | None = None,
    ) -> Event:
        """Run one trigger for one container; return its ``ok`` event.

        Raises (after recording the event) ContainerNotFound or
        ContainerExists or TransitionRejected (``rejected``), or
        TransitionFailed (``failed``).
        """
        request = dict(args or {})
        # The monitor reports an exit it reaped itself: no need to look again.
        state, seq = self._refresh(container_id, actor, reconcile=trigger not in _UNREFRESHED)
        exists = state is not None
        current = state if state is not None else self.definition.initial

        error: LifecycleError | None = None
        if not exists and trigger not in self._births:
            error = ContainerNotFound(container_id)
        elif not self.lifecycle.may(current, trigger):
            if exists and trigger in self._births:
                error = ContainerExists(container_id)
            else:
                reason = rejection_reason(self.definition, container_id, trigger, current)
                error = TransitionRejected(container_id, trigger, current, reason)
        if error is not None:
            payload: dict[str, Any] = {"error": str(error), "request": request}
            self._append(container_id, trigger, state, None, Outcome.REJECTED, actor, payload, seq)
            raise error

        ctx = ActionContext(container_id, trigger, current, self._drivers(container_id), request)
        try:
            dest, records = self.lifecycle.fire(current, trigger, ctx)
        except ActionsFailed as failed:
            payload = {"request": request, **failed.payload()}
            self._append(container_id, trigger, state, None, Outcome.FAILED, actor, payload, seq)
            raise TransitionFailed(
                container_id, trigger, failed.action, failed.cause, failed.undone
            ) from failed
        payload = {"request": request, "actions": records}
        digest = self.definition.digest
        new = NewEvent(container_id, trigger, state, dest, Outcome.OK, actor, digest, payload)
        try:
            event = self._write(new, seq)
        except EventLogError as err:
            # Journaled (what cannot be undone happened all the same), or raised.
            event = self._not_recorded(new, seq, ctx, records, err)
        else:
            faults.point(trigger, "recorded")
        self._project(event)
        return event

    def _not_recorded(
        self,
        new: NewEvent,
        seq: int,
        ctx: ActionContext,
        records: list[dict[str, Any]],
        err: EventLogError,
    ) -> Event:
        """The actions ran and the log refused their event. A transition
        none of whose actions can be undone happened: its event goes to the
        journal. Otherwise what can be undone is, the ``failed`` event goes
        to the journal, and the request fails with the log's error."""
        birth = new.trigger in self._births
        if not birth and not self.lifecycle.reversible(ctx.source, new.trigger):
            if self.journal is None:
                raise err
            return self._journal(new, seq, err)
        undone, not_undone, undo_errors = self.lifecycle.undo(ctx.source, new.trigger, ctx, records)
        if not birth:  # a create taken back leaves no container to journal for
            payload = {
                "request": new.payload["request"],
                "action": "event log",
                "error": str(err),
                "details": {},
                "done": records,
                "undone": undone,
                "not_undone": not_undone,
                "undo_errors": undo_errors,
            }
            try:
                self._append(
                    new.container_id,
                    new.trigger,
                    new.source,
                    None,
                    Outcome.FAILED,
                    new.actor,
                    payload,
                    seq,
                )
            except EventLogError:
                pass  # no journal to keep it in; the error below says it all
        raise NotRecorded(new.container_id, new.trigger, err, undone) from err

    def record_query(
        self,
        container_id: str,
        trigger: str,
        actor: Actor,
        request: Mapping[str, Any] | None,
        *,
        time_ns: int | None = None,
    ) -> Event:
        """Record a request that asks and changes nothing (``state``,
        ``wait``): who asked, and when (``time_ns``: when it was asked, if
        not now). ``query`` in the payload tells replay there is no
        transition to check. Schedulers poll ``state``, so a query is
        committed without waiting for the disk; the next transition's
        durable commit carries it."""
        state, seq = self._known_head(container_id)
        payload: dict[str, Any] = {"request": dict(request or {}), "query": True}
        return self._append(
            container_id,
            trigger,
            state,
            state,
            Outcome.OK,
            actor,
            payload,
            seq,
            durable=False,
            time_ns=time_ns,
        )

    def refuse(
        self,
        container_id: str,
        trigger: str,
        actor: Actor,
        error: Exception,
        request: Mapping[str, Any] | None,
        refused: str,
        **extra: Any,
    ) -> Event:
        """Record a request refused before it reached the machine: malformed,
        from a peer without permission, or for something the container does
        not have. The machine was not asked and nothing changes; ``refused``
        says why, in the payload, next to the error and the request."""
        state, seq = self._known_head(container_id)
        payload: dict[str, Any] = {
            "error": str(error),
            "request": dict(request or {}),
            "refused": refused,
            **extra,
        }
        return self._append(
            container_id, trigger, state, None, Outcome.REJECTED, actor, payload, seq
        )

    def refresh(self, container_id: str, actor: Actor) -> str | None:
        """The container's state after recording an end of its init that
        the real world shows and the log does not have yet; None if it
        does not exist."""
        return self._refresh(container_id, actor)[0]

    # -- refresh and record -----------------------------------------------

    def _project(self, event: Event) -> None:
        """A container that is gone (its state removed by the transition's
        actions) has nothing left to project to."""
        dest = event.dest
        if self.project is not None and dest != event.source and dest not in self._gone:
            self.project(event)

    def _refresh(
        self, container_id: str, actor: Actor, *, reconcile: bool = True
    ) -> tuple[str | None, int]:
        """The container's state and last seq, after recording an exit the
        real world shows and the log does not have yet."""
        state, last = self._head(container_id)
        if not reconcile or state is None or not self.lifecycle.may(state, EXIT):
            return state, last
        drivers = self._drivers(container_id)
        if drivers.process.exit_status() is None:
            return state, last
        # The init ended and nobody recorded it (the monitor is gone, or this
        # is a fake world): record it now, as noticed by this caller.
        noticed = Actor(actor.uid, actor.pid, Transport.EXTERNAL)
        ctx = ActionContext(container_id, EXIT, state, drivers, {})
        try:
            dest, records = self.lifecycle.fire(state, EXIT, ctx)
        except ActionsFailed as failed:
            payload = {"noticed_during": "refresh", **failed.payload()}
            event = self._append(
                container_id, EXIT, state, None, Outcome.FAILED, noticed, payload, last
            )
            return state, event.seq
        payload = {"noticed_during": "refresh", "actions": records}
        event = self._append(container_id, EXIT, state, dest, Outcome.OK, noticed, payload, last)
        self._project(event)
        return dest, event.seq

    def _known_head(self, container_id: str) -> tuple[str | None, int]:
        """:meth:`_head`, or (None, 0) when the log cannot be read: a refusal
        or a query is recorded all the same (in the journal, if it must)."""
        try:
            return self._head(container_id)
        except EventLogError:
            return None, 0

    def _append(
        self,
        container_id: str,
        trigger: str,
        source: str | None,
        dest: str | None,
        outcome: str,
        actor: Actor,
        payload: dict[str, Any],
        seq: int,
        *,
        durable: bool = True,
        time_ns: int | None = None,
    ) -> Event:
        """Append one event; into the journal if the log refuses it and the
        container has one (else the log's error is raised)."""
        digest = self.definition.digest
        new = NewEvent(
            container_id, trigger, source, dest, outcome, actor, digest, payload, time_ns
        )
        try:
            return self._write(new, seq, durable=durable)
        except EventLogError as err:
            if self.journal is None:
                raise
            return self._journal(new, seq, err)

    def _write(self, new: NewEvent, seq: int, *, durable: bool = True) -> Event:
        """Append ``new`` to the log, after what the journal holds.

        If someone else recorded an event for this container since its
        state was read and left the state as it was (a refusal, a query),
        what was decided still holds: ``new`` goes after it. If the state
        moved on, the request is refused, recorded in the state the
        container is in now: a refusal or a query stays what it was (it
        changed nothing); a transition raises ConcurrentChange."""
        if self.journal is not None and self.journal.pending:
            self.flush_journal()
            seq = self._head(new.container_id)[1]
        for _attempt in range(_RETRIES):
            try:
                return self.store.append(new, expected_seq=seq, durable=durable)
            except ConcurrencyError as err:
                conflict = err
            # Someone else recorded an event for this container since we
            # read its state. If it left the state as it was (a refusal, a
            # query), what was decided still holds: append after it.
            row = self.store.container(new.container_id)
            now = None if row is None or row.state in self._gone else row.state
            if now != new.source:
                break
            seq = conflict.actual_seq
        # The state moved on: the request is refused, recorded in the state
        # the container is in now. A refusal or a query stays what it was
        # (it changed nothing); a transition is reported as refused.
        refusal = ConcurrentChange(
            new.container_id, new.trigger, conflict.expected_seq, conflict.actual_seq
        )
        refused = NewEvent(
            new.container_id,
            new.trigger,
            now,
            None,
            Outcome.REJECTED,
            new.actor,
            new.machine_digest,
            {
                "error": str(refusal),
                "request": new.payload.get("request", {}),
                "refused": "conflict",
                "raced_with_seq": conflict.actual_seq,
                "was": {"source": new.source, "dest": new.dest, "outcome": new.outcome},
            },
            new.time_ns,
            root=new.root,
        )
        event = self.store.append(refused, durable=durable)
        if new.outcome == Outcome.REJECTED or new.payload.get("query") is True:
            return event
        raise refusal

    def _journal(self, new: NewEvent, seq: int, err: EventLogError) -> Event:
        """Keep ``new`` in the journal (fsynced): it is in the log later."""
        assert self.journal is not None
        new.payload["journaled"] = str(err)
        self.journal.add(new)
        return new.recorded(0, seq + 1)

    def flush_journal(self) -> int:
        """Write the journal's events into the log, in order; then remove it.
        Raises EventLogError if the log still refuses them (the journal
        stays). An event already in the log (a flush cut short) is skipped.
        Returns how many were written."""
        journal = self.journal
        if journal is None or not journal.pending:
            return 0
        events = journal.events()
        written = 0
        if events:
            cid = events[0].container_id
            row = self.store.container(cid)
            after = 0 if row is None else max(0, row.seq - len(events))
            there = {
                (e.time_ns, e.trigger, e.outcome)
                for e in self.store.history(cid, after)
                if "journaled" in e.payload
            }
            for event in events:
                if (event.time_ns, event.trigger, event.outcome) in there:
                    continue
                self.store.append(event)
                written += 1
        journal.clear()
        return written
