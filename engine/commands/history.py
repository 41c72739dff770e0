"""``runlog history ID``: one container's life, event by event."""

from __future__ import annotations

import sys
import time
from typing import Any

from engine.errors import ContainerNotFound
from engine.eventlog import open_store
from engine.eventlog.record import Event
from engine.settings import Settings

__all__ = ["describe", "main"]


def _when(ns: int) -> str:
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs)) + f".{rest // 1_000_000:03d}"


def _action_detail(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    label = str(record.get("action"))
    bits = [f"{k}={v}" for k, v in result.items() if k in ("pid", "signal", "exit_code")]
    for hook in result.get("hooks", []) or result.get("runs", []):
        bits.append(f"{hook.get('path')}→{hook.get('exit_code')}")
    if "warning" in result:
        bits.append(f"warning: {result['warning']}")
    return f"{label}({', '.join(bits)})" if bits else label


def describe(event: Event) -> str:
    """A one-line summary of what the event says happened."""
    payload = event.payload
    if event.outcome == "rejected":
        return str(payload.get("error", ""))
    if event.outcome == "failed":
        undone = ", ".join(payload.get("undone", [])) or "nothing"
        return f"{payload.get('action')}: {payload.get('error')} (undone: {undone})"
    return " ".join(_action_detail(r) for r in payload.get("actions", []))


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    container_id = args[0]
    with open_store(settings.db) as store:
        events = store.history(container_id)
    if not events:
        raise ContainerNotFound(container_id)
    out = sys.stdout
    if flags.get("format") == "jsonl":
        import orjson

        for event in events:
            out.write(orjson.dumps(event.to_dict(), option=orjson.OPT_SORT_KEYS).decode() + "\n")
        return 0
    rows = [("SEQ", "TIME", "TRIGGER", "TRANSITION", "OUTCOME", "ACTOR", "DETAIL")]
    for e in events:
        actor = f"{e.actor.transport}:{e.actor.uid}/{e.actor.pid}"
        move = f"{e.source or '-'} → {e.dest or '-'}"
        rows.append((str(e.seq), _when(e.time_ns), e.trigger, move, e.outcome, actor, describe(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        out.write("  ".join([*cells, row[6]]).rstrip() + "\n")
    return 0
