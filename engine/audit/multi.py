"""Several event logs read as one: root's view of a node.

``runlog --db A --db B audit`` (or ``--db 'GLOB'``, such as every user's log
the site configuration's ``{user}`` pattern names) reads each log with its
own reader (:func:`engine.audit.reader.open_reader`) and merges the answers:
events in time order, each saying which log it came from (its ``log`` is the
path given); one history per log (the same id in two logs is two lives);
replay's histories named ``ID@LOG``, each replayed from its own log; counts
added up; each log's chain verified on its own.

A log the caller may not read is refused, naming the file, as with one log:
permissions decide, not runlog.
"""

from __future__ import annotations

import glob
import heapq
import os
from collections.abc import Iterator, Sequence
from typing import Any

from engine.audit.errors import UnknownContainer
from engine.audit.filters import Filters
from engine.audit.summary import (
    HookFailures,
    PrunedSpan,
    StateCount,
    Summary,
    TriggerCount,
    _state_order,
)
from engine.audit.verify import ChainCheck
from engine.errors import UsageError
from engine.eventlog.record import Event
from engine.eventlog.store import EventReader

__all__ = ["MultiReader", "expand", "logs_of", "open_readers"]

_MAGIC = ("*", "?", "[")


def logs_of(settings_db: str, flags: dict[str, object]) -> list[str]:
    """The logs a reading command reads: every ``--db`` given (engine.cli
    puts them in its flags), else the one the settings name."""
    given = flags.get("db")
    dbs = [str(d) for d in given] if isinstance(given, list) else []
    return expand(dbs or [settings_db])


def expand(locations: Sequence[str]) -> list[str]:
    """``--db`` values as logs: a glob (not a URL, not an existing path)
    becomes the files it matches, sorted; each log once, in the order given."""
    from engine.audit.cluster import is_cluster_url

    found: list[str] = []
    for location in locations:
        if (
            is_cluster_url(location)
            or not any(m in location for m in _MAGIC)
            or os.path.exists(location)
        ):
            matches = [location]
        else:
            matches = sorted(p for p in glob.glob(location) if os.path.isfile(p))
            if not matches:
                raise UsageError(f"--db {location}: no event log matches this pattern")
        found += [m for m in matches if m not in found]
    return found


def open_readers(locations: Sequence[str]) -> EventReader:
    """One reader for the logs ``locations`` name: the log's own for one,
    a :class:`MultiReader` for several."""
    from engine.audit.reader import open_reader

    logs = expand(locations)
    if len(logs) == 1:
        return open_reader(logs[0])
    opened: list[tuple[str, EventReader]] = []
    try:
        for log in logs:
            opened.append((log, open_reader(log)))
    except BaseException:
        for _, reader in opened:
            reader.close()
        raise
    return MultiReader(opened)


def _from(log: str, events: list[Event]) -> list[Event]:
    """``events`` marked as read from ``log`` (a cluster's keep their own)."""
    for event in events:
        if event.node is None and event.log is None:
            event.log = log
    return events


def _order(event: Event) -> tuple[int, str, str, int]:
    return (event.time_ns, event.node or "", event.log or "", event.id)


class MultiReader(EventReader):
    """The readers of several logs, answering as one."""

    def __init__(self, readers: Sequence[tuple[str, EventReader]]) -> None:
        self.readers = list(readers)
        self.location = ", ".join(label for label, _ in self.readers)

    def close(self) -> None:
        for _, reader in self.readers:
            reader.close()

    def check_ids(self, filters: Filters) -> None:
        """An id (or prefix) is unknown only when no log has it."""
        for cid in filters.ids:
            self._known(Filters(ids=(cid,)), UnknownContainer(cid, self.location))
        for prefix in filters.prefixes:
            unknown = UnknownContainer(prefix, self.location, prefix=True)
            self._known(Filters(prefixes=(prefix,)), unknown)

    def _known(self, filters: Filters, unknown: UnknownContainer) -> None:
        for _, reader in self.readers:
            try:
                reader.check_ids(filters)
                return
            except UnknownContainer:
                continue
        raise unknown

    def select_events(self, filters: Filters) -> list[Event]:
        """Every log's matching events merged by time; with a limit, the
        latest of all (each log gives its latest, at most the limit)."""
        each = [_from(label, r.select_events(filters)) for label, r in self.readers]
        merged = list(heapq.merge(*each, key=_order))
        return merged if filters.limit is None else merged[-filters.limit :]

    def history(
        self,
        container_id: str,
        *,
        until_seq: int | None = None,
        until_ns: int | None = None,
        node: str | None = None,
    ) -> list[Event]:
        """The id's events, log by log (in the order given), each in seq order."""
        found: list[Event] = []
        for label, reader in self.readers:
            events = reader.history(container_id, until_seq=until_seq, until_ns=until_ns, node=node)
            found += _from(label, events)
        return found

    def container_ids(self, filters: Filters) -> list[str]:
        ids: set[str] = set()
        for _, reader in self.readers:
            ids.update(reader.container_ids(filters))
        return sorted(ids)

    def summarize(self, filters: Filters, top: int) -> Summary:
        """Each log's counts added up; the slowest transitions of all; each
        log's pruned span named by its log."""
        parts = [(label, r.summarize(filters, top)) for label, r in self.readers]
        triggers: dict[str, list[int]] = {}
        states: dict[str | None, int] = {}
        hooks: dict[str, list[int]] = {}
        for _, part in parts:
            for t in part.triggers:
                counts = triggers.setdefault(t.trigger, [0, 0, 0])
                counts[0] += t.ok
                counts[1] += t.rejected
                counts[2] += t.failed
            for s in part.states:
                states[s.state] = states.get(s.state, 0) + s.containers
            for h in part.hook_failures:
                both = hooks.setdefault(h.point, [0, 0])
                both[0] += h.failed
                both[1] += h.warned
        slowest = sorted(
            (s for _, part in parts for s in part.slowest), key=lambda s: -s.duration_ms
        )[:top]
        pruned = tuple(
            PrunedSpan(p.log or label, p.events, p.first_ns, p.last_ns)
            for label, part in parts
            for p in part.pruned
        )
        return Summary(
            filters.since_ns,
            filters.until_ns,
            any(part.filtered for _, part in parts),
            tuple(TriggerCount(t, *c) for t, c in sorted(triggers.items())),
            tuple(
                StateCount(s, n)
                for s, n in sorted(states.items(), key=lambda kv: _state_order(kv[0]))
            ),
            tuple(HookFailures(p, *c) for p, c in sorted(hooks.items())),
            tuple(slowest),
            pruned,
        )

    def verify(self) -> list[ChainCheck]:
        return [check for _, reader in self.readers for check in reader.verify()]

    def count_replay_rows(self, filters: Filters) -> int:
        return sum(reader.count_replay_rows(filters) for _, reader in self.readers)

    def replay_rows(self, filters: Filters) -> Iterator[tuple[Any, ...]]:
        """Each log's histories in turn, named ``ID@LOG``: the same id in two
        logs is two histories, each replayed from its own log."""
        for label, reader in self.readers:
            for row in reader.replay_rows(filters):
                yield (f"{row[0]}@{label}", *row[1:])

    def machine_text(self, digest: str) -> str | None:
        for _, reader in self.readers:
            text = reader.machine_text(digest)
            if text is not None:
                return text
        return None

    def remember(self, definition: Any) -> bool:
        remembered = False
        for _, reader in self.readers:
            remembered = reader.remember(definition) or remembered
        return remembered
