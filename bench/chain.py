"""The hash chain's cost on the append path.

- the time to hash one event (``chain.link``: C sha256 over canonical bytes);
- durable appends/s (WAL, synchronous=FULL, one writer) with the chain, and
  the same loop run on another checkout for comparison
  (``python bench/chain.py --before /path/to/older/checkout``), the two
  run turn about so that the machine's moods fall on both alike; the
  median of the runs, and the range.

Run with ``make bench``; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine.eventlog import chain  # noqa: E402

APPENDS = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor
path, count, mix = sys.argv[2], int(sys.argv[3]), sys.argv[4]
actor = Actor.current("cli")
payload = {"actions": [{"action": "spawn", "ms": 1.2, "result": {"pid": 4242}}]}
LIFE = [("create", None, "created"), ("start", "created", "running"),
        ("kill", "running", None), ("exit", "running", "stopped"),
        ("delete", "stopped", "deleted")]
def event(i):
    if mix == "kill":  # signals to 10 running containers: the state stays
        return NewEvent(f"c{i % 10}", "kill", "running", None, "ok", actor, "d" * 64, payload)
    trigger, source, dest = LIFE[i % 5]  # whole lives, one after another
    return NewEvent(f"c{i // 5}", trigger, source, dest, "ok", actor, "d" * 64, payload)

with SQLiteStore(path) as store:
    start = time.perf_counter()
    for i in range(count):
        store.append(event(i))
    rate = count / (time.perf_counter() - start)
# What each append writes to the write-ahead log (pages), and its CPU time
# without the sync: figures the machine's other disk traffic leaves alone.
with SQLiteStore(path + ".nosync", synchronous="OFF") as store:
    store._conn.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(count):
        store.append(event(i))
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cpu = time.process_time()
    for i in range(count, 2 * count):
        store.append(event(i))
    cpu = (time.process_time() - cpu) / count
    pages = (os.path.getsize(path + ".nosync-wal") - 32) / (4096 + 24) / count
print(rate, pages, cpu)
"""  # fmt: skip
#: The append loops: signals (the state stays), and whole lifecycles.
MIXES = ("kill", "lifecycle")


def appends_per_s(
    checkouts: list[Path], tmp: Path, count: int, runs: int, mix: str
) -> list[list[tuple[float, float, float]]]:
    """Each checkout's (appends/s, WAL pages per append, CPU s per append
    unsynced) of each run, its runs taken in turn with the others'."""
    rates: list[list[tuple[float, float, float]]] = [[] for _ in checkouts]
    for run in range(runs):
        for n, checkout in enumerate(checkouts):
            path = tmp / f"{mix}-{n}-{run}.db"
            out = subprocess.run(
                [sys.executable, "-c", APPENDS, str(checkout), str(path), str(count), mix],
                capture_output=True,
                text=True,
                check=True,
            )
            rate, pages, cpu = map(float, out.stdout.split())
            rates[n].append((rate, pages, cpu))
    return rates


def _figures(runs: list[tuple[float, float, float]]) -> tuple[str, str, str]:
    rates = [r for r, _, _ in runs]
    pages = statistics.median(p for _, p, _ in runs)
    cpu = statistics.median(c for _, _, c in runs)
    return (
        f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
        f"{pages:.2f}",
        f"{cpu * 1e6:.0f} µs",
    )


def link_us(count: int = 20_000) -> float:
    values = (
        "job-00042", 7, time.time_ns(), "kill", "running", None, "ok", 1000, 4242, "cli",
        '{"actions":[{"action":"spawn","ms":1.2,"result":{"pid":4242}}]}', "d" * 64,
        "alice", 1000, '{"slurm_job":"1234","slurm_step":"0"}', "1234", "/run/runlog",
    )  # fmt: skip
    start = time.perf_counter()
    last = chain.GENESIS
    for _ in range(count):
        last = chain.link(last, values)
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, help="a checkout without the chain, to compare")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    table(
        "hash chain", ("what", "figure"), [("hash one event (chain.link)", f"{link_us():.1f} µs")]
    )
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="runlog-bench-") as name:
        tmp = Path(name)
        checkouts = [REPO] + ([args.before] if args.before is not None else [])
        for mix in MIXES:
            runs = appends_per_s(checkouts, tmp, args.count, args.runs, mix)
            for checkout, found in zip(checkouts, runs, strict=True):
                rows.append((mix, str(checkout), *_figures(found)))
    table(
        "appends to a new log, WAL, synchronous=FULL, one writer",
        (
            "events",
            "checkout",
            "durable appends/s: median (range)",
            "WAL pages/append",
            "CPU/append, unsynced",
        ),
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
