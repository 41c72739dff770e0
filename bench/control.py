"""The monitor's control plane: request round trips and the monitor's memory.

- round trip of a request, client to monitor and back, through
  ``control.sock`` and through the request spool (drop, inotify, dispatch,
  reply file, inotify): ``state`` (answered by the monitor, not an event)
  and ``pause`` + ``resume`` (each a transition recorded in the event log,
  fsync included);
- ``state`` over control.sock of a container created with
  ``RUNLOG_RECORD_QUERIES=1``, where each query is also recorded (after
  its answer, committed without waiting for the disk);
- ``runlog state`` as a scheduler calls it (a process per call, a
  ``state`` request over control.sock, answered and not recorded);
- the monitor's resident memory and threads with a running container.

Needs root and /bin/busybox (``make bench``). Figures are printed, never
asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine import control  # noqa: E402
from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle  # noqa: E402
from engine.runtime.shared.spool import SpoolClient  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "200"))


def samples(fn: Callable[[], object], runs: int = RUNS) -> list[float]:
    fn()  # warm
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        found.append((time.perf_counter() - start) * 1000)
    return found


def summary(ms: list[float]) -> tuple[str, str]:
    ms = sorted(ms)
    return f"{statistics.median(ms):.3f}", f"{ms[int(len(ms) * 0.95) - 1]:.3f}"


def proc_status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> int:
    with keep_default_cgroup_parent():
        return _main()


def _main() -> int:
    if os.geteuid() != 0:
        print("bench/control.py needs root (real containers)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="runlog-bench-control-"))
    entry = Path(sys.executable).parent / "runlog"
    argv = [str(entry)] if entry.exists() else [sys.executable, "-m", "engine"]
    runlog = [*argv, "--root", str(tmp / "root"), "--db", str(tmp / "events.db")]
    cid = f"bench-control-{os.getpid()}"
    recorded = f"{cid}-rq"
    try:
        bundle = make_busybox_bundle(str(tmp / "sleep"), ["sleep", "600"])
        subprocess.run([*runlog, "run", "-d", "-b", bundle, cid], check=True)
        queries = {**os.environ, "RUNLOG_RECORD_QUERIES": "1"}
        subprocess.run([*runlog, "run", "-d", "-b", bundle, recorded], check=True, env=queries)
        statedir = tmp / "root" / cid
        sock = str(statedir / "control.sock")
        rows = []

        def over_socket(op: str, path: str = sock) -> Callable[[], object]:
            return lambda: control.call(path, {"op": op})

        state_ms = samples(over_socket("state"))
        rows.append(("state (not recorded, the default)", "control.sock", *summary(state_ms)))
        logged = over_socket("state", str(tmp / "root" / recorded / "control.sock"))
        rows.append(("state (recorded as a query)", "control.sock", *summary(samples(logged))))
        pause, resume = over_socket("pause"), over_socket("resume")
        rows.append(
            ("pause + resume", "control.sock", *summary(samples(lambda: (pause(), resume()))))
        )
        with SpoolClient(str(statedir / "requests")) as spool:

            def over_spool(op: str) -> Callable[[], object]:
                data = json.dumps({"op": op}).encode()
                return lambda: spool.call(data, timeout=10)

            rows.append(("state", "spool", *summary(samples(over_spool("state")))))
            spause, sresume = over_spool("pause"), over_spool("resume")
            rows.append(
                ("pause + resume", "spool", *summary(samples(lambda: (spause(), sresume()))))
            )
        cli = samples(
            lambda: subprocess.run([*runlog, "state", cid], stdout=subprocess.DEVNULL, check=True),
            runs=max(20, RUNS // 10),
        )
        rows.append(("`runlog state` (a process, not recorded)", "control.sock", *summary(cli)))
        info = json.loads((statedir / "runtime.json").read_text())
        monitor = int(info["monitor_pid"])
        rss = proc_status(monitor, "VmRSS")
        threads = proc_status(monitor, "Threads")
        table(
            f"control round trips, {RUNS} requests each (ms)",
            ("request", "transport", "median", "p95"),
            rows,
        )
        table(
            "the monitor with a running container (target: RSS at most 25 MB)",
            ("what", "value"),
            [("resident memory (VmRSS)", rss), ("threads", threads)],
        )
    finally:
        for name in (cid, recorded):
            subprocess.run([*runlog, "delete", "--force", name], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
