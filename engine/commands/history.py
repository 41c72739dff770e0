"""``runlog history ID``: one container's life, event by event.

Each transition with what its actions did (the init's pid, each hook's exit
code and duration, signals sent, the exit status), each failure with what
was undone, each rejected request, and who sent every one of them.
``--format jsonl`` writes the events as ``runlog audit`` does. An id with
no events is runc's "container does not exist".

Containers that share an id are different lives: one life ends with its
delete, and another --root (or, in the cluster's database, another node or
log) is another life, and so is each log of several read at once
(``--db`` more than once, or a glob). The latest is shown; ``--all`` shows every one.
"""

from __future__ import annotations

import os
import sys

from engine.audit.describe import describe
from engine.errors import ContainerNotFound
from engine.eventlog.record import Event
from engine.settings import Settings
from engine.status import Outcome, Status

__all__ = ["describe", "lives", "main"]


def lives(events: list[Event]) -> list[list[Event]]:
    """``events`` (each log's in seq order) cut into lives: after a delete,
    and where the node, the log or the recorded root changes."""
    out: list[list[Event]] = []
    last: Event | None = None
    for event in events:
        if (
            last is None
            or (last.outcome == Outcome.OK and last.dest == Status.DELETED)
            or (event.node, event.log) != (last.node, last.log)
            or (event.root is not None and last.root is not None and event.root != last.root)
        ):
            out.append([])
        out[-1].append(event)
        last = event
    return out


def _state(life: list[Event]) -> str | None:
    state = None
    for event in life:
        if event.outcome == Outcome.OK and event.dest is not None:
            state = event.dest
    return state


def _read(settings: Settings, flags: dict[str, object], container_id: str) -> list[Event]:
    from engine.audit import logdb
    from engine.audit.cluster import is_cluster_url
    from engine.audit.multi import logs_of, open_readers

    logs = logs_of(settings.db, flags)
    # No event log yet means no container yet: say so as runc would, and
    # leave no empty database behind.
    one = logs[0] if len(logs) == 1 else None
    if one and not is_cluster_url(one):
        try:
            os.stat(logdb.sqlite_path(one))
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        except OSError:
            pass  # not ours to read: the open says so, naming the log
    node = flags.get("node")
    with open_readers(logs) as reader:
        return reader.history(container_id, node=None if node is None else str(node))


def _in_log(event: Event) -> str:
    """Where a life was read from, when several logs were (root's --db A
    --db B); the empty string for one log."""
    return f" in log {event.log}" if event.node is None and event.log else ""


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit import render

    container_id = args[0]
    events = _read(settings, flags, container_id)
    if not events:
        raise ContainerNotFound(container_id)
    found = sorted(lives(events), key=lambda life: life[-1].time_ns)
    shown = found if flags.get("all") else found[-1:]
    if flags.get("format") == "jsonl":
        render.write_events(sys.stdout, [e for life in shown for e in life], "jsonl")
        return 0
    for n, life in enumerate(shown):
        if len(found) > 1:
            number = found.index(life) + 1
            first = life[0]
            where = f" on {first.node}, log {first.log}" if first.node else _in_log(first)
            root = f", root {first.root}" if first.root else ""
            sep = "\n" if n else ""
            sys.stdout.write(f"{sep}life {number} of {len(found)}{where}{root}\n")
        elif life[0].node is None and life[0].log is not None:
            sys.stdout.write(f"{_in_log(life[0]).strip()}\n")
        render.write_history(sys.stdout, life, _state(life))
    return 0
