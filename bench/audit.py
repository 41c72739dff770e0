"""Audit and replay on a large event log: generate it, time the queries, time replay.

``python bench/audit.py`` (or ``make bench``) writes a log of 1,000,000
events over 10,000 containers spread over 30 days, then prints a table of
median timings: one container's history, the current state of every
container, a one-day summary, a filtered audit query, and replay (verify of
every history through the recorded machine) in events per second.

The log is written straight through the DB-API with ``executemany`` in one
transaction (an append per event through the store would take minutes at
``synchronous=FULL``); the histories are random walks through the default
machine, with rejected requests, failed creates and warned poststop hooks,
so replay has real work to check and the views have rows to show.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from engine.audit import logdb, query
from engine.audit.filters import Filters
from engine.audit.summary import summarize
from engine.eventlog import chain, sql
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import MachineDefinition, default_path, load
from engine.replay.fold import replay
from engine.replay.machines import MachineCatalog, archived_in
from engine.replay.table import LifecycleStepper

DAY_NS = 86_400 * 1_000_000_000
UIDS = (0, 0, 0, 1000, 1001, 4711)


def _ms(rng: random.Random, mean: float) -> float:
    return round(rng.expovariate(1 / mean), 3)


def _hooks(rng: random.Random, point: str, paths: tuple[str, ...]) -> dict[str, Any]:
    runs = [
        {"path": p, "exit_code": 0, "duration_ms": _ms(rng, 8.0), "stderr_tail": ""} for p in paths
    ]
    return {"point": point, "hooks": runs}


def _record(label: str, result: dict[str, Any], ms: float) -> dict[str, Any]:
    return {"action": label, "result": result, "ms": ms}


class Walker:
    """Random histories through a machine definition, with realistic payloads."""

    def __init__(self, definition: MachineDefinition, rng: random.Random) -> None:
        self.d = definition
        self.rng = rng
        self.triggers = definition.triggers()
        self.pid = 10_000

    def ok_payload(self, trigger: str, request: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        if trigger == "create":
            self.pid += 1
            actions = [
                _record("cgroup.create", {}, _ms(rng, 3)),
                _record("process.spawn_init", {"pid": self.pid}, _ms(rng, 15)),
                _record("hook(prestart, abort)", _hooks(rng, "prestart", ()), 0.01),
                _record(
                    "hook(createRuntime, abort)",
                    _hooks(rng, "createRuntime", ("/usr/libexec/net-setup",)),
                    _ms(rng, 9),
                ),
                _record("hook(createContainer, abort)", _hooks(rng, "createContainer", ()), 0.01),
            ]
        elif trigger == "start":
            actions = [
                _record("hook(startContainer, abort)", _hooks(rng, "startContainer", ()), 0.01),
                _record("process.release", {"pid": self.pid}, _ms(rng, 1)),
                _record("hook(poststart, abort)", _hooks(rng, "poststart", ()), 0.01),
            ]
        elif trigger == "kill":
            signo = int(request.get("signal", 15))
            result = {"signal": signo, "all": False, "pid": self.pid}
            actions = [_record("process.signal", result, _ms(rng, 0.2))]
        elif trigger == "exit":
            status = rng.choice(({"exit_code": 0}, {"exit_code": 1}, {"signal": 15}))
            actions = [_record("process.collect_status", status, 0.05)]
        elif trigger == "delete":
            hook = _hooks(rng, "poststop", ("/usr/libexec/net-teardown",))
            if rng.random() < 0.02:  # a poststop hook that failed: warned, not aborted
                run = {
                    "path": "/usr/libexec/net-teardown",
                    "exit_code": 1,
                    "duration_ms": _ms(rng, 30),
                    "stderr_tail": "veth already gone",
                }
                hook = {"point": "poststop", "warning": "poststop hook failed", "runs": [run]}
            actions = [
                _record("cgroup.destroy", {}, _ms(rng, 4)),
                _record("hook(poststop, warn)", hook, _ms(rng, 6)),
                _record("state.remove", {}, 0.1),
            ]
        else:
            tdef = self.d.transitions[[t.trigger for t in self.d.transitions].index(trigger)]
            actions = [_record(a.label(), {}, _ms(rng, 2)) for a in tdef.actions]
        return {"request": request, "actions": actions}

    def failed_create(self) -> dict[str, Any]:
        rng = self.rng
        run = {
            "path": "/usr/libexec/quota-check",
            "exit_code": 3,
            "duration_ms": _ms(rng, 20),
            "stderr_tail": "quota exceeded for /scratch",
        }
        return {
            "request": {},
            "action": "hook(createRuntime, abort)",
            "error": "createRuntime hook /usr/libexec/quota-check exited with status 3",
            "details": {"runs": [run]},
            "done": [
                _record("cgroup.create", {}, _ms(rng, 3)),
                _record("process.spawn_init", {"pid": self.pid}, _ms(rng, 15)),
                _record("hook(prestart, abort)", _hooks(rng, "prestart", ()), 0.01),
            ],
            "undone": ["process.spawn_init", "cgroup.create"],
            "not_undone": [],
            "undo_errors": [],
        }

    def history(
        self, cid: str, length: int
    ) -> Iterator[tuple[str, str | None, str | None, str, dict[str, Any]]]:
        """Exactly ``length`` events (trigger, source, dest, outcome, payload)
        of one container's life: create, start, then pauses, resumes,
        harmless signals and rejected requests, and at the end kill, exit
        and delete."""
        rng = self.rng
        d = self.d
        gone = set(d.terminal_states())
        state: str | None = None
        for n in range(length):
            left = length - n
            if state is None:
                if left < 6:  # too late to live: requests for a container that is gone
                    error = f"container {cid}: container does not exist"
                    yield "start", None, None, "rejected", {"error": error, "request": {}}
                elif rng.random() < 0.03:
                    yield "create", None, None, "failed", self.failed_create()
                else:
                    dest = self._dest("create", d.initial)
                    yield "create", None, dest, "ok", self.ok_payload("create", {})
                    state = dest
                continue
            if left <= 3:  # the end: kill, exit, delete
                trigger = ("delete", "exit", "kill")[left - 1]
            elif rng.random() < 0.04:
                trigger = rng.choice([t for t in self.triggers if t not in d.allowed(state)])
                error = f"{trigger} {cid}: not allowed (state: {state})"
                yield trigger, state, None, "rejected", {"error": error, "request": {}}
                continue
            else:
                allowed = [t for t in d.allowed(state) if t not in ("exit", "delete")]
                trigger = rng.choice(allowed)
            request = {"signal": 15 if left <= 3 else 10} if trigger == "kill" else {}
            dest = self._dest(trigger, state)
            yield trigger, state, dest, "ok", self.ok_payload(trigger, request)
            state = None if dest in gone else dest

    def _dest(self, trigger: str, state: str) -> str:
        tdef = self.d.find(trigger, state)
        assert tdef is not None, f"{trigger} from {state}: the walk left the machine"
        return tdef.dest or state


def generate(
    path: Path,
    events: int,
    containers: int,
    days: float,
    seed: int = 1,
    definition: MachineDefinition | None = None,
) -> tuple[int, int]:
    """Write a new event log at ``path``; return (events, containers) written."""
    definition = definition or load(default_path())
    rng = random.Random(seed)
    walker = Walker(definition, rng)
    now = time.time_ns()
    span = int(days * DAY_NS)
    # Lengths around the mean, adjusted to add up to exactly ``events``.
    per = events / containers
    lengths = [max(8, int(rng.gauss(per, per / 4))) for _ in range(containers)]
    while (excess := sum(lengths) - events) != 0:
        i = rng.randrange(containers)
        lengths[i] = max(8, lengths[i] - max(-20, min(20, excess)))
    rows: list[tuple[Any, ...]] = []
    heads: list[tuple[Any, ...]] = []
    dumps = orjson.dumps
    digest = definition.digest
    for i in range(containers):
        cid = f"job-{i:05d}"
        length = lengths[i]
        # A life of half a day to three days somewhere in the span: the
        # days away from the span's ends see about events / days events.
        life = rng.uniform(0.5, 3.0) * DAY_NS
        t = now - span + rng.random() * (span - life)
        gap = life / (length + 1)
        uid = rng.choice(UIDS)
        pid = rng.randrange(1000, 60000)
        seq = 0
        state: str | None = None
        first = int(t)
        job = str(100_000 + i)
        context = f'{{"slurm_job":"{job}","slurm_step":"0","slurm_user":"user{uid}"}}'
        for trigger, source, dest, outcome, payload in walker.history(cid, length):
            seq += 1
            t += gap * rng.uniform(0.5, 1.5)
            transport = "monitor" if trigger == "exit" else rng.choice(("cli", "cli", "socket"))
            actor_uid = None if transport == "monitor" else uid
            rows.append(
                (
                    cid,
                    seq,
                    int(t),
                    trigger,
                    source,
                    dest,
                    outcome,
                    actor_uid,
                    pid,
                    transport,
                    dumps(payload).decode(),
                    digest,
                    None if actor_uid is None else f"user{uid}",
                    actor_uid,
                    None if actor_uid is None else context,
                    None if actor_uid is None else job,
                    "/run/runlog",
                )
            )
            if outcome == "ok":
                state = dest
        heads.append((cid, state, seq, first, int(t), digest))
    rows.sort(key=lambda r: r[2])
    rows = chain_rows(rows)
    if path.exists():
        path.unlink()
    SQLiteStore(str(path)).close()  # the schema, as the hot path creates it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany(sql.INSERT_EVENT, rows)
    conn.executemany(sql.UPSERT_CONTAINER, heads)
    conn.execute(
        sql.INSERT_MACHINE,
        (digest, Path(definition.path).read_text(), definition.path, now),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return len(rows), len(heads)


def chain_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of CHAINED_COLUMNS with their prev_hash and hash, in this order."""
    last = chain.GENESIS
    out = []
    for values in rows:
        digest = chain.link(last, values)
        out.append((*values, last, digest))
        last = digest
    return out


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(path: Path, seed: int = 2) -> list[tuple[str, str, str]]:
    """(what, measured, target) rows for the log at ``path``."""
    rng = random.Random(seed)
    conn = logdb.open_log(str(path))
    ids = [row.id for row in query.current_states(conn)]
    now = time.time_ns()
    rows: list[tuple[str, str, str]] = []

    sample = rng.sample(ids, min(200, len(ids)))
    it = iter(sample * 2)
    ms = _median_ms(lambda: query.history(conn, next(it)), len(sample))
    events = statistics.mean(len(query.history(conn, cid)) for cid in sample[:20])
    rows.append(
        (f"one container's history ({events:.0f} events, decoded)", f"{ms:.2f} ms", "< 5 ms")
    )

    ms = _median_ms(lambda: query.current_states(conn), 20)
    rows.append((f"current state of all {len(ids):,} containers", f"{ms:.2f} ms", "< 20 ms"))
    ms = _median_ms(lambda: conn.execute("SELECT * FROM container_current_state").fetchall(), 20)
    rows.append(("  the same through the container_current_state view", f"{ms:.2f} ms", ""))

    middle = Filters(since_ns=now - 15 * DAY_NS, until_ns=now - 14 * DAY_NS)
    (in_day,) = conn.execute(
        "SELECT count(*) FROM events WHERE time_ns >= ? AND time_ns < ?",
        (middle.since_ns, middle.until_ns),
    ).fetchone()
    ms = _median_ms(lambda: summarize(conn, middle), 5)
    rows.append((f"one-day summary ({in_day:,} events in the day)", f"{ms:.1f} ms", "< 200 ms"))
    last = Filters(since_ns=now - DAY_NS)
    ms = _median_ms(lambda: summarize(conn, last), 5)
    rows.append(("  the last 24 hours", f"{ms:.1f} ms", "< 200 ms"))

    rejected = Filters(outcomes=("rejected",), since_ns=now - DAY_NS)
    ms = _median_ms(lambda: query.select_events(conn, rejected), 5)
    rows.append(("audit --outcome rejected --since 1d", f"{ms:.1f} ms", ""))
    latest = Filters(triggers=("pause",), limit=100)
    ms = _median_ms(lambda: query.select_events(conn, latest), 5)
    rows.append(("audit --trigger pause --limit 100", f"{ms:.1f} ms", ""))

    current = load(default_path())
    catalog = MachineCatalog(archived=archived_in(conn), current=lambda: current)
    result = replay(query.replay_rows(conn, Filters()), catalog)
    diverged = len(result.divergent)
    rows.append(
        (
            f"replay --all: {result.events:,} events, {diverged} divergent",
            f"{result.rate:,.0f} events/s ({result.seconds:.2f} s)",
            ">= 100,000 events/s",
        )
    )
    slow = MachineCatalog(
        archived=archived_in(conn), current=lambda: current, compile=LifecycleStepper
    )
    head = list(query.replay_rows(conn, Filters(ids=tuple(ids[:200]))))
    result = replay(head, slow)
    rows.append(
        (
            f"  through transitions per event ({result.events:,} events)",
            f"{result.rate:,.0f} events/s",
            "",
        )
    )
    conn.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", default="/tmp/runlog-bench/events.db")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--reuse", action="store_true", help="keep an existing log")
    args = parser.parse_args(argv)
    path = Path(args.db)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and path.exists()):
        started = time.perf_counter()
        n, c = generate(path, args.events, args.containers, args.days)
        took = time.perf_counter() - started
        print(f"generated {n:,} events over {c:,} containers in {took:.1f} s: {path}")
    rows = [("WHAT", "MEASURED (median)", "TARGET"), *measure(path)]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for what, got, target in rows:
        print(f"{what.ljust(widths[0])}  {got.ljust(widths[1])}  {target}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
