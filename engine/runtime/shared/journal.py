"""A container's journal: the events the log could not take, until it can.

When the event log cannot be written (a full disk, a read-only file) after
something happened that cannot be undone - a signal delivered, the init's
exit, a delete - the event goes here: ``<root>/<id>/journal``, one JSON
line per event, appended and fsynced before the request is answered. It
lives beside the container's state, on the state directory's file system
(usually a tmpfs), not the log's. :class:`engine.service.Service` writes the
journal's events into the log, in order, before anything newer, as soon as
the log takes writes again; then the journal is removed.

If the state directory is gone (a delete whose event the log refused), the
journal makes it again, holding only the journal: ``delete --force ID``
writes the journal into the log and removes it.
"""

from __future__ import annotations

import os

from engine import jsonfast
from engine.eventlog.record import NewEvent
from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["JOURNAL", "Journal"]

JOURNAL = "journal"


class Journal:
    """One container's journal file."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: Whether the file may hold events (checked on disk once, then kept).
        self.pending = os.path.exists(path)

    def add(self, event: NewEvent) -> None:
        """Append ``event`` and fsync it (and the directory, for a new file)."""
        line = (jsonfast.dumps(_encode(event)) + "\n").encode()
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        new = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _sync_dir(directory)
        self.pending = True

    def events(self) -> list[NewEvent]:
        """The journal's events, in the order they happened. A last line cut
        short (the monitor killed while writing it) was never acknowledged."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        events = []
        for line in data.splitlines():
            try:
                events.append(_decode(jsonfast.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return events

    def clear(self) -> None:
        """Every event is in the log: remove the file."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        else:
            _sync_dir(os.path.dirname(self.path))
        self.pending = False


def _encode(event: NewEvent) -> dict[str, Any]:
    actor = event.actor
    return {
        "container_id": event.container_id,
        "trigger": event.trigger,
        "source": event.source,
        "dest": event.dest,
        "outcome": event.outcome,
        "actor": {"uid": actor.uid, "pid": actor.pid, "transport": actor.transport},
        "machine_digest": event.machine_digest,
        "payload": event.payload,
        "time_ns": event.time_ns,
    }


def _decode(doc: dict[str, Any]) -> NewEvent:
    return NewEvent(
        doc["container_id"],
        doc["trigger"],
        doc["source"],
        doc["dest"],
        doc["outcome"],
        Actor(**doc["actor"]),
        doc["machine_digest"],
        doc["payload"],
        doc["time_ns"],
    )


def _sync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
