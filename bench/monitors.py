"""What each running container costs: runlog's monitor next to podman's conmon.

Starts ``BENCH_CONTAINERS`` (default 100) running busybox containers
(``sleep``) under runlog and waits until their monitors rest (the lean
process, engine.runtime.monitor.lean); then as many whose monitors never
rest (``RUNLOG_MONITOR_LEAN=off``, as before); then as many under podman
(with runc, each kept by a conmon), and prints for each kind of keeper, from
``/proc/PID/smaps_rollup``: the proportional set size (PSS: shared pages
divided among the processes sharing them), private memory (clean + dirty)
and resident memory (RSS), as sums over the containers divided by their
number; and the threads, descriptors and inotify instances each holds.

Needs root, /bin/busybox, podman and conmon (``make deps``). Figures are
printed, never asserted. ``BENCH_PODMAN=0`` leaves podman out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tables import table  # noqa: E402  (bench/, this script's directory)

from engine.bundles import keep_default_cgroup_parent, make_busybox_bundle  # noqa: E402
from engine.runtime.monitor.handover import resting  # noqa: E402

COUNT = int(os.environ.get("BENCH_CONTAINERS", "100"))
SLEEP = ["sleep", "100000"]
_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def usage(pid: int) -> dict[str, int]:
    """kB of PSS, private and RSS; threads, descriptors, inotify instances."""
    found = {"pss": 0, "private": 0, "rss": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        value = rest.split()[0] if rest.split() else "0"
        if key == "Pss":
            found["pss"] = int(value)
        elif key in ("Private_Clean", "Private_Dirty"):
            found["private"] += int(value)
        elif key == "Rss":
            found["rss"] = int(value)
    found["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    fds = os.listdir(f"/proc/{pid}/fd")
    found["fds"] = len(fds)
    inotify = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                inotify += 1
        except OSError:
            pass
    found["inotify"] = inotify
    return found


def summary(name: str, pids: Iterable[int]) -> tuple[str, ...]:
    rows = [usage(pid) for pid in pids]
    n = len(rows) or 1

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / n

    def span(key: str) -> str:
        values = [r[key] for r in rows] or [0]
        low, high = min(values), max(values)
        return str(low) if low == high else f"{low}-{high}"

    return (
        name,
        str(len(rows)),
        f"{mean('pss') / 1024:.2f}",
        f"{mean('private') / 1024:.2f}",
        f"{mean('rss') / 1024:.2f}",
        span("threads"),
        span("fds"),
        span("inotify"),
    )


def runlog_argv(tmp: Path) -> list[str]:
    entry = str(Path(sys.executable).parent / "runlog")
    return [entry, "--root", str(tmp / "runlog-root"), "--db", str(tmp / "events.db")]


def runlog_monitors(tmp: Path, bundle: str, ids: list[str], rest: str) -> list[int]:
    """Start the containers ``ids``; their monitors' pids once those rest
    (``rest``: ``RUNLOG_MONITOR_LEAN``'s value; ``off``: they do not)."""
    argv = runlog_argv(tmp)
    env = {**os.environ, "RUNLOG_MONITOR_LEAN": rest}
    pids = []
    for cid in ids:
        for verb in (["create", "--bundle", bundle, cid], ["start", cid]):
            subprocess.run([*argv, *verb], check=True, stdin=subprocess.DEVNULL, env=env)
        info = json.loads((tmp / "runlog-root" / cid / "runtime.json").read_text())
        pids.append(int(info["monitor_pid"]))
    deadline = time.monotonic() + 30
    time.sleep(1)  # the last monitors' watches are in place
    while rest != "off" and time.monotonic() < deadline and not all(map(resting, pids)):
        time.sleep(0.2)
    return pids


def delete_all(tmp: Path, ids: list[str]) -> None:
    delete = [*runlog_argv(tmp), "delete", "--force"]
    for cid in ids:
        subprocess.run([*delete, cid], stdin=subprocess.DEVNULL, capture_output=True, check=False)


def podman_conmons(tmp: Path, short: Path, rootfs: str) -> list[int]:
    conf = tmp / "containers.conf"
    conf.write_text(
        "[network]\n"
        'network_backend = "cni"\n'
        f'network_config_dir = "{tmp}/net"\n'
        "[engine]\n"
        f'tmp_dir = "{short}/tmp"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{tmp}/podman-events.log"\n'
        'cgroup_manager = "cgroupfs"\n'
    )
    argv = ["podman", "--root", f"{tmp}/storage", "--runroot", f"{short}/run"]
    argv += ["--storage-driver", "vfs", "--runtime", "runc", "--log-level", "error"]
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    pids = []
    for _ in range(COUNT):
        cid = subprocess.run(
            [*argv, "run", "-d", "--network", "none", *_LIMITS, "--rootfs", rootfs, *SLEEP],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        out = subprocess.run(
            [*argv, "inspect", "--format", "{{.State.ConmonPid}}", cid],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        pids.append(int(out.stdout.strip()))
    return pids


def podman_cleanup(tmp: Path, short: Path) -> None:
    env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf")}
    argv = ["podman", "--root", f"{tmp}/storage", "--runroot", f"{short}/run"]
    argv += ["--storage-driver", "vfs", "--runtime", "runc", "--log-level", "error"]
    subprocess.run(
        [*argv, "rm", "--all", "--force", "--time", "0"], env=env, capture_output=True, check=False
    )
    # The conmons exit a moment after podman rm returns.
    made = [*Path("/sys/fs/cgroup").glob("*/libpod_parent/conmon")]
    made += sorted(set(Path("/sys/fs/cgroup").glob("*/libpod_parent")) - _BEFORE)
    for cgroup in made:
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)


#: podman's cgroup parent where it was before the run (others' to keep).
_BEFORE = set(Path("/sys/fs/cgroup").glob("*/libpod_parent"))


def main() -> int:
    if os.geteuid() != 0:
        print("bench/monitors.py needs root")
        return 1
    with keep_default_cgroup_parent():
        return _main()


def _main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="runlog-bench-"))
    # podman refuses a run root of more than 50 characters.
    short = Path(tempfile.mkdtemp(prefix="rl-pm-", dir="/tmp"))
    with_podman = os.environ.get("BENCH_PODMAN", "1") != "0" and shutil.which("podman")
    ids: list[str] = []
    rows = []
    try:
        bundle = make_busybox_bundle(str(tmp / "sleep"), SLEEP)
        for name, rest in (("runlog monitor, resting", "1"), ("runlog monitor, awake", "off")):
            ids = [f"mon-{os.getpid()}-{rest or 'rest'}-{i}" for i in range(COUNT)]
            pids = runlog_monitors(tmp, bundle, ids, rest)
            rows.append(summary(f"{name} ({sum(map(resting, pids))} lean)", pids))
            delete_all(tmp, ids)
            ids = []
        if with_podman:
            rows.append(summary("podman conmon", podman_conmons(tmp, short, bundle + "/rootfs")))
        table(
            f"per running container, mean over {COUNT} (MiB; counts as min-max)",
            ("keeper", "n", "PSS", "private", "RSS", "threads", "fds", "inotify"),
            rows,
        )
    finally:
        delete_all(tmp, ids)
        if with_podman:
            podman_cleanup(tmp, short)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(short, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
