"""Real containers through runc's commands, as root (CI runs as root)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.oci.names import HOOK_POINTS

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]


def wait_file(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_lifecycle_and_exit_code(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    b = bundle(["sh", "-c", "read x < /dev/null; sleep 0.3; exit 3"])
    pid_file = tmp_path / "init.pid"
    runlog("create", "t-life", "-b", str(b), "--pid-file", str(pid_file), check=True)
    doc = runlog.state("t-life")
    assert doc["status"] == "created"
    assert doc["pid"] == int(pid_file.read_text()) > 0
    assert doc["bundle"] == str(b) and doc["rootfs"] == str(b / "rootfs")
    assert Path(f"/proc/{doc['pid']}").exists()
    runlog("start", "t-life", check=True)
    assert runlog.state("t-life")["status"] in ("running", "stopped")
    doc = runlog.wait_status("t-life", "stopped")
    assert (doc["status"], doc["exitCode"], doc["pid"]) == ("stopped", 3, 0)
    assert "finishedAt" in doc and "startedAt" in doc
    listed = runlog("list", "--format", "json", check=True).stdout
    assert [c["id"] for c in json.loads(listed)] == ["t-life"]
    runlog("delete", "t-life", check=True)
    assert not (runlog.root / "t-life").exists()
    assert runlog.events("t-life") == [
        ("create", "created", "ok"),
        ("start", "running", "ok"),
        ("exit", "stopped", "ok"),
        ("delete", "deleted", "ok"),
    ]
    # Each `state` above was a request to the monitor: a query changes
    # nothing and is not an event unless RUNLOG_RECORD_QUERIES asks for it.
    assert runlog.events("t-life", queries=True) == runlog.events("t-life")


def test_queries_are_recorded_when_asked(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")
    b = bundle(["sh", "-c", "read x < /dev/null; sleep 0.3; exit 3"])
    runlog("create", "t-asked", "-b", str(b), check=True)
    assert runlog.state("t-asked")["status"] == "created"
    runlog("start", "t-asked", check=True)
    runlog.wait_status("t-asked", "stopped")
    runlog("delete", "t-asked", check=True)
    everything = runlog.events("t-asked", queries=True)
    polls = [e for e in everything if e[0] == "state"]
    assert len(polls) >= 2
    assert set(polls) <= {("state", s, "ok") for s in ("created", "running", "stopped")}
    assert ("state", "stopped", "ok") in polls  # wait_status saw it stop
    assert everything[1] == ("state", "created", "ok")


def test_the_short_way_answers_as_the_full_command_line(runlog: Any, bundle: Bundle) -> None:
    runlog("create", "t-ways", "-b", str(bundle(["sleep", "30"])), check=True)

    def both(*argv: str) -> tuple[int, str, str]:
        short, full = runlog(*argv), runlog(*argv, full=True)
        assert (short.returncode, short.stdout, short.stderr) == (
            full.returncode,
            full.stdout,
            full.stderr,
        ), argv
        return short.returncode, short.stdout, short.stderr

    assert json.loads(both("state", "t-ways")[1])["status"] == "created"
    for refused in (["pause", "t-ways"], ["resume", "t-ways"], ["delete", "t-ways"]):
        assert both(*refused)[0] == 1
    assert runlog("start", "t-ways").returncode == 0
    assert "cannot start an already running container" in both("start", "t-ways")[2]
    assert runlog("pause", "t-ways", full=True).returncode == 0
    assert json.loads(both("state", "t-ways")[1])["status"] == "paused"
    assert runlog("resume", "t-ways").returncode == 0
    assert both("resume", "t-ways")[0] == 1
    assert runlog("delete", "--force", "t-ways").returncode == 0
    for argv in (["state", "t-ways"], ["start", "t-ways"], ["delete", "t-ways"]):
        assert both(*argv)[2] == "container t-ways: container does not exist\n"
    assert both("delete", "-f", "t-ways") == (0, "", "")
    # Each call, either way, is in the log once: two refused pauses, ...
    triggers = [t for t, _dest, outcome in runlog.events("t-ways") if outcome == "rejected"]
    assert triggers.count("pause") == 2 and triggers.count("delete") == 4


def test_the_entry_stub_runs_a_container_with_its_code_file(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    # The stub make writes (engine.entry): create and run load the monitor's
    # code from the code file beside it (engine.codecache).
    from engine import entry

    stub = tmp_path / "bin" / "runlog"
    stub.parent.mkdir()
    entry.install(str(stub))
    cmd = [str(stub), "--root", str(runlog.root), "--db", str(runlog.db)]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        # Output to a file: a created container keeps create's stdout.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                [*cmd, *args], stdout=out, stderr=subprocess.DEVNULL, check=False, timeout=30
            )
            out.seek(0)
            return subprocess.CompletedProcess(args, proc.returncode, out.read())

    b = bundle(["sh", "-c", "exit 7"])
    assert call("create", "t-stub", "-b", str(b)).returncode == 0
    assert json.loads(call("state", "t-stub").stdout)["status"] == "created"
    assert call("start", "t-stub").returncode == 0
    assert runlog.wait_status("t-stub", "stopped")["exitCode"] == 7
    assert call("delete", "t-stub").returncode == 0
    assert call("run", "t-stub2", "-b", str(b)).returncode == 7
    assert [t for t, _dest, _outcome in runlog.events("t-stub")] == [
        "create",
        "start",
        "exit",
        "delete",
    ]


def test_run_foreground_exit_code_and_signal(runlog: Any, bundle: Bundle) -> None:
    out = runlog("run", "t-run", "-b", str(bundle(["sh", "-c", "echo out-$((6*7)); exit 7"])))
    assert out.returncode == 7
    assert "out-42" in out.stdout
    # Killed from outside: run exits with 128 + the signal.
    b = bundle(["sleep", "30"])
    killer = threading.Timer(1.0, lambda: runlog("kill", "t-run2", "KILL"))
    killer.start()
    killed = runlog("run", "t-run2", "-b", str(b))
    killer.join()
    assert killed.returncode == 128 + 9
    assert runlog.events("t-run2")[-2:] == [
        ("exit", "stopped", "ok"),
        ("delete", "deleted", "ok"),
    ]


def test_run_forwards_signals_to_the_init(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    b = bundle(["sh", "-c", "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.05; done"])
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    with open(tmp_path / "run.out", "w") as out:
        proc = subprocess.Popen([*cmd, "run", "t-fwd", "-b", str(b)], stdout=out, stderr=out)
        wait_file(b / "rootfs" / "ready")  # the trap is set
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 42


def test_pause_freezes_and_resume_thaws(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sh", "-c", "while true; do :; done"])
    runlog("run", "-d", "t-pause", "-b", str(b), check=True)
    pid = runlog.state("t-pause")["pid"]
    runlog("pause", "t-pause", check=True)
    assert runlog.state("t-pause")["status"] == "paused"
    proc_state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    assert proc_state == "D"  # frozen by the v1 freezer (T on cgroup2)
    ticks = Path(f"/proc/{pid}/stat").read_text().split()[13]
    time.sleep(0.2)
    assert Path(f"/proc/{pid}/stat").read_text().split()[13] == ticks  # no CPU while frozen
    runlog("resume", "t-pause", check=True)
    assert runlog.state("t-pause")["status"] == "running"
    time.sleep(0.2)
    assert Path(f"/proc/{pid}/stat").read_text().split()[13] != ticks
    runlog("kill", "t-pause", "KILL", check=True)
    doc = runlog.wait_status("t-pause", "stopped")
    assert doc["exitCode"] == 137
    runlog("delete", "t-pause", check=True)


def test_kill_signal_spellings_and_all(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sh", "-c", "trap 'exit 42' USR1; touch /ready; while true; do sleep 0.05; done"])
    runlog("run", "-d", "t-kill", "-b", str(b), check=True)
    wait_file(b / "rootfs" / "ready")  # the trap is set
    runlog("kill", "t-kill", "sigusr1", check=True)
    assert runlog.wait_status("t-kill", "stopped")["exitCode"] == 42
    bad = runlog("kill", "t-kill", "SIGNOPE")
    assert (bad.returncode, bad.stderr.strip()) == (1, "unknown signal: SIGNOPE")
    runlog("delete", "t-kill", check=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "t-none"], "container t-none: container does not exist"),
        (["state", "t-none"], "container t-none: container does not exist"),
        (["kill", "t-none"], "container t-none: container does not exist"),
        (["pause", "t-none"], "container t-none: container does not exist"),
        (["resume", "t-none"], "container t-none: container does not exist"),
        (["delete", "t-none"], "container t-none: container does not exist"),
    ],
)
def test_unknown_id(runlog: Any, argv: list[str], message: str) -> None:
    out = runlog(*argv)
    assert (out.returncode, out.stderr.strip()) == (1, message)
    assert runlog.events("t-none") == [(argv[0], None, "rejected")]


def test_delete_force_of_unknown_id_succeeds(runlog: Any) -> None:
    assert runlog("delete", "--force", "t-none").returncode == 0


def _processes_naming(word: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if word.encode() in argv:
            found.append(pid)
    return found


def test_a_create_that_gives_up_leaves_no_monitor(runlog: Any, bundle: Bundle) -> None:
    # The monitor is forked as soon as the command line is read (engine.runtime.prefork);
    # a create that fails after that waits for it to exit.
    b = str(bundle(["true"]))
    runlog("create", "t-up", "-b", b, check=True)
    before = _processes_naming("t-up")  # its monitor, and its init (before exec)
    assert len(before) == 2
    for argv, message in (
        (["create", "t-gives-up", "-b", b, "--preserve-fds", "x"], "--preserve-fds: not a number"),
        (["create", "t-up", "-b", b], "container with id exists: t-up"),
    ):
        out = runlog(*argv)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert _processes_naming(argv[1]) == ([] if argv[1] == "t-gives-up" else before)
    assert runlog("delete", "--force", "t-up").returncode == 0


def _cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split()[1]
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_container_runs_where_create_was_allowed_to(runlog: Any, bundle: Bundle) -> None:
    # create's monitor starts on another CPU than create (engine.runtime.prefork):
    # it takes back create's CPUs before it makes anything.
    b = str(bundle(["sleep", "30"]))
    allowed = sorted(os.sched_getaffinity(0))
    for cpus in (set(allowed), {allowed[-1]}):
        runlog(
            "create", "t-cpus", "-b", b, check=True,
            preexec_fn=lambda cpus=cpus: os.sched_setaffinity(0, cpus),
        )  # fmt: skip
        init = runlog.state("t-cpus")["pid"]
        monitor = json.loads((runlog.root / "t-cpus" / "runtime.json").read_text())["monitor_pid"]
        expected = _cpus_allowed(os.getpid()) if len(cpus) > 1 else str(allowed[-1])
        assert _cpus_allowed(init) == _cpus_allowed(monitor) == expected
        runlog("delete", "--force", "t-cpus", check=True)


def test_the_monitor_checkpoints_the_log_once_create_has_reported(
    runlog: Any, bundle: Bundle
) -> None:
    # What the monitor committed is then in the database file itself: the
    # next process to open the log alone has little of the WAL to read.
    runlog("create", "t-ckpt", "-b", str(bundle(["true"])), check=True)
    deadline = time.monotonic() + 5
    while True:
        with sqlite3.connect(f"file:{runlog.db}?immutable=1", uri=True) as conn:
            try:
                rows = conn.execute(
                    "SELECT \"trigger\", outcome FROM events WHERE container_id = 't-ckpt'"
                ).fetchall()
            except sqlite3.OperationalError:  # the file has not even the tables yet
                rows = []
        if rows == [("create", "ok")] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert rows == [("create", "ok")]
    runlog("delete", "--force", "t-ckpt", check=True)


def test_state_errors_in_runc_words(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sleep", "30"])
    runlog("create", "t-err", "-b", str(b), check=True)
    dup = runlog("create", "t-err", "-b", str(b))
    assert (dup.returncode, dup.stderr.strip()) == (1, "container with id exists: t-err")
    paused = runlog("pause", "t-err")
    assert paused.returncode == 1 and "container not running" in paused.stderr
    runlog("start", "t-err", check=True)
    again = runlog("start", "t-err")
    assert "cannot start an already running container" in again.stderr
    resumed = runlog("resume", "t-err")
    assert "container not paused" in resumed.stderr
    busy = runlog("delete", "t-err")
    assert "cannot delete container t-err that is not stopped: running" in busy.stderr
    runlog("kill", "t-err", "9", check=True)
    runlog.wait_status("t-err", "stopped")
    stopped = runlog("kill", "t-err")
    assert "container not running" in stopped.stderr
    started = runlog("start", "t-err")
    assert "cannot start a container that has stopped" in started.stderr
    runlog("delete", "t-err", check=True)
    outcomes = [o for _, _, o in runlog.events("t-err")]
    assert outcomes.count("rejected") == 7


def test_delete_force_kills_a_running_container(runlog: Any, bundle: Bundle) -> None:
    runlog("run", "-d", "t-force", "-b", str(bundle(["sleep", "60"])), check=True)
    pid = runlog.state("t-force")["pid"]
    runlog("delete", "--force", "t-force", check=True)
    assert not Path(f"/proc/{pid}").exists()
    assert [t for t, _, _ in runlog.events("t-force")][-3:] == ["kill", "exit", "delete"]


def test_missing_executable_fails_create_and_leaves_nothing(runlog: Any, bundle: Bundle) -> None:
    out = runlog("create", "t-noexec", "-b", str(bundle(["no-such-program"])))
    assert out.returncode == 1
    assert 'exec: "no-such-program": executable file not found in $PATH' in out.stderr
    assert not (runlog.root / "t-noexec").exists()
    assert runlog.events("t-noexec") == [("create", None, "failed")]


def test_an_exec_that_fails_after_start_is_in_the_exit_event(runlog: Any, bundle: Bundle) -> None:
    # args[0] is found at create, but the kernel refuses to exec it. start
    # returns once the init is about to exec, as runc's does; the failure
    # ends the init, and the exit event says why.
    b = bundle(["/not-a-program"])
    program = b / "rootfs" / "not-a-program"
    program.write_text("plain text, no #! line\n")
    program.chmod(0o755)
    runlog("create", "t-badexec", "-b", str(b), check=True)
    runlog("start", "t-badexec", check=True)
    assert runlog.wait_status("t-badexec", "stopped")["exitCode"] == 1
    (status,) = runlog.payload("t-badexec", "exit")["actions"]
    assert status["result"] == {
        "exit_code": 1,
        "exec_error": "exec /not-a-program: exec format error",
    }
    history = runlog("history", "t-badexec", check=True).stdout
    assert "its exec failed: exec /not-a-program: exec format error" in history
    runlog("delete", "t-badexec", check=True)
    # run, in the foreground, says it and exits with the init's status.
    out = runlog("run", "t-badexec2", "-b", str(b))
    assert (out.returncode, out.stderr) == (
        1,
        "container t-badexec2: exec /not-a-program: exec format error\n",
    )
    assert not (runlog.root / "t-badexec2").exists()


def test_malformed_config_and_missing_bundle(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    b = bundle(["true"])
    (b / "config.json").write_text('{"ociVersion": "1.2.0",\n "process": {,}}')
    out = runlog("create", "t-bad", "-b", str(b))
    assert out.returncode == 1
    assert f"{b}/config.json:2:" in out.stderr
    missing = runlog("create", "t-bad", "-b", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr
    assert not (runlog.root / "t-bad").exists()
    assert [o for _, _, o in runlog.events("t-bad")] == ["rejected", "rejected"]


def test_failing_create_runtime_hook(runlog: Any, bundle: Bundle, shell_hook: Any) -> None:
    script = "echo 'no network for you' >&2\nexit 5\n"
    edit = shell_hook("hook.sh", script, "createRuntime")
    out = runlog("create", "t-hook", "-b", str(bundle(["true"], edit)))
    assert out.returncode == 1
    assert "exited with status 5: no network for you" in out.stderr
    assert not (runlog.root / "t-hook").exists()
    assert runlog.events("t-hook") == [("create", None, "failed")]


def test_a_create_killed_midway_leaves_a_served_container(
    runlog: Any, bundle: Bundle, tmp_path: Path, shell_hook: Any
) -> None:
    # The caller of create dies while a createRuntime hook runs: the monitor
    # finishes, finds no one to report to, and serves the container all the
    # same (state "created"), for the caller's successor to start or delete.
    started = tmp_path / "hook-started"
    script = f"touch {started}\nsleep 0.5\n"
    edit = shell_hook("slow-hook.sh", script, "createRuntime")
    b = bundle(["sleep", "30"], edit)
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    caller = subprocess.Popen(
        [*cmd, "create", "t-orphan", "-b", str(b)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    wait_file(started)
    caller.kill()
    assert caller.wait(timeout=10) == -signal.SIGKILL
    doc = runlog.wait_status("t-orphan", "created")
    assert doc["status"] == "created" and Path(f"/proc/{doc['pid']}").exists()
    assert runlog("start", "t-orphan").returncode == 0
    assert runlog.state("t-orphan")["status"] == "running"
    assert runlog("delete", "--force", "t-orphan").returncode == 0


def test_hooks_run_in_order_with_the_state_on_stdin(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    log = tmp_path / "hooklog"
    log.mkdir()
    hook = log / "hook.sh"
    # Host-side points write to the host path; container-side ones (run in
    # the container's mount namespace) see the same directory at /hooklog.
    hook.write_text(
        "#!/bin/sh\n"
        f"out={log}; [ -d /hooklog ] && out=/hooklog\n"
        'cat > "$out/$1-$2.json"\n'
        'echo "$1:$2" >> "$out/order"\n'
    )
    hook.chmod(0o755)
    points = list(HOOK_POINTS)  # in lifecycle order
    # Two or three hooks at every point: running any point's in another
    # order (reversed, say) shows in the log.
    counts = {p: 3 if p in ("createRuntime", "poststop") else 2 for p in points}

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {
            p: [
                {
                    # runtime-spec: startContainer's path resolves in the container.
                    "path": "/hooklog/hook.sh" if p == "startContainer" else str(hook),
                    "args": ["hook.sh", p, str(n)],
                }
                for n in range(1, counts[p] + 1)
            ]
            for p in points
        }
        spec["mounts"].append(
            {
                "destination": "/hooklog",
                "type": "bind",
                "source": str(log),
                "options": ["rbind", "rw"],
            }
        )

    runlog("run", "t-hooks", "-b", str(bundle(["true"], edit)), check=True)
    expected = [f"{p}:{n}" for p in points for n in range(1, counts[p] + 1)]
    assert (log / "order").read_text().split() == expected  # once each, in order
    statuses = {
        run: json.loads((log / f"{run.replace(':', '-')}.json").read_text())["status"]
        for run in expected
    }
    # The create operation's hooks see "created" (runtime.md: after step 2).
    want = {
        "prestart": "created",
        "createRuntime": "created",
        "createContainer": "created",
        "startContainer": "created",
        "poststart": "running",
        "poststop": "stopped",
    }
    assert statuses == {run: want[run.split(":")[0]] for run in expected}
    assert json.loads((log / "prestart-1.json").read_text())["id"] == "t-hooks"
    # The events record every run of every point.
    for trigger in ("create", "start", "delete"):
        for action in runlog.payload("t-hooks", trigger)["actions"]:
            result = action["result"]
            if "point" in result:
                runs = result["hooks"]
                assert len(runs) == counts[result["point"]]
                assert all(run["exit_code"] == 0 for run in runs)


def test_config_features_inside_the_container(runlog: Any, bundle: Bundle) -> None:
    script = (
        "echo pid=$$; echo host=$(hostname); echo path=$PATH; echo cwd=$(pwd); "
        "echo id=$(id -u):$(id -g):$(id -G); echo umask=$(umask); "
        "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; "
        "echo nofile=$(ulimit -n); "
        "touch /ro-test 2>/dev/null && echo root=rw || echo root=ro; "
        "echo masked=$(wc -c < /etc/group 2>/dev/null || echo unreadable); "
        "touch /data/x && echo tmpfs=ok; "
        "echo ipfwd=$(cat /proc/sys/net/ipv4/ip_forward)"
    )

    def edit(spec: dict[str, Any]) -> None:
        spec["hostname"] = "box-7"
        proc = spec["process"]
        proc["env"] = ["PATH=/nope", "A=1", "PATH=/bin:/usr/bin"]
        proc["cwd"] = "/tmp"
        proc["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [65534], "umask": 23}
        proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
        proc["noNewPrivileges"] = True
        spec["root"]["readonly"] = True
        spec["mounts"].append(
            {
                "destination": "/data",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "mode=1777"],
            }
        )
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        spec["linux"]["maskedPaths"].append("/etc/group")

    out = runlog("run", "t-feat", "-b", str(bundle(["sh", "-c", script], edit)), check=True)
    got = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    assert got["pid"] == "1"
    assert got["host"] == "box-7"
    assert got["path"] == "/bin:/usr/bin"
    assert got["cwd"] == "/tmp"
    assert got["id"] == "65534:65534:65534"
    assert got["umask"] == "0027"
    assert got["nofile"] == "256"
    assert got["root"] == "ro"
    assert got["masked"] == "0"  # /dev/null bound over it
    assert got["tmpfs"] == "ok"
    assert got["ipfwd"] == "1"
    assert "NoNewPrivs:\t1" in out.stdout
    # The bounding set is runc's default; a non-root user execs with no
    # effective capabilities unless they are ambient (capabilities(7)).
    assert "CapBnd:\t0000000020000420" in out.stdout
    assert "CapEff:\t0000000000000000" in out.stdout


def test_rlimit_the_host_refuses_is_a_clear_error(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 10**7, "soft": 1024}]

    out = runlog("create", "t-rlim", "-b", str(bundle(["true"], edit)))
    assert out.returncode == 1
    assert "RLIMIT_NOFILE" in out.stderr and "hard" in out.stderr
    assert not (runlog.root / "t-rlim").exists()


def test_ps_and_events_stats(runlog: Any, bundle: Bundle) -> None:
    runlog("run", "-d", "t-ps", "-b", str(bundle(["sleep", "30"])), check=True)
    pid = runlog.state("t-ps")["pid"]
    assert json.loads(runlog("ps", "--format", "json", "t-ps", check=True).stdout) == [pid]
    sample = json.loads(runlog("events", "--stats", "t-ps", check=True).stdout)
    assert sample["type"] == "stats" and sample["id"] == "t-ps"
    assert sample["data"]["pids"]["current"] == 1
    runlog("delete", "-f", "t-ps", check=True)


def test_spec_and_features(runlog: Any, tmp_path: Path) -> None:
    runlog("spec", "--bundle", str(tmp_path), check=True)
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"]
    again = runlog("spec", "--bundle", str(tmp_path))
    assert "File config.json exists. Remove it first." in again.stderr
    features = json.loads(runlog("features", check=True).stdout)
    assert features["ociVersionMin"] == "1.0.0"


def test_monitor_gone_state_reconciles_and_delete_cleans(runlog: Any, bundle: Bundle) -> None:
    import os
    import signal

    runlog("run", "-d", "t-lost", "-b", str(bundle(["sleep", "30"])), check=True)
    info = json.loads((runlog.root / "t-lost" / "runtime.json").read_text())
    os.kill(info["monitor_pid"], signal.SIGKILL)
    time.sleep(0.2)
    # The init lives on (re-parented); state answers from /proc.
    assert runlog.state("t-lost")["status"] == "running"
    refused = runlog("pause", "t-lost")
    assert "monitor is gone" in refused.stderr
    runlog("delete", "--force", "t-lost", check=True)
    assert (
        not Path(f"/proc/{info['init_pid']}/stat").exists()
        or "Z" in Path(f"/proc/{info['init_pid']}/stat").read_text().split()[2]
    )
    assert runlog.events("t-lost")[-1] == ("delete", "deleted", "ok")


def test_root_container_keeps_the_configured_capabilities(runlog: Any, bundle: Bundle) -> None:
    script = "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"
    out = runlog("run", "t-caps", "-b", str(bundle(["sh", "-c", script])), check=True).stdout
    assert out.split() == [
        "CapPrm:",
        "0000000020000420",
        "CapEff:",
        "0000000020000420",
        "CapBnd:",
        "0000000020000420",
    ]


def test_preserve_fds_passes_extra_descriptors(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    import subprocess
    import sys

    secret = tmp_path / "secret"
    secret.write_text("handed over as fd 3\n")
    b = bundle(["sh", "-c", "cat <&3 || exit 9; ls /proc/self/fd"])
    out = tmp_path / "out"
    cmd = " ".join(
        [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    )
    script = f"exec 3<{secret}; exec {cmd} run --preserve-fds 1 t-fds -b {b} > {out} 2>&1"
    code = subprocess.run(["bash", "-c", script], check=False, timeout=60).returncode
    lines = out.read_text().split()
    assert code == 0, lines
    assert " ".join(lines[:5]) == "handed over as fd 3"
    # stdio, fd 3, and the one ls opens: nothing else of runlog's.
    assert sorted(int(n) for n in lines[5:]) == [0, 1, 2, 3, 4]
    without = subprocess.run(
        ["bash", "-c", script.replace("--preserve-fds 1 t-fds", "t-fds2")],
        check=False,
        timeout=60,
    )
    assert without.returncode == 9  # without --preserve-fds, fd 3 is closed


def _zombie_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(pid) and fields["State"].split()[0] == "Z":
            found.append(int(entry.name))
    return found


def test_the_monitor_reaps_what_a_hook_leaves_behind(
    runlog: Any, bundle: Bundle, shell_hook: Any
) -> None:
    # A hook that leaves a daemon: the daemon's parent exits, so it is
    # re-parented to the nearest child subreaper, the monitor.
    edit = shell_hook("daemon.sh", "(sleep 0.3 &)\nexit 0\n", "poststart")
    runlog("run", "-d", "t-orphan", "-b", str(bundle(["sleep", "30"], edit)), check=True)
    info = json.loads((runlog.root / "t-orphan" / "runtime.json").read_text())
    time.sleep(1.0)  # the daemon has ended by now
    assert _zombie_children(info["monitor_pid"]) == []
    runlog("delete", "--force", "t-orphan", check=True)
