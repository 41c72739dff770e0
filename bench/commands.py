"""The lifecycle command by command, runlog next to runc, with the floors.

bench/containers.py gives the lifecycle's ratio; this says where it goes:
``create``, ``start``, the poll of ``state`` until stopped and ``delete``,
each timed on its own, runlog and runc taking turns on the same busybox
bundle. For each command it also gives the minor page faults of the
command's own process (``wait4``'s rusage: not the monitor's, not runc's
init), as a page a process touches for the first time costs the kernel a
fault, and on some machines that is a large part of an interpreter's start.

Two floors are measured in the same run, taking turns with the rest:
- the bare interpreter the entry stub runs (``python -I -S -c pass``):
  every runlog command is at least that;
- runc's ``state`` of a container that does not exist: runc's start and
  exit, with nothing to read.

Needs root, /bin/busybox and runc (``make bench``). Figures are printed,
never asserted. ``BENCH_RUNS`` lifecycles (15), ``BENCH_RUNLOG`` as in
bench/containers.py.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from containers import RUNS, runlog_entry  # noqa: E402  (bench/)
from tables import table  # noqa: E402

from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle  # noqa: E402

STEPS = ("create", "start", "poll", "delete")


def timed(argv: list[str], capture: bool = False) -> tuple[float, int, bytes]:
    """Run ``argv``; its wall time in ms, its minor faults, its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = proc.stdout.read() if proc.stdout is not None else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - start) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    return elapsed, usage.ru_minflt, out


class Runtime:
    def __init__(self, name: str, argv: list[str], bundle: str) -> None:
        self.name = name
        self.argv = argv
        self.bundle = bundle
        self.n = 0
        self.ms: dict[str, list[float]] = {step: [] for step in STEPS}
        self.faults: dict[str, list[int]] = {step: [] for step in STEPS}

    def lifecycle(self) -> None:
        self.n += 1
        cid = f"cmd-{self.name}-{os.getpid()}-{self.n}"
        for step, args in (
            ("create", ["create", "--bundle", self.bundle, cid]),
            ("start", ["start", cid]),
        ):
            ms, faults, _ = timed([*self.argv, *args])
            self.ms[step].append(ms)
            self.faults[step].append(faults)
        total_ms, total_faults = 0.0, 0
        while True:
            ms, faults, out = timed([*self.argv, "state", cid], capture=True)
            total_ms += ms
            total_faults += faults
            if b'"stopped"' in out or not out:
                break
        self.ms["poll"].append(total_ms)
        self.faults["poll"].append(total_faults)
        ms, faults, _ = timed([*self.argv, "delete", cid])
        self.ms["delete"].append(ms)
        self.faults["delete"].append(faults)


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("runc"):
        print("bench/commands.py needs root and runc (make bench installs runc)")
        return 1
    with keep_default_cgroup_parent():
        tmp = Path(tempfile.mkdtemp(prefix="runlog-bench-commands-"))
        try:
            return _bench(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _bench(tmp: Path) -> int:
    bundle = make_busybox_bundle(str(tmp / "true"), ["true"])
    entry = runlog_entry()
    runlog = Runtime(
        "runlog", [entry, "--root", str(tmp / "runlog"), "--db", str(tmp / "ev.db")], bundle
    )
    runc = Runtime("runc", ["runc", "--root", str(tmp / "runc")], bundle)
    # The interpreter the stub names on its first line.
    with open(entry) as fh:
        interpreter = fh.readline()[2:].split()[0]
    floors: dict[str, list[tuple[float, int]]] = {"python": [], "runc": []}
    runlog.lifecycle()  # warm caches, create the log
    runc.lifecycle()
    for rt in (runlog, runc):
        for step in STEPS:
            rt.ms[step].clear()
            rt.faults[step].clear()
    for _ in range(RUNS):
        runlog.lifecycle()
        runc.lifecycle()
        floors["python"].append(timed([interpreter, "-I", "-S", "-c", "pass"])[:2])
        floors["runc"].append(timed(["runc", "--root", str(tmp / "runc"), "state", "none"])[:2])
    median = statistics.median
    rows: list[tuple[str, ...]] = []
    for step in STEPS:
        a, b = median(runlog.ms[step]), median(runc.ms[step])
        rows.append(
            (
                step,
                f"{a:.1f}",
                f"{b:.1f}",
                f"{a / b:.2f}x",
                f"{median(runlog.faults[step]):.0f}",
                f"{median(runc.faults[step]):.0f}",
            )
        )
    life = [sum(x) for x in zip(*(runlog.ms[s] for s in STEPS), strict=True)]
    life_c = [sum(x) for x in zip(*(runc.ms[s] for s in STEPS), strict=True)]
    rows.append(
        (
            "lifecycle",
            f"{median(life):.1f}",
            f"{median(life_c):.1f}",
            f"{median(life) / median(life_c):.2f}x",
            "",
            "",
        )
    )
    table(
        f"runlog vs runc, command by command, median of {RUNS} lifecycles in turn (ms; "
        "minor faults of the command's own process)",
        ("command", "runlog", "runc", "ratio", "runlog faults", "runc faults"),
        rows,
    )
    table(
        "floors, measured in turn with the above",
        ("what", "ms", "minor faults"),
        [
            (
                f"{interpreter} -I -S -c pass",
                f"{median(x for x, _ in floors['python']):.1f}",
                f"{median(f for _, f in floors['python']):.0f}",
            ),
            (
                "runc state of no container",
                f"{median(x for x, _ in floors['runc']):.1f}",
                f"{median(f for _, f in floors['runc']):.0f}",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
