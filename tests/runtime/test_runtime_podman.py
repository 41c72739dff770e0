"""podman with runlog as its OCI runtime (``--runtime``), end to end.

podman drives runlog through conmon as it drives runc: create under a child
subreaper, start, state, pause, resume, kill, delete --force. Everything
podman keeps lives under the test's directory (storage, run root, its tmp
dir, a containers.conf that picks the CNI backend, whose network "none"
writes nothing under /run); the containers run from a busybox root
filesystem (``--rootfs``), so no image is pulled or imported.

This host refuses a NOFILE or NPROC hard limit above its own (no
CAP_SYS_RESOURCE in the bounding set), and podman asks for 1048576 of both:
the runs pass ``--ulimit`` (runc fails the same way without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
Bundle = Callable[..., Path]

_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# What podman would make outside the test's directory if misconfigured.
_HOST_DIRS = ("/run/containers", "/run/libpod", "/var/lib/containers", "/etc/cni/net.d")


class Podman:
    def __init__(
        self, tmp_path: Path, short: Path, runlog: Any, parent: str, wrapper: bool = False
    ) -> None:
        podman = shutil.which("podman")
        assert podman, "podman is missing: make deps installs it"
        runtime = tmp_path / "runlog-runtime"
        # wrapper: a script that runs runlog as its child (no exec), between
        # conmon and runlog; the init must still go to conmon.
        runtime.write_text(
            "#!/bin/sh\n"
            f"export PYTHONPATH={REPO}\n"
            f"{'' if wrapper else 'exec '}"
            f'{sys.executable} -m engine --root {runlog.root} --db {runlog.db} "$@"\n'
        )
        runtime.chmod(0o755)
        conf = tmp_path / "containers.conf"
        conf.write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{tmp_path}/net"\n'
            "[engine]\n"
            f'tmp_dir = "{short}/tmp"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{tmp_path}/podman-events.log"\n'
            'cgroup_manager = "cgroupfs"\n'
        )
        self.argv = [podman, "--root", f"{tmp_path}/storage", "--runroot", f"{short}/run"]
        self.argv += ["--storage-driver", "vfs", "--runtime", str(runtime), "--log-level", "error"]
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.parent = parent

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.returncode}: {proc.stderr}")
        return proc

    def in_pty(self, *args: str) -> tuple[int, str]:
        """``podman ARGS`` on a terminal (``exec -it``): its exit status and
        what it wrote there."""
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(
                [*self.argv, *args], stdin=slave, stdout=slave, stderr=slave, env=self.env
            )
        finally:
            os.close(slave)
        output = b""
        try:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave descriptor closed
                    break
                if not chunk:
                    break
                output += chunk
            code = proc.wait(timeout=60)
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return code, output.decode(errors="replace")

    def run_args(self, rootfs: Path) -> list[str]:
        return [
            "--network",
            "none",
            *_LIMITS,
            "--cgroup-parent",
            self.parent,
            "--rootfs",
            str(rootfs),
        ]


@pytest.fixture(params=["direct", "wrapper"])
def podman(
    request: pytest.FixtureRequest, tmp_path: Path, runlog: Any, parent_cgroup: str
) -> Iterator[Podman]:
    absent = [d for d in _HOST_DIRS if not os.path.exists(d)]
    # podman refuses a run root of more than 50 characters (conmon's socket paths).
    short = Path(tempfile.mkdtemp(prefix="rl-podman-", dir="/tmp"))
    tool = Podman(tmp_path, short, runlog, parent_cgroup, wrapper=request.param == "wrapper")
    yield tool
    tool("rm", "--all", "--force", "--time", "0", check=False)
    shutil.rmtree(short)
    # conmon's own cgroup (cgroupfs manager), under the test's parent.
    # podman returns before an exec session's conmon has exited: given a
    # few seconds to, it must leave nothing.
    for leftover in Path("/sys/fs/cgroup").glob(f"*/{tool.parent.strip('/')}/conmon"):
        deadline = time.monotonic() + 10
        while (procs := (leftover / "cgroup.procs").read_text().split()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        if procs:
            cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in procs]
            raise AssertionError(f"left in {leftover}: {cmdlines}")
        leftover.rmdir()
    made = [d for d in absent if os.path.exists(d)]
    assert not made, f"podman left {made}"


def test_podman_run_passes_the_exit_code_and_output(
    podman: Podman, bundle: Bundle, runlog: Any
) -> None:
    rootfs = bundle(["true"]) / "rootfs"
    proc = podman(
        "run", "--rm", *podman.run_args(rootfs), "sh", "-c", "echo hello; exit 7", check=False
    )
    assert (proc.returncode, proc.stdout) == (7, "hello\n"), proc.stderr
    # Its whole life, --rm's delete included, is in runlog's log.
    (cid,) = runlog_ids(runlog.db)
    triggers = [trigger for trigger, _dest, outcome in runlog.events(cid) if outcome == "ok"]
    for step in ("create", "start", "exit", "delete"):
        assert step in triggers, (step, triggers)


def test_podman_runs_a_detached_container_through_its_lifecycle(
    podman: Podman, bundle: Bundle, runlog: Any
) -> None:
    rootfs = bundle(["true"]) / "rootfs"
    cid = podman(
        "run",
        "-d",
        "--name",
        "t-pod",
        *podman.run_args(rootfs),
        "sh",
        "-c",
        "echo started; exec sleep 60",
    ).stdout.strip()
    assert runlog.state(cid)["status"] == "running"

    def status() -> str:
        return str(podman("inspect", "--format", "{{.State.Status}}", "t-pod").stdout.strip())

    assert status() == "running"
    names = podman("ps", "--format", "{{.Names}}").stdout.split()
    assert names == ["t-pod"]
    assert "started" in podman("logs", "t-pod").stdout
    podman("pause", "t-pod")
    assert (status(), runlog.state(cid)["status"]) == ("paused", "paused")
    podman("unpause", "t-pod")
    assert (status(), runlog.state(cid)["status"]) == ("running", "running")
    # exec through conmon: runlog exec --detach --pid-file --process FILE.
    ran = podman("exec", "t-pod", "sh", "-c", "echo in-exec; exit 5", check=False)
    assert (ran.returncode, ran.stdout) == (5, "in-exec\n"), ran.stderr
    code, screen = podman.in_pty("exec", "-it", "t-pod", "sh", "-c", "tty; exit 6")
    assert code == 6, screen
    assert "/dev/pts/" in screen, screen
    podman("stop", "--time", "1", "t-pod")
    assert status() == "exited"
    podman("rm", "t-pod")
    assert not (runlog.root / cid).exists()
    # The whole life is in runlog's log, each step asked for by podman's tools.
    triggers = [trigger for trigger, _dest, outcome in runlog.events(cid) if outcome == "ok"]
    for step in ("create", "start", "pause", "resume", "exec", "kill", "exit", "delete"):
        assert step in triggers, (step, triggers)
    assert triggers.count("exec") == 2
    assert triggers[0] == "create" and triggers[-1] == "delete"
    # Each of them asked through the control socket, podman's tools as the actor.
    actors = runlog_actors(runlog.db, cid)
    assert {"cli", "socket"} <= actors, actors
    # And every event its monitor recorded names podman's container.
    assert podman_ids(runlog.db, cid) == {cid}


def podman_ids(db: Path, cid: str) -> set[str | None]:
    import json
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT actor_context FROM events WHERE container_id = ? AND actor_transport != 'cli'",
            (cid,),
        )
        return {json.loads(row[0] or "{}").get("podman_id") for row in rows}


def test_podman_kill_then_wait_gives_137(podman: Podman, bundle: Bundle, runlog: Any) -> None:
    rootfs = bundle(["true"]) / "rootfs"
    cid = podman("run", "-d", "--name", "t-kill", *podman.run_args(rootfs), "sleep", "60")
    cid_text = cid.stdout.strip()
    podman("kill", "t-kill")
    assert podman("wait", "t-kill").stdout.strip() == "137"
    podman("rm", "t-kill")
    triggers = [t for t, _dest, outcome in runlog.events(cid_text) if outcome == "ok"]
    for step in ("create", "start", "kill", "exit", "delete"):
        assert step in triggers, (step, triggers)


def runlog_actors(db: Path, cid: str) -> set[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT actor_transport FROM events WHERE container_id = ?", (cid,))
        return {str(row[0]) for row in rows}


def runlog_ids(db: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT DISTINCT container_id FROM events ORDER BY container_id")
        return [str(row[0]) for row in rows]
