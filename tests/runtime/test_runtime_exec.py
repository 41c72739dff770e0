"""``runlog exec``: a process in a running container, every runc 1.1 flag,
its start and end in the container's history."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.cgroups.mounts import parse_proc_cgroup
from tests.runtime.conftest import ConsoleSocket, exec_on_console

pytestmark = [pytest.mark.root]

Bundle = Callable[..., Path]
REPO = Path(__file__).resolve().parents[2]


def _lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _exec_events(runlog: Any, cid: str) -> list[tuple[int, str, str, dict[str, Any]]]:
    with sqlite3.connect(runlog.db) as conn:
        rows = conn.execute(
            'SELECT seq, "trigger", outcome, payload FROM events '
            "WHERE container_id = ? AND \"trigger\" IN ('exec', 'exec_exit') ORDER BY seq",
            (cid,),
        ).fetchall()
    return [(int(s), str(t), str(o), json.loads(p)) for s, t, o, p in rows]


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _popen(runlog: Any, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    return subprocess.Popen(
        [*cmd, *args],
        cwd=runlog.cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **kw,
    )


def _running(runlog: Any, bundle: Bundle, cid: str, edit: Any = None) -> int:
    b = bundle(["sleep", "60"], edit)
    runlog("run", "-d", cid, "-b", str(b), check=True)
    pid: int = runlog.state(cid)["pid"]
    return pid


def test_exec_joins_every_namespace_and_cgroup_and_passes_the_status(
    runlog: Any, bundle: Bundle
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "cgroup"})

    init = _running(runlog, bundle, "x-ns", edit)
    script = (
        "for n in ipc mnt net pid uts cgroup; do echo $n=$(readlink /proc/self/ns/$n); done; "
        "echo cgroup.pids=$(grep :pids: /proc/self/cgroup); echo me=$$; exit 3"
    )
    proc = runlog("exec", "x-ns", "sh", "-c", script)
    assert proc.returncode == 3, proc.stderr
    got = _lines(proc.stdout)
    for name in ("ipc", "mnt", "net", "pid", "uts", "cgroup"):
        assert got[name] == os.readlink(f"/proc/{init}/ns/{name}"), name
    # In the container's cgroup namespace its own cgroup is its root.
    assert got["cgroup.pids"].endswith(":pids:/"), got
    assert got["me"] != "1"  # a process of the container's pid namespace, not its init
    # exec returns once its start and its end are in the log.
    events = _exec_events(runlog, "x-ns")
    assert [(t, o) for _, t, o, _ in events] == [("exec", "ok"), ("exec_exit", "ok")]
    (_, _, _, started), (_, _, _, ended) = events
    assert started["request"]["args"] == ["sh", "-c", script]
    assert started["request"]["user"] == "0:0"
    assert started["request"]["tty"] is False and started["request"]["detach"] is False
    assert ended["request"]["exec"] == started["request"]["id"] == 1
    assert ended["request"]["exit_code"] == 3
    assert runlog.state("x-ns")["status"] == "running"  # exec changes no state
    runlog("delete", "--force", "x-ns", check=True)


def test_exec_applies_the_process_as_the_init_does(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        process = spec["process"]
        process["env"] = ["PATH=/bin:/usr/bin", "FROM=config", "KEEP=config"]
        process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900}]
        process["user"]["umask"] = 0o027

    _running(runlog, bundle, "x-proc", edit)
    script = (
        "echo id=$(id -u):$(id -g):$(id -G); echo pwd=$(pwd); echo from=$FROM; echo keep=$KEEP; "
        "echo nofile=$(ulimit -n):$(ulimit -Hn); echo umask=$(umask); "
        "grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status | tr -d '\\t' | tr : ="
    )
    proc = runlog(
        "exec",
        "-e",
        "FROM=flag",
        "--cwd",
        "/tmp",
        "-u",
        "1000:1001",
        "-g",
        "2000",
        "--no-new-privs",
        "-c",
        "CAP_SYS_ADMIN",
        "x-proc",
        "sh",
        "-c",
        script,
    )
    assert proc.returncode == 0, proc.stderr
    got = _lines(proc.stdout)
    assert got["id"] == "1000:1001:1001 2000"
    assert got["pwd"] == "/tmp"
    assert got["from"] == "flag" and got["keep"] == "config"  # config env, then -e
    assert got["nofile"] == "900:1000"
    assert got["umask"] == "0027"
    assert got["NoNewPrivs"] == "1"
    assert int(got["CapBnd"], 16) & (1 << 21)  # CAP_SYS_ADMIN added by -c
    runlog("delete", "--force", "x-proc", check=True)


def test_exec_loads_the_containers_seccomp_filter(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        }

    _running(runlog, bundle, "x-sec", edit)
    proc = runlog("exec", "x-sec", "sh", "-c", "mkdir /made && echo made")
    assert proc.returncode != 0
    assert "made" not in proc.stdout
    assert "not permitted" in proc.stderr.lower(), proc.stderr
    runlog("delete", "--force", "x-sec", check=True)


def test_foreground_exec_forwards_signals_and_dies_of_them(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    _running(runlog, bundle, "x-sig")
    pid_file = tmp_path / "exec.pid"
    proc = _popen(runlog, "exec", "--pid-file", str(pid_file), "x-sig", "sleep", "30")
    try:
        pid = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the pid file"))
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    ended = next(e for e in _exec_events(runlog, "x-sig") if e[1] == "exec_exit")
    assert ended[3]["request"]["signal"] == signal.SIGTERM
    runlog("delete", "--force", "x-sig", check=True)


def test_detached_exec_writes_the_pid_file_and_the_monitor_records_its_end(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    _running(runlog, bundle, "x-det")
    pid_file = tmp_path / "exec.pid"
    # From a child subreaper, as conmon: the process comes to it and stays
    # a zombie until it reaps it, so the monitor can read its status.
    proc = runlog(
        "exec", "-d", "--pid-file", str(pid_file), "x-det", "sh", "-c", "sleep 0.3; exit 4"
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text())
    assert pid > 0
    ended = _wait_for(
        lambda: [e for e in _exec_events(runlog, "x-det") if e[1] == "exec_exit"],
        "the exec_exit event",
    )
    (_, _, _, started) = _exec_events(runlog, "x-det")[0]
    assert started["request"]["detach"] is True
    request = ended[0][3]["request"]
    assert request["exec"] == started["request"]["id"] and request["pid"] == pid
    # Re-parented to the host's init, which reaps at once: the status may be gone.
    assert request.get("exit_code") == 4 or request.get("reaped_by_caller") is True
    runlog("delete", "--force", "x-det", check=True)


# conmon's part in a detached exec: a child subreaper runs `exec -d`, so
# the process comes to it; it reaps it only once the monitor has recorded
# its end (read from the zombie), then prints what it reaped.
SUPERVISOR = """
import ctypes, json, os, sqlite3, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
db, pid_file, count, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
assert done.returncode == 0, done.stderr
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    with sqlite3.connect(db) as conn:
        q = 'SELECT count(*) FROM events WHERE "trigger" = ?'
        n = conn.execute(q, ("exec_exit",)).fetchone()
    if n[0] >= count:
        break
    time.sleep(0.05)
_pid, status = os.waitpid(int(open(pid_file).read()), 0)
print(json.dumps(os.waitstatus_to_exitcode(status)))
"""


@pytest.mark.parametrize(
    ("script", "end"), [("exit 5", {"exit_code": 5}), ("kill -9 $$", {"signal": 9})]
)
def test_a_detached_exec_under_a_supervisor_ends_with_its_code_or_signal(
    runlog: Any, bundle: Bundle, tmp_path: Path, script: str, end: dict[str, int]
) -> None:
    _running(runlog, bundle, "x-sup")
    pid_file = tmp_path / "exec.pid"
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    exec_argv = [
        "exec",
        "-d",
        "--pid-file",
        str(pid_file),
        "x-sup",
        "sh",
        "-c",
        f"sleep 0.3; {script}",
    ]
    out = subprocess.run(
        [sys.executable, "-c", SUPERVISOR, str(runlog.db), str(pid_file), "1", *cmd, *exec_argv],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reaped = json.loads(out.stdout)
    assert reaped == end.get("exit_code", -end.get("signal", 0))  # what the supervisor got
    ended = [e for e in _exec_events(runlog, "x-sup") if e[1] == "exec_exit"]
    assert len(ended) == 1
    request = ended[0][3]["request"]
    assert request["pid"] == int(pid_file.read_text())
    for key, value in end.items():
        assert request[key] == value, request  # the same status, in the log
    runlog("delete", "--force", "x-sup", check=True)


def test_exec_tty_through_the_console_socket(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    _running(runlog, bundle, "x-tty")
    path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        proc = runlog(
            "exec",
            "-t",
            "-d",
            "--console-socket",
            str(path),
            "x-tty",
            "sh",
            "-c",
            "echo tty=$(tty); sleep 0.5",
        )
        assert proc.returncode == 0, proc.stderr
        server.settimeout(5)
        conn, _ = server.accept()
        with conn:
            _name, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        assert fds, "no pty master on the console socket"
        output = b""
        try:
            while b"\n" not in output:
                output += os.read(fds[0], 4096)
        finally:
            os.close(fds[0])
    finally:
        server.close()
    assert _lines(output.decode().replace("\r", ""))["tty"].startswith("/dev/pts/")
    assert _exec_events(runlog, "x-tty")[0][3]["request"]["tty"] is True
    runlog("delete", "--force", "x-tty", check=True)


def test_exec_tty_through_the_console_socket_as_runc(
    runlog: Any, runc: Any, bundle: Bundle, consoles: Callable[[str], ConsoleSocket]
) -> None:
    """exec -t --console-socket side by side with runc's, on containers of
    the same bundle. Detached (-d), the console gets a terminal (tty, its
    size) and sees it close when the process ends, for both. Not detached,
    runc refuses the console socket (255); runlog runs the process on it
    and returns its exit code (docs/exec.md)."""
    runlog("run", "-d", "x-tty-ours", "-b", str(bundle(["sleep", "30"])), check=True)
    runc("run", "-d", "-b", str(bundle(["sleep", "30"])), "x-tty-runc")
    tools = {
        "runlog": (runlog, "x-tty-ours"),
        "runc": (functools.partial(runc, check=False), "x-tty-runc"),
    }
    detached = {
        name: exec_on_console(tool, consoles(f"{name}-d.sock"), cid, "-d")
        for name, (tool, cid) in tools.items()
    }
    for code, stderr, lines, closed in detached.values():
        assert code == 0, (detached, stderr)
        assert lines[0].startswith("/dev/pts/") and lines[2] == "probed", detached
        assert closed, detached
    assert detached["runlog"][2][1] == detached["runc"][2][1], detached  # stty size
    waited = {
        name: exec_on_console(tool, consoles(f"{name}.sock"), cid)
        for name, (tool, cid) in tools.items()
    }
    code, stderr, _lines, _closed = waited["runc"]
    assert code == 255, waited
    assert "cannot use console socket if runc will not detach or allocate tty" in stderr
    code, stderr, lines, closed = waited["runlog"]
    assert code == 5, (waited, stderr)
    assert lines[0].startswith("/dev/pts/") and lines[2] == "probed" and closed, waited
    assert lines[1] == detached["runc"][2][1], waited  # stty size
    ends = [e for e in _exec_events(runlog, "x-tty-ours") if e[1] == "exec_exit"]
    assert [e[3]["request"].get("exit_code") for e in ends] == [5, 5], ends
    assert runlog.state("x-tty-ours")["status"] == "running"
    runc("delete", "--force", "x-tty-runc")
    runlog("delete", "--force", "x-tty-ours", check=True)


def test_exec_with_a_process_file_and_preserved_fds(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    _running(runlog, bundle, "x-pfile")
    process = {
        "args": ["sh", "-c", "echo var=$VAR; echo fd3=$(cat <&3); echo cwd=$(pwd)"],
        "cwd": "/etc",
        "env": ["PATH=/bin", "VAR=from-file"],
        "user": {"uid": 0, "gid": 0},
    }
    (tmp_path / "process.json").write_text(json.dumps(process))
    (tmp_path / "three").write_text("passed\n")
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    line = " ".join(
        [*cmd, "exec", "-p", str(tmp_path / "process.json"), "--preserve-fds", "1", "x-pfile"]
    )
    out = subprocess.run(
        ["sh", "-c", f"exec 3< {tmp_path / 'three'}; exec {line}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = _lines(out.stdout)
    assert got == {"var": "from-file", "fd3": "passed", "cwd": "/etc"}
    runlog("delete", "--force", "x-pfile", check=True)


def test_exec_into_a_sub_cgroup(runlog: Any, bundle: Bundle) -> None:
    init = _running(runlog, bundle, "x-sub")
    pids_path = parse_proc_cgroup(Path(f"/proc/{init}/cgroup").read_text()).get("pids", "/-")
    sub = Path("/sys/fs/cgroup/pids" + pids_path) / "sub"
    if not sub.parent.is_dir():
        pytest.skip("no cgroup v1 pids hierarchy here")
    sub.mkdir()
    try:
        proc = runlog("exec", "--cgroup", "pids:sub", "x-sub", "cat", "/proc/self/cgroup")
        assert proc.returncode == 0, proc.stderr
        assert any(
            line.endswith(":pids:" + pids_path + "/sub") for line in proc.stdout.splitlines()
        ), proc.stdout
        bad = runlog("exec", "--cgroup", "pids:nosuch", "x-sub", "true")
        assert bad.returncode == 255 and "no sub-cgroup" in bad.stderr
    finally:
        runlog("kill", "x-sub", "KILL")
        runlog.wait_status("x-sub", "stopped")
        sub.rmdir()
    runlog("delete", "--force", "x-sub", check=True)


def test_exec_refused_when_paused_stopped_or_missing(runlog: Any, bundle: Bundle) -> None:
    _running(runlog, bundle, "x-ref")
    runlog("pause", "x-ref", check=True)
    paused = runlog("exec", "x-ref", "true")
    assert paused.returncode == 255
    assert "cannot exec in a paused container (use --ignore-paused to override)" in paused.stderr
    # The process joins the frozen cgroup: it execs once thawed.
    proc = _popen(runlog, "exec", "--ignore-paused", "-d", "x-ref", "true")
    time.sleep(0.3)
    runlog("resume", "x-ref", check=True)
    assert proc.wait(10) == 0
    runlog("kill", "x-ref", "KILL", check=True)
    runlog.wait_status("x-ref", "stopped")
    stopped = runlog("exec", "x-ref", "true")
    assert stopped.returncode == 255
    assert "cannot exec in a stopped container" in stopped.stderr
    missing = runlog("exec", "x-none", "true")
    assert missing.returncode == 255 and "container does not exist" in missing.stderr
    empty = runlog("exec", "x-ref")
    assert empty.returncode == 1 and "process args cannot be empty" in empty.stderr
    armor = runlog("exec", "--apparmor", "p", "x-ref", "true")
    assert armor.returncode == 255 and "--apparmor 'p'" in armor.stderr
    label = runlog("exec", "--process-label", "l", "x-ref", "true")
    assert label.returncode == 255 and "--process-label 'l'" in label.stderr
    outcomes = [(t, o) for _, t, o, _ in _exec_events(runlog, "x-ref")]
    assert outcomes[0] == ("exec", "rejected")
    assert ("exec", "ok") in outcomes  # --ignore-paused
    assert outcomes[-1] == ("exec", "rejected")  # stopped
    assert runlog.events("x-none")[-1] == ("exec", None, "rejected")
    runlog("delete", "x-ref", check=True)


def test_exec_joins_the_user_namespace_first(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        linux["namespaces"].append({"type": "user"})
        # Mapped onto the host's own ids: the bundle needs no chown.
        linux["uidMappings"] = linux["gidMappings"] = [
            {"containerID": 0, "hostID": 0, "size": 65536}
        ]

    init = _running(runlog, bundle, "x-user", edit)
    assert os.readlink(f"/proc/{init}/ns/user") != os.readlink("/proc/self/ns/user")
    proc = runlog("exec", "-u", "7:8", "x-user", "sh", "-c", "readlink /proc/self/ns/user; id -u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [os.readlink(f"/proc/{init}/ns/user"), "7"]
    runlog("delete", "--force", "x-user", check=True)
