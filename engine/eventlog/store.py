"""The event store interface every driver implements.

Drivers: :mod:`engine.eventlog.sqlite` (DB-API, the hot path),
:mod:`engine.eventlog.memory` (tests, replay), :mod:`engine.eventlog.sa`
(any SQLAlchemy URL, e.g. PostgreSQL for a cluster-wide log). One contract
test case (``tests/eventlog/test_store_contract.py``) runs against each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.status import Actor

__all__ = ["EventStore", "next_state"]


def next_state(current: ContainerRow | None, new: NewEvent) -> str | None:
    """The projection's state after ``new``: only an ``ok`` event with a
    destination moves it; anything else leaves it (``None``: unchanged)."""
    if new.outcome == "ok" and new.dest is not None:
        return new.dest
    return None


class EventStore(ABC):
    """An append-only log of events with a per-container projection."""

    #: What every event appended here carries unless it says otherwise
    #: (:meth:`stamp`): the root of the container's life, and its manager's
    #: context (podman's id and name; engine.identity).
    life_root: str | None = None
    life_context: dict[str, str] | None = None

    def stamp(self, root: str | None, context: dict[str, str] | None = None) -> None:
        """Mark every event appended from now on with ``root`` and ``context``
        (the monitor of one container does, for its life)."""
        self.life_root = root
        self.life_context = context or None

    def stamped(self, event: NewEvent) -> NewEvent:
        """``event`` with this store's stamp, where it has none of its own."""
        if event.root is None:
            event.root = self.life_root
        context = self.life_context
        if context:
            actor = event.actor
            merged = {**context, **(actor.context or {})}
            event.actor = Actor(
                actor.uid, actor.pid, actor.transport, actor.user, actor.loginuid, merged
            )
        return event

    @abstractmethod
    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        """Append ``event`` as the container's next seq, and update its row in
        the projection in the same transaction.

        With ``expected_seq``, raise :class:`engine.errors.ConcurrencyError`
        unless the container's last seq is still that (0: no events yet).
        ``durable=False`` lets a store commit without waiting for the disk
        (queries a scheduler polls): the next durable commit carries it.
        """

    @abstractmethod
    def history(self, container_id: str, after_seq: int = 0) -> list[Event]:
        """The container's events with seq > ``after_seq``, in seq order."""

    @abstractmethod
    def events(self, after_id: int = 0, limit: int | None = None) -> list[Event]:
        """Events of all containers with id > ``after_id``, in id order."""

    @abstractmethod
    def container(self, container_id: str) -> ContainerRow | None:
        """The container's row in the projection, if it has any event."""

    @abstractmethod
    def containers(self) -> list[ContainerRow]:
        """Every container's row, by id."""

    @abstractmethod
    def archive_machine(self, digest: str, text: str, path: str | None = None) -> None:
        """Keep a machine definition's text under its digest (once), so a
        history can be replayed through the machine it was recorded with."""

    @abstractmethod
    def machine_text(self, digest: str) -> str | None:
        """The archived text of the machine with ``digest``, if any."""

    def close(self) -> None:  # noqa: B027 - optional for stores holding nothing
        """Release connections; the store is unusable afterwards."""

    def checkpoint(self) -> None:  # noqa: B027 - optional for stores without a log file
        """Move what a write-ahead log holds into the database, as far as
        no reader stops it; for a moment when the caller would be idle."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
