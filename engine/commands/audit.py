"""``runlog audit``: events across containers, filtered; or a summary of a window.

Filters (``--id``, ``--since``/``--until``, ``--trigger``, ``--outcome``,
``--actor-uid``, ``--transport``, ``--state``, ``--node``, ``--user``,
``--job``) narrow; ``--limit N`` keeps
the latest N events. ``--summary`` counts instead of listing; ``--verify``
walks the hash chain and names the first broken link (exit 1). ``--db`` may
be a node's log or the cluster's PostgreSQL database (``runlog ship``). Output is a
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
    from engine.audit.cluster import is_cluster_url

    if is_cluster_url(settings.db):
        return _cluster(settings.db, flags, filters, fmt)
    if flags.get("verify"):
        from engine.audit.verify import verify_sqlite

        conn = logdb.open_log(settings.db)
        try:
            check = verify_sqlite(conn, settings.db)
        finally:
            conn.close()
        sys.stdout.write(check.line())
        return 0 if check.broken is None else 1
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


def _cluster(url: str, flags: dict[str, object], filters: object, fmt: str) -> int:
    """The same questions of the cluster's database (runlog ship)."""
    from engine.audit import render
    from engine.audit.cluster import ClusterReader
    from engine.audit.filters import Filters

    assert isinstance(filters, Filters)
    reader = ClusterReader(url)
    try:
        if flags.get("verify"):
            checks = reader.verify()
            for check in checks:
                sys.stdout.write(check.line())
            if not checks:
                sys.stdout.write(f"event log {reader.location}: no shipped events to verify\n")
            return 0 if all(c.broken is None for c in checks) else 1
        reader.check_ids(filters)
        if flags.get("summary"):
            render.write_summary(sys.stdout, reader.summarize(filters), fmt)
            return 0
        events = reader.select_events(filters)
    finally:
        reader.close()
    if not events and fmt == "table":
        sys.stdout.write("no events match\n")
        return 0
    render.write_events(sys.stdout, events, fmt)
    return 0
