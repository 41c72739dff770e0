"""runlog next to runc on the same busybox bundle, in one run, as ratios.

- lifecycle of ``true``: create, start, poll ``state`` until stopped, delete;
- ``run true`` (foreground, exit status collected);
- ``state`` alone, on a created container (schedulers poll it);
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def timed(fn: Callable[[], None], runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


class Runtime:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.n = 0

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            [*self.argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if args[0] == "state" else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
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
        entry = str(Path(sys.executable).parent / "runlog")
        runlog = Runtime(
            "runlog", [entry, "--root", str(tmp / "runlog-root"), "--db", str(tmp / "events.db")]
        )
        runlog.lifecycle(true_bundle)  # warm caches, create the database
        runc.lifecycle(true_bundle)
        rows = []
        for what, fn in (
            ("lifecycle of true (create, start, poll state, delete)", Runtime.lifecycle),
            ("run true (+ delete)", Runtime.run),
        ):
            a = timed(lambda fn=fn: fn(runlog, true_bundle))
            b = timed(lambda fn=fn: fn(runc, true_bundle))
            rows.append((what, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x"))
        ids = {}
        for rt in (runlog, runc):
            ids[rt.name] = rt.next_id()
            rt("create", "--bundle", sleep_bundle, ids[rt.name])
        a = timed(lambda: runlog("state", ids["runlog"]), RUNS * 3)
        b = timed(lambda: runc("state", ids["runc"]), RUNS * 3)
        rows.append(("state of a created container", f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x"))
        runlog("start", ids["runlog"])
        info = json.loads((tmp / "runlog-root" / ids["runlog"] / "runtime.json").read_text())
        monitor_rss = rss_kib(info["monitor_pid"]) / 1024
        for rt in (runlog, runc):
            rt("delete", "--force", ids[rt.name])
        table(
            f"runlog vs runc ({subprocess.getoutput('runc --version').splitlines()[0]}), "
            f"median of {RUNS} runs, ms",
            ("operation", "runlog", "runc", "ratio"),
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
