"""Writing events and summaries: aligned tables, JSON lines, CSV.

Tables are for people (local times, words); JSON lines are for programs
(one orjson object per line, sorted keys, UTC times with nanoseconds, the
payload as recorded); CSV is for spreadsheets (flat columns, the payload as
a JSON string). The choice of format is the caller's.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from engine.audit.describe import action_detail, actor_text, describe, hook_run_text
from engine.audit.summary import Summary
from engine.audit.times import local_iso, utc_iso
from engine.eventlog.record import Event

__all__ = [
    "FORMATS",
    "aligned",
    "event_json",
    "write_events",
    "write_history",
    "write_summary",
]

FORMATS = ("table", "jsonl", "csv")
GAP = "  "

CSV_COLUMNS = (
    "id",
    "time",
    "time_ns",
    "container_id",
    "seq",
    "trigger",
    "source",
    "dest",
    "outcome",
    "actor_uid",
    "actor_pid",
    "actor_transport",
    "machine_digest",
    "detail",
    "payload",
    "node",
    "actor_user",
    "actor_loginuid",
    "job",
    "log",
)


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last is not, so no line ends in spaces."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        GAP.join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
        for r in rows
    ]


def transition_text(source: str | None, dest: str | None) -> str:
    return f"{source or '-'} → {dest or '-'}"


def event_json(event: Event) -> bytes:
    record = event.to_dict()
    record["time"] = utc_iso(event.time_ns)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def write_events(out: TextIO, events: Sequence[Event], fmt: str) -> None:
    """Write ``events`` in ``fmt``."""
    if fmt == "jsonl":
        for event in events:
            out.write(event_json(event).decode() + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in events:
            writer.writerow(
                (
                    e.id,
                    utc_iso(e.time_ns),
                    e.time_ns,
                    e.container_id,
                    e.seq,
                    e.trigger,
                    e.source or "",
                    e.dest or "",
                    e.outcome,
                    "" if e.actor.uid is None else e.actor.uid,
                    "" if e.actor.pid is None else e.actor.pid,
                    e.actor.transport,
                    e.machine_digest,
                    describe(e),
                    orjson.dumps(e.payload, option=orjson.OPT_SORT_KEYS).decode(),
                    e.node or "",
                    e.actor.user or "",
                    "" if e.actor.loginuid is None else e.actor.loginuid,
                    e.actor.job or "",
                    e.log or "",
                )
            )
        return
    # Events of several node logs read at once (engine.audit.multi) name
    # their log; a cluster database's name their node.
    logs = any(e.node is None and e.log is not None for e in events)
    rows: list[tuple[str, ...]] = [
        (
            "TIME",
            *(("LOG",) if logs else ()),
            "CONTAINER",
            "SEQ",
            "TRIGGER",
            "TRANSITION",
            "OUTCOME",
            "ACTOR",
            "DETAIL",
        )
    ]
    for e in events:
        rows.append(
            (
                local_iso(e.time_ns),
                *((e.log or "",) if logs else ()),
                e.container_id if e.node is None else f"{e.container_id}@{e.node}",
                str(e.seq),
                e.trigger,
                transition_text(e.source, e.dest),
                e.outcome,
                actor_text(e),
                describe(e),
            )
        )
    for line in aligned(rows):
        out.write(line + "\n")


def _summary_records(summary: Summary) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {
            "section": "window",
            "since_ns": summary.since_ns,
            "until_ns": summary.until_ns,
            "since": None if summary.since_ns is None else utc_iso(summary.since_ns),
            "until": None if summary.until_ns is None else utc_iso(summary.until_ns),
            "events": summary.events,
        }
    ]
    records += [
        {
            "section": "trigger",
            "trigger": t.trigger,
            "ok": t.ok,
            "rejected": t.rejected,
            "failed": t.failed,
        }
        for t in summary.triggers
    ]
    records += [
        {
            "section": "pruned",
            "log": p.log,
            "events": p.events,
            "first": utc_iso(p.first_ns),
            "last": utc_iso(p.last_ns),
        }
        for p in summary.pruned
    ]
    records += [
        {"section": "state", "state": s.state, "containers": s.containers} for s in summary.states
    ]
    records += [
        {"section": "hook_failures", "point": h.point, "failed": h.failed, "warned": h.warned}
        for h in summary.hook_failures
    ]
    records += [
        {
            "section": "slowest",
            "event_id": s.event_id,
            "container_id": s.container_id,
            "seq": s.seq,
            "time": utc_iso(s.time_ns),
            "trigger": s.trigger,
            "source": s.source,
            "dest": s.dest,
            "outcome": s.outcome,
            "actions": s.actions,
            "duration_ms": s.duration_ms,
        }
        for s in summary.slowest
    ]
    return records


def _summary_csv(out: TextIO, summary: Summary) -> None:
    # One long table (section, key, measure, value): every section fits it,
    # and spreadsheets and BI tools pivot it as they like.
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "key", "measure", "value"))
    writer.writerow(("window", "all", "events", summary.events))
    for p in summary.pruned:
        writer.writerow(("pruned", p.log, "events", p.events))
    for t in summary.triggers:
        for measure in ("ok", "rejected", "failed"):
            writer.writerow(("trigger", t.trigger, measure, getattr(t, measure)))
    for s in summary.states:
        writer.writerow(("state", s.state or "", "containers", s.containers))
    for h in summary.hook_failures:
        writer.writerow(("hook_failures", h.point, "failed", h.failed))
        writer.writerow(("hook_failures", h.point, "warned", h.warned))
    for sl in summary.slowest:
        writer.writerow(("slowest", f"{sl.container_id}:{sl.seq}", "duration_ms", sl.duration_ms))


def write_summary(out: TextIO, summary: Summary, fmt: str) -> None:
    if fmt == "jsonl":
        for record in _summary_records(summary):
            out.write(orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        return
    if fmt == "csv":
        _summary_csv(out, summary)
        return
    since = "the beginning" if summary.since_ns is None else local_iso(summary.since_ns)
    until = "now" if summary.until_ns is None else local_iso(summary.until_ns)
    lines = [f"from {since} until {until}: {summary.events:,} events"]
    for span in summary.pruned:
        where = f" of {span.log}" if span.log else ""
        lines.append(
            f"pruned: {span.events:,} events{where} from {local_iso(span.first_ns)} to "
            f"{local_iso(span.last_ns)} were removed (runlog db prune) and are not counted"
        )
    lines.append("")
    rows: list[tuple[str, ...]] = [("TRIGGER", "OK", "REJECTED", "FAILED", "TOTAL")]
    rows += [
        (t.trigger, f"{t.ok:,}", f"{t.rejected:,}", f"{t.failed:,}", f"{t.total:,}")
        for t in summary.triggers
    ]
    lines += aligned(rows) if summary.triggers else ["no events"]
    scope = "with an event the filters match" if summary.filtered else "all"
    lines += ["", f"CONTAINERS BY STATE NOW ({scope})"]
    rows = [("STATE", "CONTAINERS")]
    rows += [(s.state or "(never created)", f"{s.containers:,}") for s in summary.states]
    lines += aligned(rows) if summary.states else ["none"]
    lines += ["", "HOOK FAILURES BY POINT"]
    rows = [("POINT", "FAILED", "WARNED")]
    rows += [(h.point, f"{h.failed:,}", f"{h.warned:,}") for h in summary.hook_failures]
    lines += aligned(rows) if summary.hook_failures else ["none"]
    lines += ["", "SLOWEST TRANSITIONS (time their actions took)"]
    rows = [("MS", "TIME", "CONTAINER", "SEQ", "TRIGGER", "TRANSITION", "OUTCOME")]
    rows += [
        (
            f"{s.duration_ms:.3f}",
            local_iso(s.time_ns),
            s.container_id,
            str(s.seq),
            s.trigger,
            transition_text(s.source, s.dest),
            s.outcome,
        )
        for s in summary.slowest
    ]
    lines += aligned(rows) if summary.slowest else ["none"]
    out.write("\n".join(lines) + "\n")


def _action_rows(records: Sequence[Any], mark: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for record in records:
        if not isinstance(record, dict):
            continue
        ms = record.get("ms")
        took = f"{ms:.3f} ms" if isinstance(ms, int | float) else ""
        detail = action_detail(record.get("result") or {})
        rows.append((str(record.get("action")), took, " ".join(filter(None, (detail, mark)))))
    return rows


def _event_lines(event: Event) -> list[str]:
    """The indented lines under one event of a history: what each action did."""
    payload = event.payload
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    if event.outcome == "ok":
        rows = _action_rows(payload.get("actions", []))
    elif event.outcome == "failed":
        undone = set(payload.get("undone", []))
        for label, took, detail in _action_rows(payload.get("done", [])):
            mark = "(undone)" if label in undone else "(not undone)"
            rows.append((label, took, f"{detail} {mark}".strip()))
        runs = (payload.get("details") or {}).get("runs") or []
        failing = "; ".join(hook_run_text(r) for r in runs if isinstance(r, dict))
        rows.append((str(payload.get("action")), "FAILED", failing))
        notes.append(f"failed: {describe(event)}")
        notes += [f"undo error: {e}" for e in payload.get("undo_errors", [])]
    else:
        notes.append(f"rejected: {payload.get('error')}")
    request = payload.get("request")
    if request and event.outcome != "ok":
        notes.append("request: " + orjson.dumps(request, option=orjson.OPT_SORT_KEYS).decode())
    if "raced_with_seq" in payload:
        notes.append(f"recorded after a concurrent writer's seq {payload['raced_with_seq']}")
    return ["     " + line for line in aligned(rows)] + ["     " + n for n in notes]


def write_history(out: TextIO, events: Sequence[Event], state: str | None) -> None:
    """One container's life: each event, then what its actions did."""
    first, last = events[0], events[-1]
    now = state or "never created"
    out.write(
        f"container {first.container_id}: {now}; {len(events)} events from "
        f"{local_iso(first.time_ns)} to {local_iso(last.time_ns)}; "
        f"machine sha256 {first.machine_digest[:12]}\n\n"
    )
    rows: list[tuple[str, ...]] = [("SEQ", "TIME", "TRIGGER", "TRANSITION", "OUTCOME", "BY")]
    for e in events:
        by = actor_text(e)
        if e.payload.get("noticed_during"):
            by += f" (noticed during {e.payload['noticed_during']})"
        rows.append(
            (
                str(e.seq),
                local_iso(e.time_ns),
                e.trigger,
                transition_text(e.source, e.dest),
                e.outcome,
                by,
            )
        )
    header, *lines = aligned(rows)
    out.write(header + "\n")
    digest = first.machine_digest
    for event, line in zip(events, lines, strict=True):
        if event.machine_digest != digest:
            out.write(f"     (machine sha256 {event.machine_digest[:12]} from here on)\n")
            digest = event.machine_digest
        out.write(line + "\n")
        for sub in _event_lines(event):
            out.write(sub + "\n")
