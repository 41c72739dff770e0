"""runlog's core benchmarks, printed as tables.

- durable appends/s to the SQLite event log (WAL, synchronous=FULL), one
  writer and eight concurrent writer processes, with a count of lost events;
- what every scheduler call pays before doing anything: the import cost of
  ``engine.cli`` from ``python -X importtime``, next to the interpreter's own
  start-up and the stdlib modules the hot path avoids.

Run with ``make bench``. Figures depend on the disk and the load; they are
printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine.eventlog.record import NewEvent  # noqa: E402
from engine.eventlog.sqlite import SQLiteStore  # noqa: E402
from engine.status import Actor  # noqa: E402

WRITER = """
import sys, time
sys.path.insert(0, sys.argv[4])
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor
path, me, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
actor = Actor.current("cli")
with SQLiteStore(path) as store:
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    for i in range(count):
        cid = "shared" if i % 2 else "own-" + me
        store.append(NewEvent(cid, "kill", "running", None, "ok", actor, "d" * 64, {"i": i}))
"""


def single_writer(tmp: Path, count: int, synchronous: str) -> float:
    path = tmp / f"single-{synchronous}.db"
    actor = Actor.current("cli")
    with SQLiteStore(str(path), synchronous=synchronous) as store:
        start = time.perf_counter()
        for i in range(count):
            store.append(NewEvent(f"c{i % 10}", "kill", "running", None, "ok", actor, "d" * 64))
        elapsed = time.perf_counter() - start
    return count / elapsed


def many_writers(tmp: Path, writers: int, count: int) -> tuple[float, int, int]:
    path = tmp / "many.db"
    SQLiteStore(str(path)).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(count), str(REPO)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    with SQLiteStore(str(path)) as store:
        events = store.events()
    seqs: dict[str, list[int]] = {}
    for e in events:
        seqs.setdefault(e.container_id, []).append(e.seq)
    gaps = sum(sorted(s) != list(range(1, len(s) + 1)) for s in seqs.values())
    lost = writers * count - len(events) + sum(c != 0 for c in codes)
    return len(events) / elapsed, lost, gaps


def import_cost(module: str, runs: int = 7) -> tuple[float, float]:
    """Median cumulative import time of ``module`` (ms), and of the whole process run."""
    cumulative, wall = [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stderr
        wall.append((time.perf_counter() - start) * 1000)
        for line in out.splitlines():
            if line.rstrip().endswith(f"| {module}"):
                cumulative.append(int(line.split("|")[1]) / 1000)
    return statistics.median(cumulative), statistics.median(wall)


def start_up(args: list[str], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="runlog-bench-") as name:
        tmp = Path(name)
        full = single_writer(tmp, 3000, "FULL")
        normal = single_writer(tmp, 3000, "NORMAL")
        rate, lost, gaps = many_writers(tmp, 8, 500)
    table(
        "Event log appends (SQLite WAL, one event per transaction, BEGIN IMMEDIATE)",
        ("writers", "synchronous", "appends/s", "lost", "containers with seq gaps"),
        [
            ("1", "FULL", f"{full:,.0f}", "0", "0"),
            ("1", "NORMAL", f"{normal:,.0f}", "0", "0"),
            ("8 processes x 500", "FULL", f"{rate:,.0f}", str(lost), str(gaps)),
        ],
    )
    rows = []
    for module in ("engine.cli", "argparse", "json", "subprocess", "socket", "sqlite3", "_json"):
        cumulative, _ = import_cost(module)
        rows.append((f"import {module}", f"{cumulative:.1f}"))
    table("Import cost (python -X importtime, cumulative, median of 7)", ("what", "ms"), rows)
    py = sys.executable
    rows = [
        ("python -I -S -c pass", f"{start_up([py, '-I', '-S', '-c', 'pass']):.1f}"),
        ("python -c pass", f"{start_up([py, '-c', 'pass']):.1f}"),
        ("python -c 'import engine.cli'", f"{start_up([py, '-c', 'import engine.cli']):.1f}"),
        ("runlog --version (python -m engine)", f"{start_up([py, '-m', 'engine', '-v']):.1f}"),
    ]
    env_note = os.environ.get("VIRTUAL_ENV") or sys.prefix
    table(f"Process start-up, wall clock, median of 15 ({env_note})", ("command", "ms"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
