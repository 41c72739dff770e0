"""Who reaps the container's init: its monitor, or a caller that supervises it.

conmon and containerd's shims make themselves child subreapers and run
``create``, expecting the init to be re-parented to them when the runtime
exits, as runc's is. A small harness plays that caller here: it is a
subprocess, so the test session itself never adopts orphans.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]
REPO = Path(__file__).resolve().parents[2]

# The caller: a child subreaper that runs create and start, then waits for
# the init itself. Prints what it saw as JSON.
CALLER = textwrap.dedent(
    """
    import ctypes, json, os, subprocess, sys
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    runlog, root, db, bundle, cid, pid_file = sys.argv[1:7]
    env = dict(os.environ, **json.loads(sys.argv[7]))
    base = [sys.executable, "-m", "engine", "--root", root, "--db", db]
    if env.pop("_WRAP", None):  # a wrapper script between the caller and runlog, no exec
        base = ["sh", "-c", '"$0" "$@"; exit $?', *base]
    def call(*args):
        return subprocess.run([*base, *args], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
    # Not a pipe: the container keeps create's stdio until it exits.
    made = subprocess.run([*base, "create", "-b", bundle, "--pid-file", pid_file, cid],
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if made.returncode != 0:
        print(json.dumps({"create": made.returncode}))
        sys.exit(0)
    pid = int(open(pid_file).read())
    with open(f"/proc/{pid}/stat") as fh:
        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
    call("start", cid)
    try:
        _pid, status = os.waitpid(pid, 0)
        reaped = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        reaped = None
    waited = call("wait", cid)
    print(json.dumps({"create": 0, "parent_is_me": ppid == os.getpid(), "reaped": reaped,
                      "wait": [waited.returncode, waited.stdout.strip()]}))
    """
)


def _as_caller(
    runlog: Any, bundle_dir: Path, cid: str, tmp_path: Path, env: dict[str, str]
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CALLER,
            "runlog",
            str(runlog.root),
            str(runlog.db),
            str(bundle_dir),
            cid,
            str(tmp_path / f"{cid}.pid"),
            json.dumps({"PYTHONPATH": str(REPO), **env}),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen: dict[str, Any] = json.loads(out.stdout)
    return seen


def _payloads(db: Path, cid: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT "trigger", payload FROM events WHERE container_id = ? ORDER BY seq', (cid,)
        ).fetchall()
    return {str(t): json.loads(p) for t, p in rows}


def _result(payload: dict[str, Any], action: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in payload["actions"] if a["action"] == action)["result"]
    return found


def test_a_subreaper_caller_gets_the_init_and_its_status(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    b = bundle(["sh", "-c", "sleep 0.2; exit 3"])
    seen = _as_caller(runlog, b, "t-caller", tmp_path, {})
    # The init was the caller's child, and the caller had its status, as with runc.
    assert (seen["create"], seen["parent_is_me"], seen["reaped"]) == (0, True, 3)
    # The monitor saw the end (on a pidfd), without a status to give.
    assert seen["wait"] == [255, "255"]
    doc = json.loads(runlog("state", "t-caller", check=True).stdout)
    assert (doc["status"], doc["pid"]) == ("stopped", 0)
    assert "exitCode" not in doc and "finishedAt" in doc
    runlog("delete", "t-caller", check=True)
    events = _payloads(runlog.db, "t-caller")
    assert _result(events["create"], "process.spawn_init")["init_parent"] == "caller"
    assert _result(events["exit"], "process.collect_status") == {"reaped_by_caller": True}


def test_the_nearest_subreaper_above_a_wrapper_script_gets_the_init(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    # runc's rule: not the process that ran create (the script), but the
    # child subreaper above it (conmon, here the harness).
    b = bundle(["sh", "-c", "sleep 0.2; exit 3"])
    seen = _as_caller(runlog, b, "t-wrapped", tmp_path, {"_WRAP": "1"})
    assert (seen["create"], seen["parent_is_me"], seen["reaped"]) == (0, True, 3)
    runlog("delete", "t-wrapped", check=True)
    events = _payloads(runlog.db, "t-wrapped")
    assert _result(events["create"], "process.spawn_init")["init_parent"] == "caller"


def test_init_parent_monitor_keeps_the_status_even_under_a_subreaper(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    b = bundle(["sh", "-c", "sleep 0.2; exit 3"])
    seen = _as_caller(runlog, b, "t-mon", tmp_path, {"RUNLOG_INIT_PARENT": "monitor"})
    assert (seen["parent_is_me"], seen["reaped"], seen["wait"]) == (False, None, [3, "3"])
    doc = json.loads(runlog("state", "t-mon", check=True).stdout)
    assert (doc["status"], doc["exitCode"]) == ("stopped", 3)
    runlog("delete", "t-mon", check=True)
    spawned = _result(_payloads(runlog.db, "t-mon")["create"], "process.spawn_init")
    assert "init_parent" not in spawned


def test_without_a_subreaper_the_monitor_reaps(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sh", "-c", "exit 4"])
    runlog("create", "t-plain-parent", "-b", str(b), check=True)
    info = json.loads((runlog.root / "t-plain-parent" / "runtime.json").read_text())
    assert info["init_parent"] == "monitor"
    runlog("start", "t-plain-parent", check=True)
    assert runlog("wait", "t-plain-parent").returncode == 4
    runlog("delete", "t-plain-parent", check=True)


def test_an_unknown_init_parent_is_refused_and_leaves_nothing(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = bundle(["true"])
    out = runlog("--init-parent", "nobody", "create", "t-bad-parent", "-b", str(b))
    assert out.returncode != 0
    assert "--init-parent" in out.stderr and "nobody" in out.stderr
    assert not (runlog.root / "t-bad-parent").exists()
    monkeypatch.setenv("RUNLOG_INIT_PARENT", "nobody")
    out = runlog("create", "t-bad-parent", "-b", str(b))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "init parent 'nobody' (--init-parent, RUNLOG_INIT_PARENT): one of auto, monitor, caller"
    )
    assert not (runlog.root / "t-bad-parent").exists()


def test_under_conmon_the_exit_code_reaches_its_exit_file(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    """podman's conmon, for real: it runs create as a child subreaper, reaps
    the init and writes its exit code where podman reads it."""
    conmon = shutil.which("conmon")
    assert conmon, "conmon is missing: make deps installs it"
    b = bundle(["sh", "-c", "echo hello-from-conmon; sleep 0.3; exit 7"])
    runtime = tmp_path / "runtime"
    runtime.write_text(f'#!/bin/sh\nexec {sys.executable} -m engine "$@"\n')
    runtime.chmod(0o755)
    exits, sockets = tmp_path / "exits", tmp_path / "sockets"
    exits.mkdir()
    sockets.mkdir()
    log, pid_file = tmp_path / "ctr.log", tmp_path / "ctr.pid"
    cmd = [conmon, "--api-version", "1", "-c", "t-conmon", "-u", "t-conmon", "-n", "t-conmon"]
    cmd += ["-r", str(runtime), "-b", str(b), "-p", str(pid_file), "--sync"]
    cmd += ["-l", f"k8s-file:{log}", "--exit-dir", str(exits), "--socket-dir-path", str(sockets)]
    cmd += ["--runtime-arg", "--root", "--runtime-arg", str(runlog.root)]
    cmd += ["--runtime-arg", "--db", "--runtime-arg", str(runlog.db)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (runlog.root / "t-conmon" / "state.json").exists():
            assert proc.poll() is None, "conmon gave up"
            assert time.monotonic() < deadline, "create under conmon did not finish"
            time.sleep(0.05)
        assert json.loads(runlog("state", "t-conmon", check=True).stdout)["status"] == "created"
        runlog("start", "t-conmon", check=True)
        # conmon --sync ends when it has reaped the init, with its exit code.
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (exits / "t-conmon").read_text() == "7"
    assert log.read_text().rstrip().endswith("stdout F hello-from-conmon")
    assert json.loads(runlog("state", "t-conmon", check=True).stdout)["status"] == "stopped"
    runlog("delete", "t-conmon", check=True)
    exit_event = _payloads(runlog.db, "t-conmon")["exit"]
    assert _result(exit_event, "process.collect_status") == {"reaped_by_caller": True}
