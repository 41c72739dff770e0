"""Slurm 22.05 running runlog as the job's user: a one-node cluster (munged,
slurmctld, slurmd from Debian) started here with its configuration, key and
spool in a temporary directory, ports free on 127.0.0.1, and stopped and
removed after. `srun --container` and `sbatch --container` run as a user
made for the module, with the oci.conf of the README's recipes."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.bundles import BUSYBOX
from tests.runtime.conftest import REPO
from tests.runtime.users import User, make_user, rootless_bundle

pytestmark = [pytest.mark.root, pytest.mark.slow]

RUNLOG = Path(sys.executable).parent / "runlog"
_DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sbatch", "scancel", "scontrol", "squeue")


def _readme_recipes() -> tuple[str, str]:
    """The README's two oci.conf recipes (RunTimeRun mode, then create/start
    mode), exactly as written there, with /path/to/runlog made this venv's."""
    blocks = (REPO / "README.md").read_text().split("```")[1::2]
    recipes = [b.split("\n", 1)[1] for b in blocks if "RunTimeQuery=" in b]
    run, create = (b.replace("/path/to/runlog", str(RUNLOG)) for b in recipes)
    assert "RunTimeRun=" in run and "RunTimeCreate=" in create, recipes
    return run, create


RUN_MODE, CREATE_MODE = _readme_recipes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Cluster:
    def __init__(self, directory: Path, user: User, bundle: Path, proctrack: str) -> None:
        self.proctrack = proctrack
        self.dir = directory
        self.user = user
        self.bundle = bundle
        self.conf = directory / "slurm.conf"
        self.root = Path(f"/tmp/runlog-{user.name}")
        self.db = Path(f"/var/tmp/runlog-{user.name}/events.db")

    def env(self) -> dict[str, str]:
        return self.user.env(SLURM_CONF=str(self.conf))

    def oci(self, recipe: str) -> None:
        (self.dir / "oci.conf").write_text(recipe)

    def as_user(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.user.run(argv, env=self.env(), cwd=str(self.user.home), timeout=timeout)

    def root_cmd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    def jobs(self) -> list[str]:
        return self.root_cmd("squeue", "-h", "-o", "%i").stdout.split()

    def job_field(self, job: str, field: str) -> str:
        out = self.root_cmd("scontrol", "show", "job", job).stdout
        for word in out.split():
            if word.startswith(field + "="):
                return word.split("=", 1)[1]
        raise AssertionError(f"no {field} for job {job}: {out}")

    def wait_idle(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not self.jobs(), f"jobs still there: {self.jobs()}"

    def leftovers(self) -> list[str]:
        """Containers, processes, mounts of the user's: none once jobs end."""
        left = []
        deadline = time.monotonic() + 10
        while True:
            left = [f"state {p}" for p in self.root.iterdir()] if self.root.exists() else []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.stat(f"/proc/{pid}").st_uid == self.user.uid:
                        left.append(f"process {pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()!r}")
                except OSError:
                    continue
            with open("/proc/self/mountinfo") as fh:
                left += [f"mount {line.split()[4]}" for line in fh if str(self.bundle) in line]
            left += [f"cgroup {path}{_procs(path)}" for path in self.cgroups()]
            if not left or time.monotonic() > deadline:
                return left + self._damage()
            time.sleep(0.2)

    def _damage(self) -> list[str]:
        """The log as SQLite finds it once the jobs are over: every command
        that wrote it (the user's, root's, killed mid-way) left it whole."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(self.db)
        try:
            found = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as err:
            found = [str(err)]
        finally:
            conn.close()
        return [] if found == ["ok"] else [f"log {self.db}: {'; '.join(found)}"]

    def cgroups(self) -> list[str]:
        """Slurm's cgroups of the user's jobs (``uid_U/job_J``,
        proctrack/cgroup's; ``uid_U`` itself stays while slurmd runs) and
        runlog's of the user's containers (``NODE.USER.JOB.STEP.TASK``)."""
        found = []
        for top, dirs, _files in os.walk("/sys/fs/cgroup"):
            jobs = os.path.basename(top) == f"uid_{self.user.uid}"
            found += [os.path.join(top, d) for d in dirs if jobs or f".{self.user.name}." in d]
        return found

    def outlived(self, job: str) -> list[str]:
        """Slurm's own cgroups of ``job`` left once it is over, each with what
        is in it, removed here (deepest first) so that later tests start
        clean. None should be left: the recipes give the container no cgroup
        of its own (``--cgroup-manager=disabled``), so under proctrack/cgroup
        nothing of runlog's is below the step's cgroups when Slurm removes
        them, which it does before its clean-up's RunTimeKill and
        RunTimeDelete (docs/rootless.md)."""
        found: list[str] = []
        tops = list(Path("/sys/fs/cgroup").glob(f"*/slurm*/uid_{self.user.uid}/job_{job}"))
        for top in tops:
            for path, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                where = Path(path)
                found.append(f"{where.relative_to(top.parents[3])}{_procs(path)}")
                try:
                    where.rmdir()
                except OSError:
                    pass  # in use: the leftovers check names it too
        return sorted(found)

    def log(self, lines: int = 60) -> str:
        """The end of slurmd's log (the steps' slurmstepd write there too)."""
        return "\n".join((self.dir / "slurmd.log").read_text().splitlines()[-lines:])

    def _select(self, columns: str, cid_part: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                f"SELECT {columns} FROM events WHERE container_id LIKE ? ORDER BY seq",
                (f"%{cid_part}%",),
            ).fetchall()

    def events(self, cid_part: str) -> list[tuple[str, str, int]]:
        rows = self._select('"trigger", outcome, actor_uid', cid_part)
        return [(str(t), str(o), int(u)) for t, o, u in rows]

    def exit_code(self, job: str) -> int:
        """The container's exit code in the job's exit event."""
        rows = self._select('"trigger", outcome, payload', f".{job}.")
        [payload] = [json.loads(p) for t, o, p in rows if (t, o) == ("exit", "ok")]
        [code] = [
            a["result"]["exit_code"]
            for a in payload["actions"]
            if "exit_code" in (a.get("result") or {})
        ]
        return int(code)


def _procs(path: str) -> str:
    """What is in a cgroup left behind, to say why it is left."""
    try:
        pids = Path(path, "cgroup.procs").read_text().split()
    except OSError:
        return ""
    named = []
    for pid in pids:
        try:
            named.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}")
        except OSError:
            named.append(pid)
    return f" (processes: {', '.join(named)})" if named else " (no process)"


def _start(directory: Path, user: User, plugins: str) -> None:
    """``plugins``: the proctrack plugin, ``+task`` for task/cgroup too."""
    proctrack, _plus, task = plugins.partition("+")
    host = socket.gethostname().split(".")[0]
    key = directory / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for sub in ("state", "spool"):
        (directory / sub).mkdir(mode=0o700)
    ctld, slurmd = _free_port(), _free_port()
    cpus = os.cpu_count() or 1
    d = directory
    (d / "slurm.conf").write_text(
        f"""\
ClusterName=runlogtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
PlugStackConfig={d}/plugstack.conf
ProctrackType=proctrack/{proctrack}
TaskPlugin=task/{"cgroup" if task else "none"}
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
MpiDefault=none
ReturnToService=2
KillWait=5
SlurmdDebug=debug
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    (d / "plugstack.conf").write_text("")
    # Read beside slurm.conf; proctrack/cgroup's hierarchies (this host's
    # v1 controllers, or cgroup2 where that is all there is).
    # task/cgroup: the step's cores and memory, in cpuset and memory cgroups.
    constrain = "ConstrainCores=yes\nConstrainRAMSpace=yes\n" if task else ""
    (d / "cgroup.conf").write_text("CgroupPlugin=autodetect\n" + constrain)
    subprocess.run(
        [
            "munged",
            f"--key-file={key}",
            f"--socket={d}/munge.sock",
            f"--pid-file={d}/munged.pid",
            f"--log-file={d}/munged.log",
            f"--seed-file={d}/munge.seed",
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["slurmctld", "-f", str(d / "slurm.conf")], check=True, capture_output=True)
    subprocess.run(["slurmd", "-f", str(d / "slurm.conf")], check=True, capture_output=True)
    env = {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, check=False
        )
        if out.stdout.strip() == "idle":
            return
        time.sleep(0.5)
    logs = "".join(p.read_text()[-2000:] for p in d.glob("*.log"))
    raise AssertionError(f"the test cluster did not come up: {logs}")


def _stop(directory: Path) -> None:
    env = {**os.environ, "SLURM_CONF": str(directory / "slurm.conf")}
    subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True, check=False)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = _pid(directory / f"{name}.pid")
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    # slurmstepd of a job that did not end: the cluster's own, by their parent.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if (
            cmdline.startswith(b"slurmstepd")
            and str(directory).encode() in Path(f"/proc/{pid}/environ").read_bytes()
        ):
            os.kill(int(pid), signal.SIGKILL)


def _remove_cgroups(tops: set[Path]) -> None:
    """The cgroups proctrack/cgroup's slurmd made (``slurm_NODE`` in each
    hierarchy), deepest first; one still in use stays (and fails the
    leftovers check of the test that left it)."""
    for top in tops:
        for path, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(path)
            except OSError:
                pass


@pytest.fixture(scope="module", params=["linuxproc", "cgroup"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    plugins = str(request.param)
    if os.geteuid() != 0:
        pytest.skip("a Slurm cluster needs root")
    missing = [name for name in _DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: make installs slurmctld, slurmd, munge")
    if not RUNLOG.exists():
        pytest.fail(f"{RUNLOG} is missing: make venv writes it")
    if not os.path.exists(BUSYBOX) or shutil.which("runc") is None:
        pytest.fail("busybox-static and runc are needed: make installs them")
    slurm_cgroups = set(Path("/sys/fs/cgroup").glob("*/slurm*"))
    directory = Path(tempfile.mkdtemp(prefix="runlog-slurm-", dir="/tmp"))
    directory.chmod(0o755)
    with make_user("rlslurm", 2931) as user:
        bundle = rootless_bundle(user, user.home / "bundle", ["sh"])
        try:
            _start(directory, user, plugins)
            made = Cluster(directory, user, bundle, plugins.partition("+")[0])
            yield made
        finally:
            _stop(directory)
            _remove_cgroups(set(Path("/sys/fs/cgroup").glob("*/slurm*")) - slurm_cgroups)
            shutil.rmtree(directory, ignore_errors=True)
            for path in (Path(f"/tmp/runlog-{user.name}"), Path(f"/var/tmp/runlog-{user.name}")):
                shutil.rmtree(path, ignore_errors=True)


def test_srun_in_run_mode_passes_output_and_exit_code(cluster: Cluster) -> None:
    cluster.oci(RUN_MODE)
    got = cluster.as_user(
        ["srun", f"--container={cluster.bundle}", "sh", "-c", "id -u; echo inside; exit 3"]
    )
    assert got.returncode == 3, got.stderr
    assert got.stdout.split() == ["0", "inside"]
    cluster.wait_idle()
    assert cluster.leftovers() == []
    events = cluster.events(".0.0")
    assert ("create", "ok", cluster.user.uid) in events
    assert ("delete", "ok", cluster.user.uid) in events
    # Slurm's RunTimeQuery after the step, as root: recorded with root the actor.
    assert any(uid == 0 for _t, _o, uid in events), events
    owned = [
        str(p)
        for top in (cluster.root, cluster.db.parent)
        for p in [top, *top.rglob("*")]
        if p.lstat().st_uid != cluster.user.uid
    ]
    assert not owned, owned


@pytest.mark.parametrize("cluster", ["cgroup+task"], indirect=True)
def test_run_mode_under_task_cgroup(cluster: Cluster) -> None:
    """TaskPlugin=task/cgroup (cores and memory constrained) with
    proctrack/cgroup: the container, with no cgroup of its own
    (``--cgroup-manager=disabled``), runs in the step's cpuset, memory and
    freezer cgroups, as any task of the step, so the step's limits bound
    it; the create event says which controllers it went without, and why."""
    cluster.oci(RUN_MODE)
    program = "grep -E ':(cpuset|memory|freezer):' /proc/self/cgroup; exit 3"
    got = cluster.as_user(["srun", f"--container={cluster.bundle}", "sh", "-c", program])
    assert got.returncode == 3, got.stderr
    cluster.wait_idle()
    assert cluster.leftovers() == []
    found = dict(line.split(":", 2)[1:] for line in got.stdout.split())
    assert sorted(found) == ["cpuset", "freezer", "memory"], got.stdout
    # The step's own cgroups (Slurm's names), nothing of runlog's below them.
    for controller, path in found.items():
        parts = path.strip("/").split("/")
        assert parts[2].startswith("job_") and parts[3] == "step_0", (controller, path)
        assert not any(f".{cluster.user.name}." in part for part in parts), (controller, path)
    [payload] = [
        json.loads(p)
        for t, o, p in cluster._select('"trigger", outcome, payload', ".0.0")
        if (t, o) == ("create", "ok")
    ]
    [made] = [a["result"] for a in payload["actions"] if a["action"] == "cgroup.create"]
    assert made["cgroups"] == [] and made["cgroup_manager"] == "disabled", made
    assert {"cpuset", "memory", "freezer"} <= set(made["cgroups_skipped"]), made
    _scancel_in_run_mode(cluster)


def _process_state(pid: int) -> str:
    """The one-letter state of ``pid`` (/proc/PID/stat): a task of a frozen
    v1 freezer cgroup is in D."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _user_process(cluster: Cluster, head: bytes) -> int:
    """The pid of the user's one process whose command line starts with ``head``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == cluster.user.uid and Path(
                f"/proc/{pid}/cmdline"
            ).read_bytes().startswith(head):
                found.append(int(pid))
        except OSError:
            continue
    [pid] = found
    return pid


@pytest.mark.parametrize("cluster", ["cgroup"], indirect=True)
def test_suspend_freezes_the_container_under_proctrack_cgroup(cluster: Cluster) -> None:
    """`scontrol suspend` freezes the step's freezer cgroup, where the
    recipes' `--cgroup-manager=disabled` leaves the container's processes:
    the container stops with the step (its init frozen, state D, about 2 s
    after the command here), and goes on after `scontrol resume`."""
    cluster.oci(RUN_MODE)
    proc = _srun_background(cluster, "sh", "-c", "echo ready; while :; do sleep 0.05; done")
    try:
        _wait_ready(proc)
        [job] = cluster.jobs()
        init = _user_process(cluster, b"sh\0-c\0echo ready")
        assert cluster.root_cmd("scontrol", "suspend", job).returncode == 0
        deadline = time.monotonic() + 20
        while _process_state(init) != "D" and time.monotonic() < deadline:
            time.sleep(0.1)  # slurmctld, slurmd, then the step's slurmstepd
        assert _process_state(init) == "D", cluster.log(50)
        assert cluster.root_cmd("scontrol", "resume", job).returncode == 0
        while _process_state(init) == "D" and time.monotonic() < deadline + 20:
            time.sleep(0.1)
        assert _process_state(init) != "D", cluster.log(50)
        assert cluster.root_cmd("scancel", job).returncode == 0
        proc.wait(timeout=90)
        cluster.wait_idle()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert cluster.leftovers() == []


def test_sbatch_keeps_the_exit_code(cluster: Cluster) -> None:
    cluster.oci(RUN_MODE)
    script = cluster.user.home / "job.sh"
    script.write_text("#!/bin/sh\necho batch\nexit 5\n")
    script.chmod(0o755)
    out = cluster.user.home / "job.out"
    got = cluster.as_user(
        ["sbatch", "--parsable", f"--container={cluster.bundle}", f"--output={out}", str(script)]
    )
    assert got.returncode == 0, got.stderr
    job = got.stdout.strip().split(";")[0]
    cluster.wait_idle()
    assert cluster.job_field(job, "ExitCode") == "5:0"
    assert "batch" in out.read_text()
    assert cluster.leftovers() == []


def _srun_background(
    cluster: Cluster, *args: str, bundle: Path | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["srun", f"--container={bundle or cluster.bundle}", *args],
        env=cluster.env(),
        cwd=str(cluster.user.home),
        user=cluster.user.uid,
        group=cluster.user.gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# A program that ends on SIGTERM, as most do; a pid 1 without a handler
# ignores it (pid_namespaces(7)), under runc as under runlog.
WORKER = "trap 'exit 143' TERM; echo ready; sleep 300 & wait"


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """The container's first line, within ``timeout`` (a node that Slurm
    drained never starts the job: fail, not hang)."""
    assert proc.stdout is not None
    ready, _w, _x = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from srun in {timeout} s"
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")


def _scancel_in_run_mode(cluster: Cluster) -> str:
    """srun a worker in run mode, scancel it: srun gets the container's
    own 143 (the SIGTERM reached it through `run`), nothing is left; the job."""
    proc = _srun_background(cluster, "sh", "-c", WORKER)
    try:
        _wait_ready(proc)
        [job] = cluster.jobs()
        assert cluster.root_cmd("scancel", job).returncode == 0
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    cluster.wait_idle()
    assert cluster.leftovers() == []
    return job


def test_scancel_stops_the_container(cluster: Cluster) -> None:
    cluster.oci(RUN_MODE)
    job = _scancel_in_run_mode(cluster)
    events = cluster.events(f".{job}.0.0")
    triggers = [t for t, o, _u in events if o == "ok" and t not in ("state", "wait")]
    assert triggers == ["create", "start", "kill", "exit", "delete"], triggers


def test_a_time_limit_ends_the_container(cluster: Cluster) -> None:
    cluster.oci(RUN_MODE)
    proc = _srun_background(cluster, "--time=1", "sh", "-c", WORKER)
    try:
        _wait_ready(proc)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert code != 0
    assert "TIME LIMIT" in err, err
    cluster.wait_idle()
    assert cluster.leftovers() == []


def test_scancel_of_a_container_that_ignores_sigterm_in_run_mode(cluster: Cluster) -> None:
    """pid 1 without a handler ignores scancel's SIGTERM (pid_namespaces(7)),
    which `run` passes on (a `kill` event). Slurm's SIGKILL, KillWait
    later, kills `run`; under proctrack/cgroup the monitor and the
    container too (every process in the step's cgroup: the container has
    none of its own), under proctrack/linuxproc not (it tracks neither).
    The container has `run`'s pipes, not srun's stdout (runc's run copies
    so too): the step's output ends with `run`, and Slurm's clean-up
    (RunTimeKill, RunTimeDelete) stops what is left at once, rather than
    after slurmstepd has waited 60 s for the output."""
    cluster.oci(RUN_MODE)
    proc = _srun_background(cluster, "sh", "-c", "echo ready; exec sleep 300")
    try:
        _wait_ready(proc)
        [job] = cluster.jobs()
        started = time.monotonic()
        assert cluster.root_cmd("scancel", job).returncode == 0
        code = proc.wait(timeout=120)
        cluster.wait_idle()
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    # KillWait is 5 s; the output's end no longer waits 60 s.
    assert took < 30, (took, code, err, cluster.log(200))
    assert code != 0, err
    assert cluster.outlived(job) == []
    assert cluster.leftovers() == []
    triggers = [t for t, o, _u in cluster.events(f".{job}.0.0") if o == "ok"]
    assert "kill" in triggers and triggers[-1] == "delete", triggers


def _scancel_once(
    cluster: Cluster, proc: subprocess.Popen[str], ready: Callable[[str], bool]
) -> tuple[str, float]:
    """The one job ``proc`` (an srun) made, cancelled once ``ready(job)``;
    how long from the scancel until srun and the job were gone."""
    try:
        deadline = time.monotonic() + 60
        while not (jobs := cluster.jobs()) and time.monotonic() < deadline:
            time.sleep(0.2)
        [job] = jobs
        while time.monotonic() < deadline and not ready(job):
            time.sleep(0.05)
        assert ready(job), cluster.log(100)
        started = time.monotonic()
        assert cluster.root_cmd("scancel", job).returncode == 0
        proc.wait(timeout=90)
        cluster.wait_idle()
        return job, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _output(cluster: Cluster, job: str) -> Path:
    """Where the create/start recipe's --log-path puts a step's output."""
    return cluster.db.parent / f"slurm-{job}.0.0.out"


def test_create_start_mode_does_not_hang_and_leaves_nothing(cluster: Cluster) -> None:
    cluster.oci(CREATE_MODE)
    got = cluster.as_user(
        ["srun", f"--container={cluster.bundle}", "sh", "-c", "echo inside; echo err >&2"], 90
    )
    assert got.returncode == 0, got.stderr
    cluster.wait_idle()
    assert cluster.leftovers() == []
    # 22.05 gives create's stdout to no one (it reads it to EOF, and logs
    # it): the container's output is in the file the recipe names, the user's.
    [out] = cluster.db.parent.glob("slurm-*.0.0.out")
    assert out.read_text() == "inside\nerr\n"
    assert out.stat().st_uid == cluster.user.uid
    with sqlite3.connect(cluster.db) as conn:
        last = conn.execute("SELECT container_id FROM events ORDER BY id DESC LIMIT 1").fetchone()
    # Slurm polls state between the steps: the lifecycle without the queries.
    queries = ("state", "wait")
    triggers = [t for t, o, _u in cluster.events(str(last[0])) if o == "ok" and t not in queries]
    assert triggers == ["create", "start", "exit", "delete"], triggers


@pytest.mark.parametrize(
    "program",
    [
        WORKER,
        # pid 1 without a handler ignores SIGTERM: Slurm's SIGKILL, KillWait
        # later, kills the bound waiter, which takes the container along.
        "echo ready; exec sleep 300",
    ],
    ids=["sigterm", "sigkill"],
)
def test_scancel_stops_the_container_in_create_start_mode(cluster: Cluster, program: str) -> None:
    cluster.oci(CREATE_MODE)

    def ready(job: str) -> bool:
        out = _output(cluster, job)
        return out.exists() and "ready" in out.read_text()

    proc = _srun_background(cluster, "sh", "-c", program)
    job, took = _scancel_once(cluster, proc, ready)
    assert _output(cluster, job).read_text() == "ready\n"
    # The container ended with the job (not at its sleep's end, 300 s on).
    assert took < 30, (took, cluster.log(200))
    # Under proctrack/cgroup SIGTERM reaches the task (Slurm's poller), not
    # `start --bind`, its child; the SIGKILL after it reaches every process
    # of the step's cgroup, the container's with them (none of its own), so
    # nothing of runlog's is below the step's cgroup when Slurm removes it.
    assert cluster.outlived(job) == []
    assert cluster.leftovers() == []
    triggers = [t for t, o, _u in cluster.events(f".{job}.0.0") if o == "ok"]
    assert "exit" in triggers and triggers[-1] == "delete", triggers


def test_scancel_during_the_start_stops_the_container(cluster: Cluster) -> None:
    """A scancel that lands while the container starts: here a poststart
    hook holds the start 3 s, after the init runs. Under
    proctrack/linuxproc `start --bind` gets the SIGTERM and passes it on
    once the start is done. Under proctrack/cgroup the SIGTERM ends the
    task, and the SIGKILL of what is left in the step's cgroup takes the
    monitor in the middle of the start, and the container with it (it has
    no cgroup of its own): the next command finds the monitor's sign that
    the init was released and records `started` before the exit
    (docs/rootless.md). Either way the step ends at once and the log has
    the whole life. (The window the old
    recipe, `start && exec wait --bind`, left open - after the start,
    before the bond - is too short to aim a scancel at; the bond's order
    is tested in tests/runtime/test_runtime_wait.py.)"""
    cluster.oci(CREATE_MODE)
    home = cluster.user.home
    mark = home / "in-poststart"
    hook = home / "slow-poststart"
    hook.write_text(f"#!/bin/sh\ntouch {mark}\nsleep 3\n")
    hook.chmod(0o755)
    os.chown(hook, cluster.user.uid, cluster.user.gid)

    def slow_start(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"poststart": [{"path": str(hook)}]}

    bundle = rootless_bundle(cluster.user, home / "bundle-slow-start", ["sh"], slow_start)
    mark.unlink(missing_ok=True)
    proc = _srun_background(cluster, "sh", "-c", WORKER, bundle=bundle)
    job, took = _scancel_once(cluster, proc, lambda _job: mark.exists())
    assert took < 30, (took, cluster.log(200))
    assert cluster.outlived(job) == []
    assert cluster.leftovers() == []
    triggers = [t for t, o, _u in cluster.events(f".{job}.0.0") if o == "ok"]
    # Under proctrack/cgroup the monitor is killed in the middle of the
    # start (with the task's end, every process of the step's cgroup, the
    # container's too): the next command records `started`, then the exit.
    found = "start" if cluster.proctrack != "cgroup" else "started"
    assert [t for t in triggers if t in ("start", "started")] == [found], triggers
    assert "exit" in triggers and triggers[-1] == "delete", triggers


def test_create_start_mode_keeps_the_exit_code_in_the_log_not_in_srun(cluster: Cluster) -> None:
    """Slurm 22.05's task ends with ``_exit(status)``, ``status`` being the
    raw wait(2) status of RunTimeStart: an exit code E is E<<8, of which
    _exit keeps the low 8 bits, 0. srun says 0 whatever the container's
    code (with runc's recipe too, whose start exits 0); the code is in
    runlog's exit event (docs/rootless.md)."""
    cluster.oci(CREATE_MODE)
    before = set(cluster.db.parent.glob("slurm-*.0.0.out"))
    got = cluster.as_user(["srun", f"--container={cluster.bundle}", "sh", "-c", "exit 3"], 90)
    assert got.returncode == 0, got.stderr
    cluster.wait_idle()
    assert cluster.leftovers() == []
    [out] = set(cluster.db.parent.glob("slurm-*.0.0.out")) - before
    job = out.name.split(".")[0].split("-")[1]
    assert cluster.exit_code(job) == 3
    # RunTimeStart (exec start --bind) did exit 3: 768 raw.
    assert "RunTimeStart rc:768" in (cluster.dir / "slurmd.log").read_text(), cluster.log(200)


def test_sbatch_in_create_start_mode(cluster: Cluster) -> None:
    cluster.oci(CREATE_MODE)
    script = cluster.user.home / "job-cs.sh"
    script.write_text("#!/bin/sh\necho batch\nexit 5\n")
    script.chmod(0o755)
    got = cluster.as_user(["sbatch", "--parsable", f"--container={cluster.bundle}", str(script)])
    assert got.returncode == 0, got.stderr
    job = got.stdout.strip().split(";")[0]
    cluster.wait_idle()
    assert cluster.leftovers() == []
    # As srun's: the code is in the log; Slurm keeps RunTimeStart's.
    assert cluster.exit_code(job) == 5
    assert cluster.job_field(job, "ExitCode") == "0:0"
    [out] = cluster.db.parent.glob(f"slurm-{job}.*.out")
    assert out.read_text() == "batch\n"
