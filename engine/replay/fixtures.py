"""Histories as JSON-lines fixture files: one container's events per file.

The format, version 1 (``runlog replay --export`` writes it; README,
"Audit and replay")::

    {"fixture": "runlog-history", "version": 1, "container_id": "web-1",
     "machine_digest": "<sha256 of the machine of its last event>",
     "machines": {"<sha256>": "<the machine's YAML, or null if unknown>"}}
    {"container_id": "web-1", "seq": 1, "trigger": "create", ...}   one line per event
    ...

The first line is the header; every other line is an event as
:meth:`engine.eventlog.record.Event.to_dict` writes it (keys sorted, so
files diff well). Carrying the machine texts makes a fixture replayable by
digest anywhere, without the event log it came from. Reading checks each
line and names the file and line of the first problem.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.eventlog.record import Event
from engine.replay.errors import FixtureError
from engine.status import OUTCOMES, Actor

__all__ = [
    "SUFFIX",
    "Fixture",
    "fixture_name",
    "machines_of",
    "read_fixture",
    "read_fixtures",
    "write_fixture",
]

KIND = "runlog-history"
VERSION = 1
#: Exported files end so; the pytest plugin collects files named so.
SUFFIX = ".history.jsonl"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


@dataclass(frozen=True, slots=True)
class Fixture:
    path: str
    container_id: str
    machine_digest: str
    machines: Mapping[str, str | None]
    events: tuple[Event, ...]


def fixture_name(container_id: str) -> str:
    """A file name for a container's history: the id when it is a safe name
    (runc's ids are), else a readable part and a hash of the id."""
    if container_id and set(container_id) <= _SAFE and not container_id.startswith("."):
        return container_id + SUFFIX
    readable = "".join(c if c in _SAFE else "_" for c in container_id)[:64].lstrip(".")
    tag = hashlib.sha256(container_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable or 'container'}-{tag}{SUFFIX}"


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def write_fixture(
    directory: Path, events: Sequence[Event], machines: Mapping[str, str | None]
) -> Path:
    """Write one container's ``events`` (seq order) to ``directory``; return the file.

    ``machines`` maps digests to texts; the header carries those the events use.
    """
    if not events:
        raise ValueError("a fixture needs at least one event")
    cid = events[0].container_id
    used = dict.fromkeys(e.machine_digest for e in events)
    header = {
        "fixture": KIND,
        "version": VERSION,
        "container_id": cid,
        "machine_digest": events[-1].machine_digest,
        "machines": {d: machines.get(d) for d in used},
    }
    path = directory / fixture_name(cid)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(_dumps(header) + b"\n")
        for event in events:
            fh.write(_dumps(event.to_dict()) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


class _Lines:
    """Checks on one file's values, raising FixtureError at its line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.line = 0

    def fail(self, problem: str) -> FixtureError:
        return FixtureError(self.path, self.line or None, problem)

    def get(self, record: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in record:
            raise self.fail(f"missing key {key!r}")
        value = record[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise self.fail(f"{key}: expected {_kind(kind)}, found {_json_kind(value)}")
        return value

    def optional(self, record: Mapping[str, Any], key: str, kind: type) -> Any:
        """A key a fixture may leave out (identity, life, chain): None then."""
        return self.get(record, key, (kind, type(None))) if key in record else None


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", type(None): "null"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _event(check: _Lines, record: Mapping[str, Any], cid: str) -> Event:
    opt_str = (str, type(None))
    opt_int = (int, type(None))
    actor = check.get(record, "actor", dict)
    outcome = check.get(record, "outcome", str)
    if outcome not in OUTCOMES:
        raise check.fail(f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    event = Event(
        check.get(record, "id", int) if "id" in record else 0,
        check.get(record, "container_id", str),
        check.get(record, "seq", int),
        check.get(record, "time_ns", int),
        check.get(record, "trigger", str),
        check.get(record, "source", opt_str),
        check.get(record, "dest", opt_str),
        outcome,
        Actor(
            check.get(actor, "uid", opt_int),
            check.get(actor, "pid", opt_int),
            check.get(actor, "transport", str),
            check.optional(actor, "user", str),
            check.optional(actor, "loginuid", int),
            check.optional(actor, "context", dict),
        ),
        check.get(record, "payload", dict),
        check.get(record, "machine_digest", str),
        check.optional(record, "root", str),
        check.optional(record, "prev_hash", str),
        check.optional(record, "hash", str),
    )
    if event.container_id != cid:
        raise check.fail(f"an event of container {event.container_id!r} in the history of {cid!r}")
    return event


def read_fixture(path: str | os.PathLike[str]) -> Fixture:
    name = os.fspath(path)
    check = _Lines(name)
    try:
        data = Path(name).read_bytes()
    except OSError as err:
        raise FixtureError(name, None, f"cannot read: {err.strerror or err}") from err
    header: dict[str, Any] | None = None
    events: list[Event] = []
    for check.line, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise check.fail(f"not valid JSON: {err}") from None
        if not isinstance(record, dict):
            raise check.fail(f"expected a JSON object, found {_json_kind(record)}")
        if header is None:
            header = _header(check, record)
            continue
        events.append(_event(check, record, header["container_id"]))
    if header is None:
        raise FixtureError(name, None, "empty: expected a header line and events")
    if not events:
        raise FixtureError(name, None, "a header but no events")
    return Fixture(
        name, header["container_id"], header["machine_digest"], header["machines"], tuple(events)
    )


def _header(check: _Lines, record: Mapping[str, Any]) -> dict[str, Any]:
    if record.get("fixture") != KIND:
        raise check.fail(
            f'not a runlog history: the first line must be a header {{"fixture": "{KIND}", ...}}'
        )
    version = check.get(record, "version", int)
    if version != VERSION:
        raise check.fail(f"fixture version {version} (this runlog reads {VERSION})")
    machines = check.get(record, "machines", dict)
    for digest, text in machines.items():
        if not (text is None or isinstance(text, str)):
            raise check.fail(f"machines.{digest}: expected a string or null")
    return {
        "container_id": check.get(record, "container_id", str),
        "machine_digest": check.get(record, "machine_digest", str),
        "machines": dict(machines),
    }


def read_fixtures(directory: str | os.PathLike[str]) -> list[Fixture]:
    """Every ``*.jsonl`` file in ``directory`` (not below it), by name."""
    root = Path(directory)
    if not root.is_dir():
        raise FixtureError(os.fspath(root), None, "is not a directory")
    files = sorted(p for p in root.iterdir() if p.suffix == ".jsonl" and p.is_file())
    if not files:
        raise FixtureError(os.fspath(root), None, "holds no fixture files (*.jsonl)")
    return [read_fixture(p) for p in files]


def machines_of(fixtures: Iterable[Fixture]) -> dict[str, str | None]:
    """Every machine text the fixtures carry, by digest."""
    found: dict[str, str | None] = {}
    for fixture in fixtures:
        for digest, text in fixture.machines.items():
            if text is not None or digest not in found:
                found[digest] = text
    return found
