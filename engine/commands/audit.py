"""``runlog audit``: events across containers, filtered; or a summary of a window.

Filters (``--id``, ``--since``/``--until``, ``--trigger``, ``--outcome``,
``--actor-uid``, ``--transport``, ``--state``) narrow; ``--limit N`` keeps
the latest N events. ``--summary`` counts instead of listing. Output is a
table on a terminal and JSON lines otherwise, unless ``--format`` says.
"""

from __future__ import annotations

import sys
import time

from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit import logdb, query, render
    from engine.audit.filters import Filters
    from engine.audit.summary import DEFAULT_TOP, summarize

    filters = Filters.from_flags(flags, time.time_ns())
    fmt = str(flags.get("format") or ("table" if sys.stdout.isatty() else "jsonl"))
    conn = logdb.open_log(settings.db)
    try:
        query.check_ids(conn, filters, settings.db)
        if flags.get("summary"):
            summary = summarize(conn, filters, top=filters.limit or DEFAULT_TOP)
            render.write_summary(sys.stdout, summary, fmt)
            return 0
        events = query.select_events(conn, filters)
    finally:
        conn.close()
    if not events and fmt == "table":
        sys.stdout.write("no events match\n")
        return 0
    render.write_events(sys.stdout, events, fmt)
    return 0
