"""Folding histories through a machine: the state they lead to, and where they diverge.

For each event, in each container's seq order, replay asks the machine what
it would do with the recorded trigger in the state the history so far has
left the container in, and compares:

- an ``ok`` event: the machine must allow the trigger and reach the
  recorded ``dest`` (else ``rejects`` or ``reaches``);
- a ``rejected`` event: the machine must still refuse it (else ``accepts``);
  one refused before it reached the machine (``refused`` in its payload:
  malformed, no permission, no monitor) is not compared - the machine was
  never asked; neither is a query that changed nothing (``query``: an
  accepted ``state`` or ``wait`` request);
- a ``failed`` event: the machine must allow the trigger - its actions ran
  and one failed - and the state stays (else ``rejects``);
- every event: its recorded ``source`` must be the state the history left
  the container in (else ``source``: events missing, or a writer that raced
  another), and its seq must follow the last one (else ``seq``).

A container that does not exist - never created, or in a terminal state
such as ``deleted`` - is in the machine's initial state, and its events
record ``source`` as None, as :mod:`engine.service` does. After a
divergence, replay goes on from the recorded state, so every divergence
reported stands on its own rather than following from the first.

Rows are :data:`engine.audit.query.REPLAY_COLUMNS` tuples; events from any
store or a fixture file are turned into rows by :func:`rows_of`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.eventlog.record import Event
from engine.replay.table import Stepper, TransitionTable

__all__ = ["Divergence", "HistoryResult", "Replay", "replay", "rows_of"]

#: (container_id, seq, time_ns, trigger, source, dest, outcome, machine_digest)
Row = tuple[str, int, int, str, str | None, str | None, str, str]


def _outcome(e: Event) -> str:
    """As the log's replay SELECT reads it (engine.audit.query.REFUSED)."""
    if e.outcome == "rejected" and "refused" in e.payload:
        return "refused"
    if e.outcome == "ok" and e.payload.get("query") is True:
        return "query"
    return e.outcome


def rows_of(events: Iterable[Event]) -> list[Row]:
    return [
        (
            e.container_id,
            e.seq,
            e.time_ns,
            e.trigger,
            e.source,
            e.dest,
            _outcome(e),
            e.machine_digest,
        )
        for e in events
    ]


@dataclass(frozen=True, slots=True)
class Divergence:
    """One recorded event the machine does not reproduce."""

    container_id: str
    seq: int
    time_ns: int
    trigger: str
    source: str | None
    dest: str | None
    outcome: str
    kind: str  # rejects | reaches | accepts | source | seq
    would: str | None  # the machine's state after the trigger; None: it refuses
    expected: str | None  # kind source: the state the history had reached; seq: last seq
    machine_digest: str  # the machine replay used

    def event_text(self) -> str:
        if self.outcome == "ok":
            return f"{self.trigger} ({self.source or '-'} → {self.dest or '-'}, ok)"
        return f"{self.trigger} ({self.outcome} in {self.source or 'no container'})"

    def message(self) -> str:
        at = self.source or "no container"
        if self.kind == "rejects":
            if self.outcome == "failed":
                return (
                    f"the machine rejects {self.trigger} in state {at}; "
                    "it would not have run the actions that failed"
                )
            return f"the machine rejects {self.trigger} in state {at}"
        if self.kind == "reaches":
            return f"the machine goes to {self.would}, not {self.dest}"
        if self.kind == "accepts":
            return f"the machine now accepts {self.trigger} in state {at} (→ {self.would})"
        if self.kind == "source":
            left = self.expected or "no container"
            return (
                f"recorded in state {at}, but the history before it leaves the container "
                f"in {left} (events missing, or a writer raced another)"
            )
        return f"seq {self.seq} follows seq {self.expected}: the history has a gap"

    def to_dict(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "seq": self.seq,
            "time_ns": self.time_ns,
            "trigger": self.trigger,
            "source": self.source,
            "dest": self.dest,
            "outcome": self.outcome,
            "kind": self.kind,
            "would": self.would,
            "expected": self.expected,
            "machine_digest": self.machine_digest,
            "message": self.message(),
        }


@dataclass(slots=True)
class HistoryResult:
    """One container's replay: where it ended up, and what diverged."""

    container_id: str
    events: int
    state: str | None  # None: never created (as far as these events go)
    present: bool  # it exists: created and not in a terminal state
    seq: int
    time_ns: int | None
    trigger: str | None
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.divergences


@dataclass(slots=True)
class Replay:
    histories: dict[str, HistoryResult]
    events: int
    seconds: float

    @property
    def divergent(self) -> list[HistoryResult]:
        return [h for h in self.histories.values() if h.divergences]

    @property
    def agrees(self) -> bool:
        return not self.divergent

    @property
    def rate(self) -> float:
        """Events replayed per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


# One loop, its body inlined: a call per event would cost a fifth of the rate.
def replay(  # noqa: PLR0915
    rows: Iterable[Row],
    machines: Callable[[str], Stepper],
    *,
    progress: Callable[[int], None] | None = None,
    every: int = 1 << 16,
) -> Replay:
    """Replay ``rows`` (each container's in seq order; containers may
    interleave) through the machine ``machines(digest)`` gives each event.

    ``progress(n)`` is called every ``every`` events.
    """
    started = time.perf_counter()
    # Per container: [state, seq, events, time_ns, trigger, terminal states
    # of the machine of its last event]. A list, not an object: this loop is
    # the replay rate.
    books: dict[str, list[Any]] = {}
    diverged: dict[str, list[Divergence]] = {}
    digest: str | None = None
    lookup: Callable[[tuple[str, str]], str | None] = dict[tuple[str, str], str]().get
    initial = ""
    terminal: frozenset[str] = frozenset()
    n = 0
    for row in rows:
        cid, seq, time_ns, trigger, source, dest, outcome, row_digest = row
        n += 1
        if row_digest != digest:
            digest = row_digest
            stepper = machines(row_digest)
            definition = stepper.definition
            initial = definition.initial
            terminal = frozenset(definition.terminal_states())
            lookup = _lookup(stepper)
        book = books.get(cid)
        if book is None:
            book = books[cid] = [None, 0, 0, 0, None, terminal]
        state = book[0]
        at = None if state is None or state in terminal else state
        found: list[Divergence] | None = None
        if seq != book[1] + 1:
            found = [_diverge(row, "seq", None, str(book[1]), definition.digest)]
        if source != at:
            found = found or []
            found.append(_diverge(row, "source", None, at, definition.digest))
            at = state = source
        after = lookup((at or initial, trigger))
        if outcome == "ok":
            if after is None:
                found = found or []
                found.append(_diverge(row, "rejects", None, None, definition.digest))
                state = dest if dest is not None else at
            elif after == dest or (dest is None and after == (at or initial)):
                state = after
            else:
                found = found or []
                found.append(_diverge(row, "reaches", after, None, definition.digest))
                state = dest
        elif after is not None and outcome == "rejected":
            found = found or []
            found.append(_diverge(row, "accepts", after, None, definition.digest))
        elif after is None and outcome == "failed":
            found = found or []
            found.append(_diverge(row, "rejects", None, None, definition.digest))
        if found:
            diverged.setdefault(cid, []).extend(found)
        book[0] = state
        book[1] = seq
        book[2] += 1
        book[3] = time_ns
        book[4] = trigger
        book[5] = terminal
        if progress is not None and n % every == 0:
            progress(n)
    if progress is not None:
        progress(n)
    histories = {}
    for cid, (state, seq, count, time_ns, trigger, gone) in books.items():
        histories[cid] = HistoryResult(
            cid,
            count,
            state,
            state is not None and state not in gone,
            seq,
            time_ns,
            trigger,
            diverged.get(cid, []),
        )
    return Replay(histories, n, time.perf_counter() - started)


def _lookup(stepper: Stepper) -> Callable[[tuple[str, str]], str | None]:
    if isinstance(stepper, TransitionTable):
        return stepper.moves.get
    return lambda key: stepper.step(*key)


def _diverge(row: Row, kind: str, would: str | None, expected: str | None, md: str) -> Divergence:
    cid, seq, time_ns, trigger, source, dest, outcome, _ = row
    return Divergence(cid, seq, time_ns, trigger, source, dest, outcome, kind, would, expected, md)
