"""Churn under load: does the log still match what was asked?

N containers (default 64) are cycled by W churn workers (default 8) -
create, start, pause, resume, kill, poll ``state`` until stopped, delete -
while P pollers (default 8) call ``state`` on them at random, for
``--duration`` seconds. At the end it prints:

- commands issued against events recorded (each command records exactly
  one event - ``state`` too, as queries are recorded for the run,
  ``RUNLOG_RECORD_QUERIES=1``; each container's end adds its ``exit``), by
  trigger;
- gaps: a container whose seq does not run 1, 2, 3, ... without a hole;
- leftovers: state directories, cgroups or processes of the run;
- p50/p99 per command, in ms;
- whether ``replay --all`` finds every history as the machine would make it;
- failures: commands that exited non-zero, with their first error.

Needs root and /bin/busybox (``make stress``). Figures are printed, never
asserted; the exit code is 1 when the log and the commands disagree or
something is left.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.bundles import make_busybox_bundle  # noqa: E402

PARENT = "runlog-stress"
CYCLE = ("create", "start", "pause", "resume", "kill", "delete")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.issued: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: dict[str, str] = {}
        self.stopped = 0

    def add(self, command: str, ms: float, ok: bool, err: str) -> None:
        if os.environ.get("STRESS_ERRORS") and ("Traceback" in err or "not recorded" in err):
            with open(os.environ["STRESS_ERRORS"], "a") as fh:
                fh.write(f"--- {command}\n{err}\n")
        with self.lock:
            self.issued[command] += 1
            self.times[command].append(ms)
            if not ok:
                self.failed[command] += 1
                # A traceback's last lines say what it was; else the message.
                self.errors.setdefault(command, "\n".join(err.strip().splitlines()[-6:]))


class Runner:
    def __init__(self, base: Path) -> None:
        stub = REPO / ".venv" / "bin" / "runlog"
        entry = [str(stub)] if stub.exists() else [sys.executable, "-m", "engine"]
        self.cmd = [*entry, "--root", str(base / "root"), "--db", str(base / "events.db")]
        # Queries are events here (not by default), so that every command
        # issued is one event to count.
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "RUNLOG_RECORD_QUERIES": "1"}

    def __call__(self, stats: Stats, *args: str) -> tuple[bool, str]:
        # Files, not pipes: a created container keeps create's stdio (as
        # with runc), so a pipe would see no EOF until the container ends.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            code = subprocess.run(
                [*self.cmd, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                check=False,
            ).returncode
            ms = (time.perf_counter() - started) * 1000
            out.seek(0)
            err.seek(0)
            text, problem = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        stats.add(args[0], ms, code == 0, problem)
        return code == 0, text


def churn(run: Runner, stats: Stats, ids: list[str], bundles: Path, until: float) -> None:
    while time.monotonic() < until:
        for cid in ids:
            if time.monotonic() >= until:
                return
            run(stats, "create", "--bundle", str(bundles / cid), cid)
            run(stats, "start", cid)
            run(stats, "pause", cid)
            run(stats, "resume", cid)
            run(stats, "kill", cid, "KILL")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ok, out = run(stats, "state", cid)
                if not ok or '"stopped"' in out:
                    break
            with stats.lock:
                stats.stopped += 1
            run(stats, "delete", cid)


def poll(run: Runner, stats: Stats, ids: list[str], until: float) -> None:
    rng = random.Random()
    while time.monotonic() < until:
        run(stats, "state", rng.choice(ids))


def check_log(db: Path) -> tuple[Counter[str], list[str], int]:
    """Events by trigger, containers with a seq gap, and how many events."""
    with sqlite3.connect(db) as conn:
        by_trigger = Counter(
            {
                str(t): int(n)
                for t, n in conn.execute('SELECT "trigger", count(*) FROM events GROUP BY 1')
            }
        )
        gaps = [
            str(cid)
            for cid, n, top in conn.execute(
                "SELECT container_id, count(*), max(seq) FROM events GROUP BY 1"
            )
            if n != top
        ]
    return by_trigger, gaps, sum(by_trigger.values())


def leftovers(base: Path) -> list[str]:
    found = [f"state directory {p.name}" for p in (base / "root").glob("*")]
    for tree in Path("/sys/fs/cgroup").glob(f"*/{PARENT}"):
        found += [f"cgroup {p}" for p in tree.iterdir() if p.is_dir()]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(base).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(f"process {pid}")
        except OSError:
            continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--containers", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pollers", type=int, default=8)
    parser.add_argument("--keep-log", help="copy the run's event log here before cleaning up")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("stress: needs root (real containers)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="runlog-stress-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # and clean up
    try:
        return _run(base, opts)
    finally:
        if opts.keep_log and (base / "events.db").exists():
            with sqlite3.connect(base / "events.db") as src, sqlite3.connect(opts.keep_log) as dst:
                src.backup(dst)
        run = Runner(base)
        for entry in (base / "root").glob("*"):
            run(Stats(), "delete", "--force", entry.name)
        for tree in Path("/sys/fs/cgroup").glob(f"*/{PARENT}"):
            try:
                tree.rmdir()
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, opts: argparse.Namespace) -> int:
    ids = [f"s{i:03d}" for i in range(opts.containers)]
    bundles = base / "bundles"
    for cid in ids:

        def edit(spec: dict[str, object], cid: str = cid) -> None:
            spec["linux"]["cgroupsPath"] = f"/{PARENT}/{cid}"  # type: ignore[index]

        make_busybox_bundle(str(bundles / cid), ["sleep", "1000"], edit=edit)
    run = Runner(base)
    stats = Stats()
    until = time.monotonic() + opts.duration
    threads = [
        threading.Thread(
            target=churn, args=(run, stats, ids[w :: opts.workers], bundles, until), daemon=True
        )
        for w in range(opts.workers)
    ]
    threads += [
        threading.Thread(target=poll, args=(run, stats, ids, until), daemon=True)
        for _ in range(opts.pollers)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # Refusals recorded by detached processes (the log was locked) land now.
    settle = time.monotonic() + 10
    while time.monotonic() < settle and any("process" in x for x in leftovers(base)):
        time.sleep(0.1)
    by_trigger, gaps, total = check_log(base / "events.db")
    issued = sum(stats.issued.values())
    left = leftovers(base)
    print(
        f"stress: {opts.containers} containers, {opts.workers} workers, "
        f"{opts.pollers} pollers, {elapsed:.0f} s"
    )
    print(
        f"commands issued: {issued}; events recorded: {total} "
        f"(of which exit: {by_trigger.get('exit', 0)}; cycles ended: {stats.stopped})"
    )
    print(
        f"{'command':<8} {'issued':>8} {'events':>8} {'failed':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for command in (*CYCLE, "state"):
        times = sorted(stats.times.get(command, [0.0]))
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"{command:<8} {stats.issued[command]:>8} {by_trigger.get(command, 0):>8} "
            f"{stats.failed[command]:>7} {statistics.median(times):>8.1f} {p99:>8.1f} "
            f"{times[-1]:>8.1f}"
        )
    print(f"sequence gaps: {len(gaps)}{' ' + ', '.join(gaps[:10]) if gaps else ''}")
    print(f"leftovers: {len(left)}{' ' + '; '.join(left[:10]) if left else ''}")
    replayed = subprocess.run(
        [*run.cmd, "replay", "--all"], capture_output=True, text=True, env=run.env, check=False
    )
    print(f"replay --all: exit {replayed.returncode}; {replayed.stdout.strip().splitlines()[-1:]}")
    for command, err in stats.errors.items():
        print(f"first {command} failure: {err}")
    agree = all(stats.issued[c] == by_trigger.get(c, 0) for c in (*CYCLE, "state"))
    return 0 if agree and not gaps and not left and replayed.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
