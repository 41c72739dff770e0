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
        "root",
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
        root: str | None = None,
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
        self.root = root

    def chained(self, seq: int, payload_text: str) -> tuple[Any, ...]:
        """The values of ``CHAINED_COLUMNS`` (engine.eventlog.sql) as stored:
        what an INSERT writes before ``prev_hash`` and ``hash``."""
        actor = self.actor
        context = actor.context
        return (
            self.container_id,
            seq,
            self.time_ns,
            self.trigger,
            self.source,
            self.dest,
            self.outcome,
            actor.uid,
            actor.pid,
            actor.transport,
            payload_text,
            self.machine_digest,
            actor.user,
            actor.loginuid,
            None if context is None else context_text(context),
            None if context is None else context.get("slurm_job"),
            self.root,
        )

    def recorded(
        self, id: int, seq: int, prev_hash: str | None = None, hash: str | None = None
    ) -> Event:
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
            self.root,
            prev_hash,
            hash,
        )


def context_text(context: Mapping[str, str]) -> str:
    """An actor's context as stored: a JSON object, keys sorted."""
    from engine import jsonfast

    return jsonfast.dumps(dict(sorted(context.items())))


class Event:
    """One recorded event. ``id`` orders all events; ``seq`` one container's."""

    __slots__ = (
        "actor",
        "container_id",
        "dest",
        "hash",
        "id",
        "log",
        "machine_digest",
        "node",
        "outcome",
        "payload",
        "prev_hash",
        "root",
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
        root: str | None = None,
        prev_hash: str | None = None,
        hash: str | None = None,
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
        self.root = root
        self.prev_hash = prev_hash
        self.hash = hash
        # Where a cluster database got it from (runlog ship): None in a node's log.
        self.node: str | None = None
        self.log: str | None = None

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
            user,
            loginuid,
            context,
            _job,
            root,
            prev_hash,
            hash_,
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
            Actor(uid, pid, transport, user, loginuid, None if context is None else loads(context)),
            loads(payload),
            md,
            root,
            prev_hash,
            hash_,
        )

    def to_dict(self) -> dict[str, Any]:
        """Stable keys, for JSON lines and fixtures; identity, life and chain
        fields only where the event has them."""
        record: dict[str, Any] = {
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
        actor = self.actor
        extra: tuple[tuple[str, object], ...] = (
            ("user", actor.user),
            ("loginuid", actor.loginuid),
            ("context", actor.context),
        )
        record["actor"].update((k, v) for k, v in extra if v is not None)
        extra = (
            ("node", self.node),
            ("log", self.log),
            ("root", self.root),
            ("prev_hash", self.prev_hash),
            ("hash", self.hash),
        )
        record.update((k, v) for k, v in extra if v is not None)
        return record

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
