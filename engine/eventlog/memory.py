"""An in-memory event store: the same contract, no database.

Used by unit tests, by replay with side effects off, and by the fake-action
demo. Thread-safe, since a test may drive it from several threads.
"""

from __future__ import annotations

import copy
import threading

from engine import jsonfast
from engine.errors import ConcurrencyError
from engine.eventlog import chain
from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.eventlog.store import EventStore, next_state

__all__ = ["MemoryStore"]


class MemoryStore(EventStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._by_container: dict[str, list[Event]] = {}
        self._rows: dict[str, ContainerRow] = {}
        self._machines: dict[str, str] = {}

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        event = self.stamped(event)
        with self._lock:
            row = self._rows.get(event.container_id)
            last = 0 if row is None else row.seq
            if expected_seq is not None and expected_seq != last:
                raise ConcurrencyError(event.container_id, expected_seq, last)
            # Copy the payload as a database would: later changes to the
            # caller's dict must not rewrite history.
            copied = copy.deepcopy(event)
            prev_hash = self._events[-1].hash if self._events else chain.GENESIS
            assert prev_hash is not None
            values = copied.chained(last + 1, jsonfast.dumps(copied.payload))
            digest = chain.link(prev_hash, values)
            stored = copied.recorded(len(self._events) + 1, last + 1, prev_hash, digest)
            self._events.append(stored)
            self._by_container.setdefault(event.container_id, []).append(stored)
            state = next_state(row, event)
            if row is None:
                row = ContainerRow(
                    event.container_id,
                    state,
                    stored.seq,
                    event.time_ns,
                    event.time_ns,
                    event.machine_digest,
                )
                self._rows[event.container_id] = row
            else:
                row.state = state if state is not None else row.state
                row.seq = stored.seq
                row.updated_ns = event.time_ns
                row.machine_digest = event.machine_digest
            return copy.deepcopy(stored)

    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            found = self._by_container.get(container_id, [])
            return [copy.deepcopy(e) for e in found if e.seq > after_seq]

    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            found = self._events[after_id:]
            return [copy.deepcopy(e) for e in found[:limit]]

    def container(self, container_id: str) -> ContainerRow | None:
        with self._lock:
            row = self._rows.get(container_id)
            return None if row is None else copy.copy(row)

    def archive_machine(self, digest: str, text: str, path: str | None = None) -> None:
        with self._lock:
            self._machines.setdefault(digest, text)

    def machine_text(self, digest: str) -> str | None:
        with self._lock:
            return self._machines.get(digest)

    def containers(self) -> list[ContainerRow]:
        with self._lock:
            return [copy.copy(self._rows[k]) for k in sorted(self._rows)]
