"""``--summary``: every count checked against the events themselves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from engine.audit import logdb
from engine.audit.filters import Filters
from engine.audit.summary import summarize
from engine.eventlog.record import Event

MINUTE = 60 * 1_000_000_000
DAY = 24 * 60 * MINUTE


@pytest.fixture
def conn(audit_log: Any) -> Iterator[Any]:
    connection = logdb.open_log(str(audit_log.path))
    yield connection
    connection.close()


def duration(event: Event) -> float:
    records = event.payload.get("done" if event.outcome == "failed" else "actions", [])
    return round(sum(r["ms"] for r in records), 3)


def final_states(events: list[Event]) -> Counter[str | None]:
    state: dict[str, str | None] = {}
    for e in events:
        state.setdefault(e.container_id, None)
        if e.outcome == "ok":
            state[e.container_id] = e.dest
    return Counter(state.values())


def test_whole_log(conn: Any, audit_log: Any) -> None:
    summary = summarize(conn, Filters())
    counts = Counter((e.trigger, e.outcome) for e in audit_log.events)
    got = {
        (t.trigger, o): getattr(t, o)
        for t in summary.triggers
        for o in ("ok", "rejected", "failed")
    }
    assert {k: v for k, v in got.items() if v} == dict(counts)
    assert summary.events == len(audit_log.events)
    assert {s.state: s.containers for s in summary.states} == dict(final_states(audit_log.events))
    assert [s.state for s in summary.states] == ["running", "paused", "deleted", None]
    assert not summary.filtered


def test_hook_failures_by_point(conn: Any, audit_log: Any) -> None:
    summary = summarize(conn, Filters())
    got = {(h.point, h.failed, h.warned) for h in summary.hook_failures}
    # db-1's createRuntime hook aborted its create; web-1's poststop hook warned.
    assert got == {("createRuntime", 1, 0), ("poststop", 0, 1)}


def test_slowest_transitions(conn: Any, audit_log: Any) -> None:
    summary = summarize(conn, Filters(), top=4)
    attempted = [e for e in audit_log.events if e.outcome != "rejected"]
    expected = sorted(attempted, key=lambda e: (-duration(e), e.id))[:4]
    assert [(s.container_id, s.seq) for s in summary.slowest] == [
        (e.container_id, e.seq) for e in expected
    ]
    for slow, event in zip(summary.slowest, expected, strict=True):
        assert slow.duration_ms == pytest.approx(duration(event), abs=1e-3)
        records = event.payload.get("done" if event.outcome == "failed" else "actions", [])
        assert slow.actions == len(records)


def test_a_window_counts_only_its_events_and_containers(conn: Any, audit_log: Any) -> None:
    start = audit_log.events[0].time_ns - MINUTE + 2 * DAY
    summary = summarize(conn, Filters(since_ns=start))
    inside = [e for e in audit_log.events if e.time_ns >= start]
    assert {e.container_id for e in inside} == {"db-1"}
    assert summary.events == len(inside)
    assert summary.filtered
    assert [(s.state, s.containers) for s in summary.states] == [("paused", 1)]
    assert [(h.point, h.failed, h.warned) for h in summary.hook_failures] == [
        ("createRuntime", 1, 0)
    ]
    assert {s.container_id for s in summary.slowest} == {"db-1"}


def test_an_empty_window(conn: Any, audit_log: Any) -> None:
    summary = summarize(conn, Filters(since_ns=audit_log.events[-1].time_ns + 1))
    assert summary.events == 0
    assert summary.triggers == summary.states == summary.hook_failures == summary.slowest == ()
