"""``runlog replay``: recorded histories through a machine definition.

Four modes:

- ``--id ID [--until SEQ|TIME]`` (fold): the state a container's events
  lead to, at the end or at a point in time;
- ``--all`` (verify): every recorded history, or those the audit filters
  select, replayed; each divergence is named; exit 1 if any;
- ``--export DIR``: histories written as fixture files;
- ``--fixtures DIR``: fixture files replayed as ``--all`` does, no database.

By default each history goes through the machine it was recorded with
(found by its digest, :mod:`engine.replay.machines`); ``--machine FILE``
puts every history through FILE instead - the question a changed
``statemachine.yaml`` asks before it is deployed.

Several logs (``--db`` more than once, or a glob) are replayed each from its
own: a history is one container's in one log, named ``ID@LOG`` (as the
cluster's database names them ``ID@NODE:LOG``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engine.errors import MachineError, UsageError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.audit.filters import Filters
    from engine.eventlog.store import EventReader
    from engine.machine.definition import MachineDefinition
    from engine.replay.fold import HistoryResult, Replay
    from engine.replay.machines import MachineCatalog

__all__ = ["main"]

_MODES = ("all", "export", "fixtures")


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit.filters import FILTER_FLAGS, Filters
    from engine.machine.definition import load, resolve

    modes = [m for m in _MODES if flags.get(m)]
    if len(modes) > 1:
        raise UsageError("runlog replay: --all, --export and --fixtures are separate modes")
    ids = flags.get("id") or []
    if not modes and not ids:
        raise UsageError(
            "runlog replay: what to replay? --id ID (its state), --all (verify every "
            "history), --fixtures DIR (verify fixture files) or --export DIR"
        )
    fmt = str(flags.get("format") or "table")
    override = load(str(flags["machine"])) if flags.get("machine") else None

    loaded: list[MachineDefinition] = []

    def current() -> MachineDefinition:
        """The machine runlog runs with now (--machine before the command,
        RUNLOG_MACHINE, the default), loaded once and only if needed."""
        if not loaded:
            loaded.append(load(resolve(settings.machine, {})))
        return loaded[0]

    if modes == ["fixtures"]:
        given = [f for f in FILTER_FLAGS if flags.get(f)]
        if given:
            names = ", ".join("--" + f.replace("_", "-") for f in given)
            raise UsageError(
                f"runlog replay --fixtures replays every file; {names} select in an event log"
            )
        return _fixtures(Path(str(flags["fixtures"])), override, current, fmt, flags)

    from engine.audit.multi import logs_of, open_readers

    logs = logs_of(settings.db, flags)
    if modes == ["export"] and len(logs) > 1:
        raise UsageError(
            f"runlog replay --export: one log at a time ({len(logs)} given); "
            "a fixture holds one container's history from one log"
        )
    if not modes:
        extra = [f for f in FILTER_FLAGS if f not in ("id", "until") and flags.get(f)]
        if extra:
            names = ", ".join("--" + f.replace("_", "-") for f in extra)
            raise UsageError(f"runlog replay --id: {names} need --all or --export")
        fold_flags = {"id": ids}
        filters = Filters.from_flags(fold_flags, time.time_ns())
    else:
        filters = Filters.from_flags(flags, time.time_ns())
    with open_readers(logs) as reader:
        reader.check_ids(filters)
        catalog = _catalog(reader, override, current)
        if modes == ["export"]:
            return _export(reader, filters, catalog, Path(str(flags["export"])))
        if modes == ["all"]:
            return _verify_log(reader, filters, catalog, fmt, flags)
        return _fold(reader, filters.ids, flags.get("until"), catalog, fmt)


def _catalog(
    reader: EventReader,
    override: MachineDefinition | None,
    current: Callable[[], MachineDefinition],
) -> MachineCatalog:
    from engine.replay.machines import MachineCatalog

    archived = reader.machine_text
    if override is None:
        # Archive today's machine while its file still says what the log's
        # containers ran under: after statemachine.yaml changes, replay by
        # digest still finds it.
        try:
            now = current()
        except MachineError:
            pass  # reported if a replay needs it
        else:
            reader.remember(now)
    return MachineCatalog(override=override, archived=archived, current=current)


def _machine_text(catalog: MachineCatalog) -> str:
    if catalog.override is not None:
        o = catalog.override
        return f"through {o.path} (sha256 {o.digest[:12]})"
    return "through the machines they were recorded with"


def _notes(catalog: MachineCatalog) -> None:
    for note in catalog.notes:
        sys.stderr.write(f"runlog replay: note: {note}\n")


def _divergence_lines(history: HistoryResult) -> list[str]:
    from engine.audit.times import local_iso

    return [
        f"  seq {d.seq}  {local_iso(d.time_ns)}  {d.event_text()}: {d.message()}"
        for d in history.divergences
    ]


def _report(out: TextIO, result: Replay, catalog: MachineCatalog, fmt: str, verbose: bool) -> int:
    import orjson

    _notes(catalog)
    divergent = result.divergent
    if fmt == "jsonl":
        for h in result.histories.values():
            record: dict[str, Any] = {
                "kind": "history",
                "container_id": h.container_id,
                "events": h.events,
                "agrees": h.agrees,
                "state": h.state,
                "seq": h.seq,
                "divergences": [d.to_dict() for d in h.divergences],
            }
            out.write(orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        total = {
            "kind": "total",
            "events": result.events,
            "histories": len(result.histories),
            "diverge": len(divergent),
            "seconds": round(result.seconds, 6),
            "events_per_second": round(result.rate),
            "sources": catalog.sources,
        }
        out.write(orjson.dumps(total, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        return 1 if divergent else 0
    for h in result.histories.values():
        if h.divergences:
            count = len(h.divergences)
            out.write(f"diverges  {h.container_id}  ({count} of {h.events} events)\n")
            for line in _divergence_lines(h):
                out.write(line + "\n")
        elif verbose:
            out.write(f"agrees    {h.container_id}  ({h.events} events, {h.state or '-'})\n")
    out.write(
        f"replayed {result.events:,} events of {len(result.histories):,} histories "
        f"{_machine_text(catalog)} in {result.seconds:.2f} s ({result.rate:,.0f} events/s): "
        f"{len(result.histories) - len(divergent):,} agree, {len(divergent):,} diverge\n"
    )
    return 1 if divergent else 0


def _verify_log(
    reader: EventReader,
    filters: Filters,
    catalog: MachineCatalog,
    fmt: str,
    flags: dict[str, object],
) -> int:
    from engine.replay.fold import replay
    from engine.replay.progress import ProgressBar

    bar = None
    if sys.stderr.isatty():
        bar = ProgressBar.for_terminal(reader.count_replay_rows(filters), sys.stderr)
    try:
        result = replay(reader.replay_rows(filters), catalog, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return _report(sys.stdout, result, catalog, fmt, bool(flags.get("verbose")))


def _fixtures(
    directory: Path,
    override: MachineDefinition | None,
    current: Callable[[], MachineDefinition],
    fmt: str,
    flags: dict[str, object],
) -> int:
    from engine.replay.fixtures import machines_of, read_fixtures
    from engine.replay.fold import replay, rows_of
    from engine.replay.machines import MachineCatalog

    fixtures = read_fixtures(directory)
    catalog = MachineCatalog(override=override, archived=machines_of(fixtures), current=current)
    rows = [row for f in fixtures for row in rows_of(f.events)]
    result = replay(rows, catalog)
    return _report(sys.stdout, result, catalog, fmt, bool(flags.get("verbose")))


def _fold(
    reader: EventReader,
    ids: tuple[str, ...],
    until: object,
    catalog: MachineCatalog,
    fmt: str,
) -> int:
    import orjson

    from engine.audit.times import local_iso, parse_time, utc_iso
    from engine.replay.fold import replay

    until_seq = until_ns = None
    if until:
        text = str(until)
        if text.isdigit():
            until_seq = int(text)
        else:
            until_ns = parse_time(text, time.time_ns(), flag="--until")
    if not ids:
        raise UsageError("runlog replay: --id takes a container id here, not a prefix")
    status = 0
    histories: list[tuple[str, list[Any]]] = []
    for cid in ids:
        events = reader.history(cid, until_seq=until_seq, until_ns=until_ns)
        histories += _per_log(cid, events)
    for cid, rows in histories:
        result = replay(rows, catalog)
        h = result.histories.get(cid)
        state = h.state if h is not None else None
        seq = h.seq if h is not None else 0
        when = h.time_ns if h is not None else None
        if h is not None and h.divergences:
            status = 1
        if fmt == "jsonl":
            record = {
                "container_id": cid,
                "state": state,
                "present": bool(h and h.present),
                "seq": seq,
                "time_ns": when,
                "time": None if when is None else utc_iso(when),
                "trigger": h.trigger if h is not None else None,
                "divergences": [d.to_dict() for d in h.divergences] if h is not None else [],
            }
            sys.stdout.write(orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() + "\n")
            continue
        if h is None:
            point = f"seq {until_seq}" if until_ns is None else local_iso(until_ns)
            sys.stdout.write(f"{cid}: did not exist yet at {point}\n")
            continue
        shown = state or "never created"
        assert when is not None
        sys.stdout.write(f"{cid}: {shown} at seq {seq}, {local_iso(when)} ({h.trigger})\n")
        for line in _divergence_lines(h):
            sys.stdout.write(line + "\n")
    _notes(catalog)
    return status


def _per_log(cid: str, events: list[Any]) -> list[tuple[str, list[Any]]]:
    """The id's histories to fold, one per log (and node) its events come
    from, each as replay rows under its name: the id alone for one log,
    ``ID@LOG`` (``ID@NODE:LOG``) for each of several."""
    from engine.replay.fold import rows_of

    groups: dict[tuple[str | None, str | None], list[Any]] = {}
    for event in events:
        groups.setdefault((event.node, event.log), []).append(event)
    if len(groups) <= 1:
        return [(cid, rows_of(events))]
    named = []
    for (node, log), group in groups.items():
        name = f"{cid}@{node}:{log}" if node else f"{cid}@{log}"
        named.append((name, [(name, *row[1:]) for row in rows_of(group)]))
    return named


def _export(reader: EventReader, filters: Filters, catalog: MachineCatalog, directory: Path) -> int:
    from engine.replay.fixtures import write_fixture
    from engine.replay.machines import machine_text

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"runlog replay --export: {directory}: {err.strerror}") from err
    archived = reader.machine_text
    texts: dict[str, str | None] = {}
    histories = events = 0
    for cid in reader.container_ids(filters):
        found = reader.history(cid)
        if not found:
            continue
        for digest in {e.machine_digest for e in found} - texts.keys():
            texts[digest] = archived(digest)
            if texts[digest] is None:
                try:
                    now = catalog.current()
                except (MachineError, LookupError):
                    continue
                if now.digest == digest:
                    texts[digest] = machine_text(now)
        write_fixture(directory, found, texts)
        histories += 1
        events += len(found)
    missing = sorted(d[:12] for d, t in texts.items() if t is None)
    if missing:
        sys.stderr.write(
            f"runlog replay: note: machine {', '.join(missing)} is not archived; those "
            "fixtures replay through the current machine unless --machine says otherwise\n"
        )
    sys.stdout.write(f"exported {histories:,} histories ({events:,} events) to {directory}\n")
    return 0
