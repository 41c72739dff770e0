"""``runlog history ID``: one container's life, event by event.

Each transition with what its actions did (the init's pid, each hook's exit
code and duration, signals sent, the exit status), each failure with what
was undone, each rejected request, and who sent every one of them.
``--format jsonl`` writes the events as ``runlog audit`` does. An id with
no events is runc's "container does not exist".
"""

from __future__ import annotations

import os
import sys

from engine.audit.describe import describe
from engine.errors import ContainerNotFound
from engine.settings import Settings

__all__ = ["describe", "main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit import logdb, query, render
    from engine.eventlog import sql

    container_id = args[0]
    # No event log yet means no container yet: say so as runc would, and
    # leave no empty database behind.
    if not os.path.exists(logdb.sqlite_path(settings.db)):
        raise ContainerNotFound(container_id)
    conn = logdb.open_log(settings.db)
    try:
        events = query.history(conn, container_id)
        row = conn.execute(sql.SELECT_CONTAINER, (container_id,)).fetchone()
    finally:
        conn.close()
    if not events:
        raise ContainerNotFound(container_id)
    state = None if row is None else row[sql.CONTAINER_COLUMNS.index("state")]
    if flags.get("format") == "jsonl":
        render.write_events(sys.stdout, events, "jsonl")
    else:
        render.write_history(sys.stdout, events, state)
    return 0
