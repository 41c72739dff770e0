"""Rootless: runlog next to ``runc --rootless=true`` as an unprivileged user,
on the same ``runc spec --rootless`` bundle, in one run, as ratios.

The user is made for the run (useradd) and removed after. Both runtimes
get explicit places in a directory of the user's; runlog's log is SQLite
there. Same operations as bench/containers.py: the lifecycle of ``true``,
``run true``, and ``state`` of a created container. Needs root (to make
the user), runc, uidmap and /bin/busybox (``make bench``). Figures are
printed, never asserted.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from containers import RUNS, Runtime, runlog_entry, side_by_side  # noqa: E402  (bench/)
from tables import table  # noqa: E402

from tests.runtime.users import User, make_user, rootless_bundle  # noqa: E402


def as_user(user: User) -> dict[str, Any]:
    """subprocess.run's options to run a runtime as ``user``."""
    return {"user": user.uid, "group": user.gid, "extra_groups": [], "env": user.env()}


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("useradd"):
        print("bench/rootless.py needs root (to make a user), runc and useradd")
        return 1
    with make_user("rlbench", 2961) as user:
        tmp = Path(tempfile.mkdtemp(prefix="runlog-bench-rootless-", dir="/tmp"))
        try:
            os.chown(tmp, user.uid, user.gid)
            tmp.chmod(0o700)
            return _bench(user, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _bench(user: User, tmp: Path) -> int:
    true_bundle = str(rootless_bundle(user, tmp / "true", ["true"]))
    sleep_bundle = str(rootless_bundle(user, tmp / "sleep", ["sleep", "60"]))
    runc = Runtime(
        "runc", ["runc", "--rootless=true", "--root", str(tmp / "runc-root")], **as_user(user)
    )
    entry = runlog_entry()
    runlog = Runtime(
        "runlog",
        [entry, "--rootless=true", "--root", str(tmp / "runlog-root"), "--db", str(tmp / "ev.db")],
        **as_user(user),
    )
    runlog.lifecycle(true_bundle)  # warm caches, create the database
    runc.lifecycle(true_bundle)
    rows: list[tuple[str, ...]] = []

    def add(what: str, medians: dict[str, tuple[float, float]]) -> None:
        for order, (a, b) in medians.items():
            rows.append((what, order, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x"))

    def lifecycle(rt: Any) -> None:
        rt.lifecycle(true_bundle)

    def run(rt: Any) -> None:
        rt.run(true_bundle)

    add(
        "rootless lifecycle of true",
        side_by_side(lambda: lifecycle(runlog), lambda: lifecycle(runc)),
    )
    add("rootless run true (+ delete)", side_by_side(lambda: run(runlog), lambda: run(runc)))
    ids = {}
    for rt in (runlog, runc):
        ids[rt.name] = rt.next_id()
        rt("create", "--bundle", sleep_bundle, ids[rt.name])
    try:
        add(
            "rootless state of a created container",
            side_by_side(
                lambda: runlog("state", ids["runlog"]), lambda: runc("state", ids["runc"]), RUNS * 3
            ),
        )
    finally:
        for rt in (runlog, runc):
            rt("delete", "--force", ids[rt.name])
    table(
        f"rootless runlog vs runc --rootless=true as uid {user.uid}, median of {RUNS} runs, ms",
        ("operation", "runs", "runlog", "runc", "ratio"),
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
