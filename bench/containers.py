"""runlog next to runc on the same busybox bundle, in one run, as ratios.

- lifecycle of ``true``: create, start, poll ``state`` until stopped, delete;
- ``run true`` (foreground, exit status collected);
- ``state`` alone, on a created container (schedulers poll it);
- ``exec true`` into a running container (foreground, status collected);
- the monitor's resident memory with a running container.

Needs root, /bin/busybox and runc (``make bench`` installs both from
Debian). Figures are printed, never asserted.
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def runlog_entry() -> str:
    """The ``runlog`` measured: ``BENCH_RUNLOG`` (another build's entry stub,
    to set two builds side by side in turn), else the one beside this Python."""
    return os.environ.get("BENCH_RUNLOG") or str(Path(sys.executable).parent / "runlog")


def _once(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def side_by_side(
    a: Callable[[], None], b: Callable[[], None], runs: int = RUNS
) -> dict[str, tuple[float, float]]:
    """Medians of ``a`` and ``b`` in ms, measured two ways: in turn (a, b,
    a, b, ...), so that a slower or faster spell of the machine weighs on
    both alike, and in blocks, so that neither runs right after the other's
    teardown (its cgroup removal, an exiting monitor). The blocks go a, b,
    b, a (half the runs each): a spell of the machine that falls on one
    block falls on the other runtime's next, where one block of each let
    it weigh on one runtime alone (ratios of 1.14 to 1.75 within minutes
    here). The two ways differ on this machine; both are printed."""
    turn_a, turn_b = [], []
    for _ in range(runs):
        turn_a.append(_once(a))
        turn_b.append(_once(b))
    first = max(1, runs // 2)
    block_a = [_once(a) for _ in range(first)]
    block_b = [_once(b) for _ in range(runs)]
    block_a += [_once(a) for _ in range(runs - first)]
    median = statistics.median
    return {
        "in turn": (median(turn_a), median(turn_b)),
        "in blocks": (median(block_a), median(block_b)),
    }


class Runtime:
    def __init__(self, name: str, argv: list[str], **options: Any) -> None:
        self.name = name
        self.argv = argv
        self.n = 0
        # More for subprocess.run: the user to run as (bench/rootless.py).
        self.options = options

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            [*self.argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if args[0] == "state" else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            **self.options,
        )
        if out.returncode != 0 and args[0] not in ("delete",):
            raise RuntimeError(f"{self.name} {' '.join(args)} exited {out.returncode}")
        return out.stdout.decode() if out.stdout else ""

    def next_id(self) -> str:
        self.n += 1
        return f"bench-{self.name}-{os.getpid()}-{self.n}"

    def lifecycle(self, bundle: str) -> None:
        cid = self.next_id()
        self("create", "--bundle", bundle, cid)
        self("start", cid)
        while json.loads(self("state", cid))["status"] != "stopped":
            pass
        self("delete", cid)

    def run(self, bundle: str) -> None:
        cid = self.next_id()
        self("run", "--bundle", bundle, cid)
        self("delete", "--force", cid)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    with keep_default_cgroup_parent():
        return _main()


def _main() -> int:
    if os.geteuid() != 0 or not shutil.which("runc"):
        print("bench/containers.py needs root and runc (make bench installs runc)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="runlog-bench-"))
    try:
        true_bundle = make_busybox_bundle(str(tmp / "true"), ["true"])
        sleep_bundle = make_busybox_bundle(str(tmp / "sleep"), ["sleep", "60"])
        runc = Runtime("runc", ["runc", "--root", str(tmp / "runc-root")])
        entry = runlog_entry()
        runlog = Runtime(
            "runlog", [entry, "--root", str(tmp / "runlog-root"), "--db", str(tmp / "events.db")]
        )
        runlog.lifecycle(true_bundle)  # warm caches, create the database
        runc.lifecycle(true_bundle)
        rows: list[tuple[str, ...]] = []

        def add(what: str, medians: dict[str, tuple[float, float]]) -> None:
            for order, (a, b) in medians.items():
                rows.append((what, order, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x"))

        for what, fn in (
            ("lifecycle of true (create, start, poll state, delete)", Runtime.lifecycle),
            ("run true (+ delete)", Runtime.run),
        ):
            add(
                what,
                side_by_side(
                    lambda fn=fn: fn(runlog, true_bundle), lambda fn=fn: fn(runc, true_bundle)
                ),
            )
        ids = {}
        for rt in (runlog, runc):
            ids[rt.name] = rt.next_id()
            rt("create", "--bundle", sleep_bundle, ids[rt.name])
        add(
            "state of a created container",
            side_by_side(
                lambda: runlog("state", ids["runlog"]), lambda: runc("state", ids["runc"]), RUNS * 3
            ),
        )
        for rt in (runlog, runc):
            rt("start", ids[rt.name])
        add(
            "exec true into a running container",
            side_by_side(
                lambda: runlog("exec", ids["runlog"], "true"),
                lambda: runc("exec", ids["runc"], "true"),
            ),
        )
        info = json.loads((tmp / "runlog-root" / ids["runlog"] / "runtime.json").read_text())
        monitor_rss = rss_kib(info["monitor_pid"]) / 1024
        for rt in (runlog, runc):
            rt("delete", "--force", ids[rt.name])
        table(
            f"runlog vs runc ({subprocess.getoutput('runc --version').splitlines()[0]}), "
            f"median of {RUNS} runs each way, ms",
            ("operation", "runs", "runlog", "runc", "ratio"),
            rows,
        )
        table(
            "runlog's monitor with a running container",
            ("what", "value"),
            [("resident memory (VmRSS)", f"{monitor_rss:.1f} MiB")],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
