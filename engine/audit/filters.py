"""The audit filters: from command-line flags to an SQL condition on events.

Every filter narrows; values of one repeated flag are alternatives
(``--outcome rejected --outcome failed``). ``--id`` takes an exact id, or a
prefix written ``web-*``. ``--state`` picks containers by their state *now*
(the ``containers`` projection), the others pick events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.audit.times import parse_time
from engine.errors import UsageError
from engine.status import OUTCOMES, STATUSES, TRANSPORTS

__all__ = ["FILTER_FLAGS", "Filters", "local_node"]

# How much of the log a time bound is taken to keep, for the query planner.
_WINDOW = 0.05

#: The flags (dests) that are filters; ``runlog replay`` takes the same.
FILTER_FLAGS = (
    "id",
    "since",
    "until",
    "trigger",
    "outcome",
    "actor_uid",
    "transport",
    "state",
    "node",
    "user",
    "job",
)


def local_node() -> str:
    """This node's name, as ``runlog ship`` sends it by default."""
    import socket

    return socket.gethostname()


def _strings(flags: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = flags.get(key)
    if value is None or value is False:
        return ()
    if isinstance(value, str):
        return (value,)
    assert isinstance(value, list | tuple)
    return tuple(str(v) for v in value)


def _choices(values: tuple[str, ...], known: Sequence[str], flag: str) -> tuple[str, ...]:
    for value in values:
        if value not in known:
            raise UsageError(f"{flag}: unknown value {value!r} (one of: {', '.join(known)})")
    return values


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix``.

    SQLite compares TEXT by its UTF-8 bytes, which orders like code points,
    so a range ``prefix <= id < end`` is the prefix match, on the index.
    """
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(last + 1)


@dataclass(frozen=True, slots=True)
class Filters:
    ids: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    since_ns: int | None = None
    until_ns: int | None = None
    triggers: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    actor_uids: tuple[int, ...] = ()
    transports: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    limit: int | None = None

    @classmethod
    def from_flags(cls, flags: Mapping[str, object], now_ns: int) -> Filters:
        """Read the filter flags a command parsed; UsageError for a bad value."""
        ids: list[str] = []
        prefixes: list[str] = []
        for value in _strings(flags, "id"):
            if value.endswith("*") and len(value) > 1:
                prefixes.append(value[:-1])
            elif value and value != "*":
                ids.append(value)
            else:
                raise UsageError(f"--id: {value!r} names no container (ID, or a prefix as ID*)")
        uids: list[int] = []
        for value in _strings(flags, "actor_uid"):
            if not value.isdigit():
                raise UsageError(f"--actor-uid: {value!r} is not a uid (a number)")
            uids.append(int(value))
        limit = None
        if flags.get("limit") is not None:
            text = str(flags["limit"])
            if not text.isdigit() or int(text) == 0:
                raise UsageError(f"--limit: {text!r} is not a positive number")
            limit = int(text)
        since = until = None
        if flags.get("since"):
            since = parse_time(str(flags["since"]), now_ns, flag="--since")
        if flags.get("until"):
            until = parse_time(str(flags["until"]), now_ns, flag="--until")
        if since is not None and until is not None and since >= until:
            raise UsageError("--since must be before --until")
        return cls(
            ids=tuple(ids),
            prefixes=tuple(prefixes),
            since_ns=since,
            until_ns=until,
            triggers=_strings(flags, "trigger"),
            outcomes=_choices(_strings(flags, "outcome"), OUTCOMES, "--outcome"),
            actor_uids=tuple(uids),
            transports=_choices(_strings(flags, "transport"), TRANSPORTS, "--transport"),
            states=_choices(_strings(flags, "state"), STATUSES, "--state"),
            nodes=_strings(flags, "node"),
            users=_strings(flags, "user"),
            jobs=_strings(flags, "job"),
            limit=limit,
        )

    def nodes_here(self) -> tuple[str, ...]:
        """The nodes a node's own log holds events of, among those asked for."""
        here = local_node()
        return tuple(n for n in self.nodes if n == here)

    def where(self, alias: str = "e") -> tuple[str, list[object]]:
        """An SQL condition on ``events AS alias`` and its parameters."""
        terms: list[str] = []
        params: list[object] = []

        def any_of(column: str, values: Sequence[object]) -> None:
            if values:
                terms.append(f"{alias}.{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)

        if self.ids or self.prefixes:
            alternatives: list[str] = []
            if self.ids:
                alternatives.append(f"{alias}.container_id IN ({', '.join('?' * len(self.ids))})")
                params.extend(self.ids)
            for prefix in self.prefixes:
                end = _prefix_end(prefix)
                if end is None:
                    alternatives.append(f"substr({alias}.container_id, 1, ?) = ?")
                    params.extend((len(prefix), prefix))
                else:
                    alternatives.append(f"({alias}.container_id >= ? AND {alias}.container_id < ?)")
                    params.extend((prefix, end))
            terms.append("(" + " OR ".join(alternatives) + ")")
        # A time window is usually a small part of the log; told so, SQLite
        # reads it through the time index instead of scanning the table in
        # id order (ANALYZE cannot know, the bounds being parameters).
        if self.since_ns is not None:
            terms.append(f"likelihood({alias}.time_ns >= ?, {_WINDOW})")
            params.append(self.since_ns)
        if self.until_ns is not None:
            terms.append(f"likelihood({alias}.time_ns < ?, {_WINDOW})")
            params.append(self.until_ns)
        any_of('"trigger"', self.triggers)
        any_of("outcome", self.outcomes)
        any_of("actor_uid", self.actor_uids)
        any_of("actor_transport", self.transports)
        any_of("actor_user", self.users)
        any_of("job", self.jobs)
        if self.nodes and local_node() not in self.nodes:
            terms.append("0")  # a node's own log holds this node's events alone
        if self.states:
            marks = ", ".join("?" * len(self.states))
            terms.append(
                f"{alias}.container_id IN (SELECT id FROM containers WHERE state IN ({marks}))"
            )
            params.extend(self.states)
        return (" AND ".join(terms) or "1"), params
