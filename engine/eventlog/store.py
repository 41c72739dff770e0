"""The event log's two halves: the write interface and the read interface.

:class:`EventStore`, the write half, appends; its drivers are
:mod:`engine.eventlog.sqlite` (DB-API, the hot path),
:mod:`engine.eventlog.memory` (tests, replay), :mod:`engine.eventlog.sa`
(any SQLAlchemy URL). One contract test case
(``tests/eventlog/test_store_contract.py``) runs against each.

:class:`EventReader`, the read half, answers what ``audit``, ``history``,
``replay`` and ``events --follow`` ask, of a node's SQLite log
(:class:`engine.audit.reader.SQLiteReader`, the DB-API) or of the cluster's
PostgreSQL database that ``runlog ship`` fills
(:class:`engine.audit.cluster.ClusterReader`, SQLAlchemy Core); readers
never write an event. Its contract test (``tests/pg/test_reader_contract.py``)
runs over an SQLite file, an in-memory SQLite database and PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from engine.eventlog.record import ContainerRow, Event, NewEvent
from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from engine.audit.filters import Filters
    from engine.audit.summary import Summary
    from engine.audit.verify import ChainCheck

__all__ = ["EventReader", "EventStore", "next_state"]


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


class EventReader(ABC):
    """Questions to an event log; never a write of an event.

    In a cluster database an event also names its ``node`` and ``log``,
    and its ``id`` is its id in that log; in a node's log both are None.
    """

    location: str

    @abstractmethod
    def check_ids(self, filters: Filters) -> None:
        """Raise UnknownContainer for an ``--id`` (or prefix) the log never saw."""

    @abstractmethod
    def select_events(self, filters: Filters) -> list[Event]:
        """Matching events in the log's order; with a limit, the latest ones."""

    @abstractmethod
    def history(
        self,
        container_id: str,
        *,
        until_seq: int | None = None,
        until_ns: int | None = None,
        node: str | None = None,
    ) -> list[Event]:
        """The id's events, each log's in seq order, up to a seq or a time."""

    @abstractmethod
    def container_ids(self, filters: Filters) -> list[str]:
        """Ids of the containers with an event the filters match, sorted."""

    @abstractmethod
    def summarize(self, filters: Filters, top: int) -> Summary:
        """``runlog audit --summary``."""

    @abstractmethod
    def verify(self) -> list[ChainCheck]:
        """Each chain the log holds, walked; the first broken link of each."""

    @abstractmethod
    def count_replay_rows(self, filters: Filters) -> int:
        """How many events :meth:`replay_rows` yields."""

    @abstractmethod
    def replay_rows(self, filters: Filters) -> Iterator[tuple[Any, ...]]:
        """Whole histories the filters select, as replay reads them
        (engine.audit.query.REPLAY_COLUMNS), each history's in seq order."""

    @abstractmethod
    def machine_text(self, digest: str) -> str | None:
        """An archived machine definition's text."""

    def remember(self, definition: Any) -> bool:
        """Archive the machine runlog runs with now, where the reader may."""
        return False

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
