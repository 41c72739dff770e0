"""The hash chain's cost on the append path.

- the time to hash one event (``chain.link``: C sha256 over canonical bytes);
- durable appends/s (WAL, synchronous=FULL, one writer) with the chain, and
  the same loop run on another checkout for comparison
  (``python bench/chain.py --before /path/to/older/checkout``).

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
import sys, time
sys.path.insert(0, sys.argv[1])
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor
path, count = sys.argv[2], int(sys.argv[3])
actor = Actor.current("cli")
payload = {"actions": [{"action": "spawn", "ms": 1.2, "result": {"pid": 4242}}]}
with SQLiteStore(path) as store:
    start = time.perf_counter()
    for i in range(count):
        event = NewEvent(f"c{i % 10}", "kill", "running", None, "ok", actor, "d" * 64, payload)
        store.append(event)
    print(count / (time.perf_counter() - start))
"""


def appends_per_s(checkout: Path, tmp: Path, count: int, runs: int) -> float:
    rates = []
    for run in range(runs):
        path = tmp / f"{checkout.name}-{run}.db"
        out = subprocess.run(
            [sys.executable, "-c", APPENDS, str(checkout), str(path), str(count)],
            capture_output=True,
            text=True,
            check=True,
        )
        rates.append(float(out.stdout))
    return statistics.median(rates)


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
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [("hash one event (chain.link)", f"{link_us():.1f} µs")]
    with tempfile.TemporaryDirectory(prefix="runlog-bench-") as name:
        tmp = Path(name)
        rate = appends_per_s(REPO, tmp, args.count, args.runs)
        rows.append(("durable appends/s, with the chain", f"{rate:,.0f}"))
        if args.before is not None:
            before = appends_per_s(args.before, tmp, args.count, args.runs)
            rows.append((f"durable appends/s, {args.before}", f"{before:,.0f}"))
    table("hash chain", ("what", "figure"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
