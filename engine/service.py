"""Container operations: refresh, guard, act, record.

Every request - from the CLI, the control socket or the spool - comes here:

1. **refresh**: read the container's head from the log, then the real world
   (has the init ended? then record ``exit`` first);
2. **guard**: ask the machine whether the trigger is allowed now; if not,
   record a ``rejected`` event and raise with runc's wording;
3. **act**: fire the trigger, which runs its actions (undone on failure, and
   then a ``failed`` event is recorded);
4. **record**: append the ``ok`` event with every action's result.

If the log refuses that last append (a full disk, a read-only file), the
actions have run all the same. What can be undone is undone (a pause is
thawed, a create taken back) and the request fails, saying why; what cannot
(a signal delivered, an exit, a delete) is kept in the container's journal
(:mod:`engine.runtime.journal`), fsynced, and written into the log, in
order, before anything newer, once the log takes writes again. Refusals and
queries the log cannot take go to the journal too.
"""

from __future__ import annotations

from engine import faults
from engine.actions.base import ActionContext, Drivers
from engine.errors import (
    ConcurrencyError,
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
from engine.machine.runtime import Lifecycle
from engine.status import Actor, Outcome, Status, Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    class Journal(Protocol):
        """Where events go that the log cannot take (engine.runtime.journal)."""

        pending: bool

        def add(self, event: NewEvent) -> None: ...
        def events(self) -> list[NewEvent]: ...
        def clear(self) -> None: ...


__all__ = ["Service", "rejection_reason"]

#: The trigger by which the init's end is recorded (statemachine.yaml).
EXIT = "exit"


def rejection_reason(container_id: str, trigger: str, state: str) -> str:
    """runc's words for an operation its state does not allow."""
    if trigger == "start":
        return {
            Status.RUNNING: "cannot start an already running container",
            Status.STOPPED: "cannot start a container that has stopped",
        }.get(state, f"cannot start a container in the {state} state")
    if trigger == "delete":
        return f"cannot delete container {container_id} that is not stopped: {state}"
    if trigger in ("pause", "kill"):
        return "container not running"
    if trigger == "resume":
        return "container not paused"
    return f"cannot {trigger} a container in the {state} state"


class Service:
    """The lifecycle of every container in one event log, under one machine."""

    def __init__(
        self,
        store: EventStore,
        lifecycle: Lifecycle,
        drivers: Callable[[str], Drivers],
    ) -> None:
        self.store = store
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
        state, seq = self._refresh(container_id, actor, reconcile=trigger != EXIT)
        exists = state is not None
        current = state if state is not None else self.definition.initial

        error: LifecycleError | None = None
        if not exists and trigger not in self._births:
            error = ContainerNotFound(container_id)
        elif not self.lifecycle.may(current, trigger):
            if exists and trigger in self._births:
                error = ContainerExists(container_id)
            else:
                reason = rejection_reason(container_id, trigger, current)
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
            return self._not_recorded(new, seq, ctx, records, err)
        faults.point(trigger, "recorded")
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

    # -- refresh and record -----------------------------------------------

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
        """Append ``new`` to the log, after what the journal holds."""
        if self.journal is not None and self.journal.pending:
            self.flush_journal()
            seq = self._head(new.container_id)[1]
        try:
            return self.store.append(new, expected_seq=seq, durable=durable)
        except ConcurrencyError as err:
            # Someone else recorded an event for this container while we
            # acted. What we did happened all the same: record it, marked.
            new.payload["raced_with_seq"] = err.actual_seq
            return self.store.append(new, durable=durable)

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
