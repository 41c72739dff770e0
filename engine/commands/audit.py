"""``runlog audit``: events across containers, filtered; or a summary of a window.

Filters (``--id``, ``--since``/``--until``, ``--trigger``, ``--outcome``,
``--actor-uid``, ``--transport``, ``--state``, ``--node``, ``--user``,
``--job``) narrow; ``--limit N`` keeps the latest N events. ``--summary``
counts instead of listing; ``--verify`` walks the hash chain and names the
first broken link (exit 1), and compares each node log with what the
witness recorded of it (engine.audit.witness). ``--db`` may be a node's log or the cluster's
PostgreSQL database (``runlog ship``): one reader interface answers both
(engine.eventlog.store.EventReader). Several ``--db`` (or a glob) read
several logs as one, each event naming its log (engine.audit.multi).
Output is a table on a terminal and JSON lines otherwise, unless
``--format`` says.
"""

from __future__ import annotations

import os
import sys
import time

from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit import render
    from engine.audit.filters import Filters
    from engine.audit.multi import logs_of, open_readers
    from engine.audit.summary import DEFAULT_TOP

    filters = Filters.from_flags(flags, time.time_ns())
    fmt = str(flags.get("format") or ("table" if sys.stdout.isatty() else "jsonl"))
    if flags.get("verify"):
        return _verify(logs_of(settings.db, flags), flags.get("witness"))
    with open_readers(logs_of(settings.db, flags)) as reader:
        reader.check_ids(filters)
        if flags.get("summary"):
            summary = reader.summarize(filters, filters.limit or DEFAULT_TOP)
            render.write_summary(sys.stdout, summary, fmt)
            return 0
        events = reader.select_events(filters)
    if not events and fmt == "table":
        sys.stdout.write("no events match\n")
        return 0
    render.write_events(sys.stdout, events, fmt)
    return 0


def _verify(logs: list[str], witness_flag: object) -> int:
    """Each log's chain; each node log against the witness's record of it
    (where there is a witness directory); a deleted log the witness saw is
    said to be so."""
    from engine.audit.cluster import is_cluster_url
    from engine.audit.multi import open_readers
    from engine.audit.witness import WitnessError, check_log, witness_dir

    directory, named = witness_dir(witness_flag)
    if not os.path.isdir(directory):
        if named:
            raise WitnessError(f"witness directory {directory}: does not exist")
        directory = ""
    local = [log for log in logs if not is_cluster_url(log)]
    witnessed = {log: check_log(directory, log) for log in local} if directory else {}
    present = [log for log in logs if witnessed.get(log) is None or os.path.exists(log)]
    ok = True
    if present:
        with open_readers(present) as reader:
            checks = reader.verify()
            for check in checks:
                sys.stdout.write(check.line())
            if not checks:
                sys.stdout.write(f"event log {reader.location}: no events to verify\n")
            ok = all(c.broken is None for c in checks)
    for found in witnessed.values():
        if found is not None:
            sys.stdout.write(found.line())
            ok = ok and found.broken is None
    return 0 if ok else 1
