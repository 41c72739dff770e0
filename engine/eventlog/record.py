"""The event log's records: an event, a new event to append, a container's head.

Slotted classes rather than dataclasses: these are built on the hot path,
where importing ``dataclasses`` alone costs three interpreter start-ups.
"""

from __future__ import annotations

import time

from engine.status import Actor

__all__ = ["ContainerRow", "Event", "NewEvent"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any


class NewEvent:
    """What a writer appends; the store assigns ``id`` and ``seq``."""

    __slots__ = (
        "actor",
        "container_id",
        "dest",
        "machine_digest",
        "outcome",
        "payload",
        "source",
        "time_ns",
        "trigger",
    )

    def __init__(
        self,
        container_id: str,
        trigger: str,
        source: str | None,
        dest: str | None,
        outcome: str,
        actor: Actor,
        machine_digest: str,
        payload: Mapping[str, Any] | None = None,
        time_ns: int | None = None,
    ) -> None:
        self.container_id = container_id
        self.trigger = trigger
        self.source = source
        self.dest = dest
        self.outcome = outcome
        self.actor = actor
        self.machine_digest = machine_digest
        self.payload: dict[str, Any] = dict(payload or {})
        self.time_ns = time.time_ns() if time_ns is None else time_ns

    def recorded(self, id: int, seq: int) -> Event:
        """The event as stored, once the store has given it an id and seq."""
        return Event(
            id,
            self.container_id,
            seq,
            self.time_ns,
            self.trigger,
            self.source,
            self.dest,
            self.outcome,
            self.actor,
            self.payload,
            self.machine_digest,
        )


class Event:
    """One recorded event. ``id`` orders all events; ``seq`` one container's."""

    __slots__ = (
        "actor",
        "container_id",
        "dest",
        "id",
        "machine_digest",
        "outcome",
        "payload",
        "seq",
        "source",
        "time_ns",
        "trigger",
    )

    def __init__(
        self,
        id: int,
        container_id: str,
        seq: int,
        time_ns: int,
        trigger: str,
        source: str | None,
        dest: str | None,
        outcome: str,
        actor: Actor,
        payload: dict[str, Any],
        machine_digest: str,
    ) -> None:
        self.id = id
        self.container_id = container_id
        self.seq = seq
        self.time_ns = time_ns
        self.trigger = trigger
        self.source = source
        self.dest = dest
        self.outcome = outcome
        self.actor = actor
        self.payload = payload
        self.machine_digest = machine_digest

    @classmethod
    def from_row(cls, row: Sequence[Any], loads: Callable[[Any], Any]) -> Event:
        """An event from a row in ``EVENT_COLUMNS`` order; ``loads`` decodes
        the payload (the C scanner on the hot path, orjson in bulk)."""
        (
            id_,
            cid,
            seq,
            time_ns,
            trigger,
            source,
            dest,
            outcome,
            uid,
            pid,
            transport,
            payload,
            md,
        ) = row
        return cls(
            id_,
            cid,
            seq,
            time_ns,
            trigger,
            source,
            dest,
            outcome,
            Actor(uid, pid, transport),
            loads(payload),
            md,
        )

    def to_dict(self) -> dict[str, Any]:
        """Stable keys, for JSON lines and fixtures."""
        return {
            "id": self.id,
            "container_id": self.container_id,
            "seq": self.seq,
            "time_ns": self.time_ns,
            "trigger": self.trigger,
            "source": self.source,
            "dest": self.dest,
            "outcome": self.outcome,
            "actor": {
                "uid": self.actor.uid,
                "pid": self.actor.pid,
                "transport": self.actor.transport,
            },
            "payload": self.payload,
            "machine_digest": self.machine_digest,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Event(id={self.id}, container_id={self.container_id!r}, seq={self.seq}, "
            f"trigger={self.trigger!r}, {self.source}->{self.dest}, {self.outcome})"
        )


class ContainerRow:
    """A container's head in the projection: its state and last seq.

    ``state`` is ``None`` for an id that never got past a rejected or failed
    request: as far as runlog is concerned, no such container exists.
    """

    __slots__ = ("created_ns", "id", "machine_digest", "seq", "state", "updated_ns")

    def __init__(
        self,
        id: str,
        state: str | None,
        seq: int,
        created_ns: int,
        updated_ns: int,
        machine_digest: str,
    ) -> None:
        self.id = id
        self.state = state
        self.seq = seq
        self.created_ns = created_ns
        self.updated_ns = updated_ns
        self.machine_digest = machine_digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContainerRow):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ContainerRow(id={self.id!r}, state={self.state!r}, seq={self.seq})"
