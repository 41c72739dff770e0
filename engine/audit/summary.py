"""``runlog audit --summary``: what happened in a time window, counted.

Four answers: events per trigger and outcome; containers by their state now
(those with an event in the window, or all when there is no filter); hook
failures per hook point; the slowest transitions. Hook failures and
durations run the SELECTs of the ``hook_runs`` and ``transition_durations``
views over the picked events, so the summary says what the views say.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.audit.filters import Filters
from engine.eventlog.schema import view_select
from engine.status import OUTCOMES, STATUSES

__all__ = [
    "HookFailures",
    "PrunedSpan",
    "SlowTransition",
    "StateCount",
    "Summary",
    "TriggerCount",
    "overlapping",
    "summarize",
    "transition_timing",
]

DEFAULT_TOP = 10


@dataclass(frozen=True, slots=True)
class TriggerCount:
    trigger: str
    ok: int
    rejected: int
    failed: int

    @property
    def total(self) -> int:
        return self.ok + self.rejected + self.failed


@dataclass(frozen=True, slots=True)
class StateCount:
    state: str | None  # None: the id only ever had rejected or failed requests
    containers: int


@dataclass(frozen=True, slots=True)
class HookFailures:
    point: str
    failed: int  # the transition was aborted
    warned: int  # on_failure: warn, the lifecycle went on


@dataclass(frozen=True, slots=True)
class SlowTransition:
    event_id: int
    container_id: str
    seq: int
    time_ns: int
    trigger: str
    source: str | None
    dest: str | None
    outcome: str
    actions: int
    duration_ms: float


@dataclass(frozen=True, slots=True)
class PrunedSpan:
    """Events ``runlog db prune`` removed from a log, overlapping the window."""

    log: str  # "" for a node's own log; "node:path" on the cluster's database
    events: int
    first_ns: int
    last_ns: int


def overlapping(
    spans: list[PrunedSpan], since_ns: int | None, until_ns: int | None
) -> tuple[PrunedSpan, ...]:
    return tuple(
        s
        for s in spans
        if (since_ns is None or s.last_ns >= since_ns)
        and (until_ns is None or s.first_ns < until_ns)
    )


@dataclass(frozen=True, slots=True)
class Summary:
    since_ns: int | None
    until_ns: int | None
    filtered: bool  # states count only containers the filters picked
    triggers: tuple[TriggerCount, ...]
    states: tuple[StateCount, ...]
    hook_failures: tuple[HookFailures, ...]
    slowest: tuple[SlowTransition, ...]
    pruned: tuple[PrunedSpan, ...] = ()

    @property
    def events(self) -> int:
        return sum(t.total for t in self.triggers)


def hook_results(outcome: str, payload: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(point, result) of each hook run an event's payload holds, as the
    ``hook_runs`` view reads them (engine.eventlog.schema): ok, warned
    (on_failure: warn) or failed."""

    def runs(actions: object, key: str, failure: str) -> Iterator[tuple[str, str]]:
        for action in actions if isinstance(actions, list) else []:
            result = action.get("result") if isinstance(action, dict) else None
            if not isinstance(result, dict):
                continue
            for run in result.get(key) or []:
                code = run.get("exit_code") if isinstance(run, dict) else None
                yield str(result.get("point")), "ok" if code == 0 else failure

    yield from runs(payload.get("actions"), "hooks", "failed")
    yield from runs(payload.get("actions"), "runs", "warned")
    yield from runs(payload.get("done"), "hooks", "failed")
    action = payload.get("action")
    if outcome == "failed" and isinstance(action, str) and action.startswith("hook("):
        point = action[5:].split(",", 1)[0]
        details = payload.get("details")
        for run in (details.get("runs") if isinstance(details, dict) else None) or []:
            code = run.get("exit_code") if isinstance(run, dict) else None
            yield point, "ok" if code == 0 else "failed"


def _state_order(state: str | None) -> int:
    return STATUSES.index(state) if state in STATUSES else len(STATUSES)


def summarize(conn: sqlite3.Connection, filters: Filters, top: int = DEFAULT_TOP) -> Summary:
    where, params = filters.where("e")
    picked = f"WITH picked AS (SELECT * FROM events AS e WHERE {where}"

    counts: dict[str, dict[str, int]] = {}
    query = f'{picked}) SELECT "trigger", outcome, count(*) FROM picked GROUP BY 1, 2'
    for trigger, outcome, n in conn.execute(query, params):
        counts.setdefault(str(trigger), dict.fromkeys(OUTCOMES, 0))[str(outcome)] = int(n)
    triggers = tuple(
        TriggerCount(t, c["ok"], c["rejected"], c["failed"]) for t, c in sorted(counts.items())
    )

    query = "SELECT c.state, count(*) FROM containers AS c"
    state_params: list[object] = []
    if where != "1":
        query += f" WHERE c.id IN (SELECT e.container_id FROM events AS e WHERE {where})"
        state_params = params
    rows = conn.execute(query + " GROUP BY c.state", state_params).fetchall()
    states = tuple(StateCount(s, int(n)) for s, n in sorted(rows, key=lambda r: _state_order(r[0])))

    # Only failed transitions and hooks that warned hold failed hook runs
    # (a hook action stops at the first failure, and an ok transition's
    # hooks all succeeded): look at those events alone, not at every payload.
    hooks = view_select("hook_runs", "picked")
    query = (
        f"{picked} AND (e.outcome = 'failed' OR instr(e.payload, '\"warning\"') > 0)) "
        f"SELECT point, result, count(*) FROM ({hooks}) WHERE result != 'ok' GROUP BY 1, 2"
    )
    failures: dict[str, dict[str, int]] = {}
    for point, result, n in conn.execute(query, params):
        failures.setdefault(str(point), {"failed": 0, "warned": 0})[str(result)] = int(n)
    hook_failures = tuple(
        HookFailures(p, c["failed"], c["warned"]) for p, c in sorted(failures.items())
    )

    durations = view_select("transition_durations", "picked")
    query = (
        f"{picked} AND e.outcome != 'rejected') "
        'SELECT event_id, container_id, seq, time_ns, "trigger", source, dest, outcome, '
        f"actions, duration_ms FROM ({durations}) ORDER BY duration_ms DESC, event_id LIMIT ?"
    )
    slowest = tuple(SlowTransition(*row) for row in conn.execute(query, [*params, top]))

    spans = [
        PrunedSpan("", int(n), int(first), int(last))
        for n, first, last in conn.execute(
            "SELECT pruned, first_ns, last_ns FROM chain_anchors WHERE node = '' AND log = ''"
        )
    ]
    return Summary(
        filters.since_ns,
        filters.until_ns,
        where != "1",
        triggers,
        states,
        hook_failures,
        slowest,
        overlapping(spans, filters.since_ns, filters.until_ns),
    )


def transition_timing(outcome: str, payload: str) -> tuple[int | None, float | None, int | None]:
    """The actions a transition completed and the ms they took, as the
    ``transition_durations`` view counts them (engine.eventlog.schema), and
    how many of its hook runs failed or warned (``hook_runs``)."""
    if outcome == "rejected" and '"exit_code"' not in payload:
        return None, None, None
    doc = orjson.loads(payload)
    failed = None
    if '"exit_code"' in payload:  # a hook ran: every run records its exit code
        failed = sum(result != "ok" for _, result in hook_results(outcome, doc)) or None
    if outcome == "rejected":
        return None, None, failed
    done = doc.get("done" if outcome == "failed" else "actions")
    if not isinstance(done, list):
        return 0, 0.0, failed
    numbers = (a.get("ms") for a in done if isinstance(a, dict))
    total = sum(ms for ms in numbers if isinstance(ms, int | float))
    return len(done), round(float(total), 3), failed
