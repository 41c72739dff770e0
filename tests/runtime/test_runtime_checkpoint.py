"""``checkpoint`` and ``restore``: the machine's, through CRIU.

With a CRIU that passes ``criu check`` (Debian's, or the one ``make criu``
builds where Debian's fails: RUNLOG_CRIU), a busybox loop is checkpointed
and restored and counts on; where none works, those tests skip saying
why, and the refusal (with a criu that fails its check) is tested
everywhere. Every refusal is recorded."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.linux import criu

pytestmark = [pytest.mark.root]

Bundle = Callable[..., Path]
REPO = Path(__file__).resolve().parents[2]

# Counts in /count, five times a second; with LIMIT, exits 7 at LIMIT.
_LOOP = "i=0; while [ $i -lt {limit} ]; do i=$((i+1)); echo $i > /count; sleep 0.2; done; exit 7"


def _working_criu() -> tuple[str | None, str]:
    """A criu that passes its check here, or None and why none does."""
    candidates = [os.environ.get("RUNLOG_CRIU"), str(REPO / ".criu/sbin/criu"), "criu"]
    why = []
    for path in filter(None, candidates):
        found = shutil.which(path)
        if found is None:
            continue
        problem = criu.problem(found)
        if problem is None:
            return found, ""
        why.append(problem)
    return None, "; ".join(why) or "no criu (make criu)"


@pytest.fixture
def working_criu(monkeypatch: pytest.MonkeyPatch) -> str:
    path, why = _working_criu()
    if path is None:
        pytest.skip(f"no CRIU works on this host: {why}")
    monkeypatch.setenv("RUNLOG_CRIU", path)
    return path


def _plain(runlog: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``runlog ARGS`` (run -d, restore) whose container gets plain
    files for stdout and stderr. The fixture's are Python temporary files,
    opened O_NOFOLLOW, which CRIU 4.2 cannot open again on restore (ELOOP
    on /proc/self/fd/N)."""
    out = tmp_path / "container.out"
    with open(out, "a") as fh:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "--root",
                str(runlog.root),
                "--db",
                str(runlog.db),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=tmp_path,
            timeout=30,
            check=False,
            text=True,
        )


def _counting(runlog: Any, bundle: Bundle, tmp_path: Path, cid: str, limit: int = 100000) -> Path:
    """``run -d`` of a counting loop (plain stdio files): its bundle."""
    b = bundle(["sh", "-c", _LOOP.format(limit=limit)])
    assert _plain(runlog, tmp_path, "run", "-d", cid, "-b", str(b)).returncode == 0
    return b


def _count(bundle: Path) -> int:
    text = (bundle / "rootfs" / "count").read_text().strip()
    return int(text or 0)


def _counted(bundle: Path, at_least: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = _count(bundle)
        except (FileNotFoundError, ValueError):
            n = 0
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def _outcome(db: Path, cid: str, trigger: str) -> tuple[str, dict[str, Any]]:
    """The outcome and payload of the container's last ``trigger`` event."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            'SELECT outcome, payload FROM events WHERE container_id = ? AND "trigger" = ? '
            "ORDER BY seq DESC LIMIT 1",
            (cid, trigger),
        ).fetchone()
    assert row is not None, f"no {trigger} event for {cid}"
    return str(row[0]), json.loads(row[1])


def _action(payload: dict[str, Any], name: str) -> dict[str, Any]:
    (result,) = [a["result"] for a in payload["actions"] if a["action"] == name]
    assert isinstance(result, dict)
    return result


def test_checkpoint_then_restore_counts_on(
    runlog: Any, bundle: Bundle, tmp_path: Path, working_criu: str
) -> None:
    b = _counting(runlog, bundle, tmp_path, "k-1", 100000)
    images = tmp_path / "img"
    assert _counted(b, 3) >= 3
    runlog("checkpoint", "--image-path", str(images), "k-1", check=True)
    # runc's semantics: without --leave-running the container stops.
    assert runlog.state("k-1")["status"] == "stopped"
    at_dump = _count(b)
    time.sleep(0.5)
    assert _count(b) == at_dump  # nothing counts any more
    outcome, payload = _outcome(runlog.db, "k-1", "checkpoint")
    assert outcome == "ok"
    dumped = _action(payload, "criu.dump")
    assert dumped["image_path"] == str(images) and dumped["criu_exit"] == 0
    assert (images / "inventory.img").is_file() and (images / "dump.log").is_file()
    exit_payload = runlog.payload("k-1", "exit")
    assert exit_payload["request"].get("cause") is None  # runlog's doing, not a stranger's
    runlog("delete", "k-1", check=True)

    back = _plain(
        runlog, tmp_path, "restore", "-d", "-b", str(b), "--image-path", str(images), "k-1"
    )
    assert back.returncode == 0, (tmp_path / "container.out").read_text()
    state = runlog.state("k-1")
    assert state["status"] == "running"
    # It counts on from where it was, in the container's own cgroup.
    assert _counted(b, at_dump + 3) >= at_dump + 3
    assert _count(b) < at_dump + 100  # on, not over
    outcome, payload = _outcome(runlog.db, "k-1", "restore")
    assert outcome == "ok"
    restored = _action(payload, "criu.restore")
    assert restored["pid"] == state["pid"] and restored["image_path"] == str(images)
    assert payload["request"]["bundle"] == str(b)
    cgroup = Path(f"/proc/{state['pid']}/cgroup").read_text()
    assert "/c1\n" in cgroup, cgroup
    runlog("kill", "k-1", "KILL", check=True)
    assert runlog.wait_status("k-1", "stopped")["status"] == "stopped"
    assert _outcome(runlog.db, "k-1", "exit")[1]["actions"][0]["result"] == {"signal": 9}
    runlog("delete", "k-1", check=True)


def test_checkpoint_leave_running_keeps_it_counting(
    runlog: Any, bundle: Bundle, tmp_path: Path, working_criu: str
) -> None:
    b = _counting(runlog, bundle, tmp_path, "k-1", 100000)
    images = tmp_path / "img"
    pid = runlog.state("k-1")["pid"]
    n = _counted(b, 2)
    out = runlog("checkpoint", "--leave-running", "--image-path", str(images), "k-1")
    assert out.returncode == 0, out.stderr
    state = runlog.state("k-1")
    assert state["status"] == "running" and state["pid"] == pid
    assert _counted(b, n + 3) >= n + 3
    outcome, payload = _outcome(runlog.db, "k-1", "checkpoint")
    assert outcome == "ok" and payload["request"]["leave_running"] is True
    assert _action(payload, "criu.dump")["leave_running"] is True
    assert (images / "inventory.img").is_file()
    # The images restore a second container beside the first.
    b2 = bundle(["sh", "-c", _LOOP.format(limit=100000)])
    back = _plain(
        runlog, tmp_path, "restore", "-d", "-b", str(b2), "--image-path", str(images), "k-2"
    )
    assert back.returncode == 0, (tmp_path / "container.out").read_text()
    assert runlog.state("k-2")["status"] == "running"
    assert runlog.state("k-1")["status"] == "running"
    # A paused container is dumped as it is, and stays paused.
    runlog("pause", "k-1", check=True)
    frozen = _count(b)
    out = runlog("checkpoint", "--leave-running", "--image-path", str(tmp_path / "p"), "k-1")
    assert out.returncode == 0, out.stderr
    assert runlog.state("k-1")["status"] == "paused"
    time.sleep(0.5)
    assert _count(b) == frozen
    runlog("resume", "k-1", check=True)
    assert _counted(b, frozen + 2) >= frozen + 2
    for cid in ("k-1", "k-2"):
        runlog("delete", "--force", cid, check=True)


def test_restore_in_the_foreground_waits_and_exits_with_its_status(
    runlog: Any, bundle: Bundle, tmp_path: Path, working_criu: str
) -> None:
    b = _counting(runlog, bundle, tmp_path, "k-1", 12)
    images = tmp_path / "img"
    _counted(b, 2)
    runlog("checkpoint", "--image-path", str(images), "k-1", check=True)
    runlog("delete", "k-1", check=True)
    done = _plain(runlog, tmp_path, "restore", "-b", str(b), "--image-path", str(images), "k-1")
    assert done.returncode == 7, (tmp_path / "container.out").read_text()  # the loop's exit
    assert _count(b) == 12
    assert not (runlog.root / "k-1").exists()  # gone once it ended, as run's


def test_a_pipe_for_stdout_is_given_back_as_the_restore_s_stdout(
    runlog: Any, bundle: Bundle, tmp_path: Path, working_criu: str
) -> None:
    b = bundle(["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"])
    cmd = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # run -d keeps the pipe as the container's stdout (conmon's way).
    run = subprocess.Popen(
        [*cmd, "run", "-d", "-b", str(b), "k-1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert run.stdout is not None
    with run.stdout:
        assert run.wait(30) == 0
        first = [run.stdout.readline().decode() for _ in range(3)]
        assert first == ["tick 1\n", "tick 2\n", "tick 3\n"]
        runlog("checkpoint", "--image-path", str(tmp_path / "img"), "k-1", check=True)
        saved = json.loads((tmp_path / "img" / "runlog.json").read_text())
        assert saved["stdio"][1].startswith("pipe:[")
        # Up to EOF: the tree has ended, the last tick it wrote is its count.
        last = int(("".join(first) + run.stdout.read().decode()).split()[-1])
    runlog("delete", "k-1", check=True)
    back = _plain(
        runlog,
        tmp_path,
        "restore",
        "-d",
        "-b",
        str(b),
        "--image-path",
        str(tmp_path / "img"),
        "k-1",
    )
    assert back.returncode == 0
    out = tmp_path / "container.out"
    deadline = time.monotonic() + 10
    while out.read_text().count("tick") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    ticks = [
        int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith("tick")
    ]
    assert ticks[:3] == [last + 1, last + 2, last + 3], (last, ticks)
    runlog("delete", "--force", "k-1", check=True)


def test_checkpoint_and_restore_say_what_criu_lacks(
    runlog: Any, bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A criu whose check fails, as Debian 12's on kernel 6.18.
    fake = tmp_path / "criu"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Version: 3.17.1"; exit 0; fi\n'
        'echo "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds" >&2\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("RUNLOG_CRIU", str(fake))
    expected = "CRIU cannot work on this host: criu check fails (criu 3.17.1, kernel "
    b = bundle(["sleep", "60"])
    runlog("run", "-d", "k-1", "-b", str(b), check=True)
    out = runlog("checkpoint", "--image-path", str(tmp_path / "img"), "k-1")
    assert out.returncode == 1 and expected in out.stderr, out.stderr
    assert "vdso: Unexpected rt vDSO area bounds" in out.stderr  # criu check's own words
    assert runlog.state("k-1")["status"] == "running"  # nothing happened to it
    outcome, payload = _outcome(runlog.db, "k-1", "checkpoint")
    assert outcome == "failed" and expected in payload["error"]
    assert payload["request"]["image_path"] == str(tmp_path / "img")
    back = runlog("restore", "-b", str(b), "--image-path", str(tmp_path / "img"), "k-2")
    assert back.returncode == 1 and expected in back.stderr, back.stderr
    outcome, payload = _outcome(runlog.db, "k-2", "restore")
    assert outcome == "failed" and payload["request"]["bundle"] == str(b)
    assert payload["request"]["image_path"] == str(tmp_path / "img")
    assert not (runlog.root / "k-2").exists()
    runlog("delete", "--force", "k-1", check=True)


def test_checkpoint_and_restore_refusals_are_recorded(
    runlog: Any, bundle: Bundle, tmp_path: Path, working_criu: str
) -> None:
    b = bundle(["sleep", "60"])
    runlog("run", "-d", "k-1", "-b", str(b), check=True)
    # A runc flag runlog does not give CRIU: refused by name, not ignored.
    out = runlog("checkpoint", "--pre-dump", "--image-path", str(tmp_path / "i1"), "k-1")
    assert out.returncode == 1 and "--pre-dump: not supported by runlog" in out.stderr
    assert _outcome(runlog.db, "k-1", "checkpoint")[0] == "failed"
    assert runlog.state("k-1")["status"] == "running"
    # Images runlog did not make: the restore fails, nothing is left.
    empty = tmp_path / "empty"
    empty.mkdir()
    out = runlog("restore", "-d", "-b", str(b), "--image-path", str(empty), "k-2")
    assert out.returncode == 1 and "not a checkpoint runlog made" in out.stderr, out.stderr
    assert _outcome(runlog.db, "k-2", "restore")[0] == "failed"
    assert not (runlog.root / "k-2").exists()
    # An id in use, and a bundle without config.json: rejected, recorded.
    out = runlog("restore", "-d", "-b", str(b), "--image-path", str(empty), "k-1")
    assert out.returncode == 1 and "exists" in out.stderr
    assert _outcome(runlog.db, "k-1", "restore")[0] == "rejected"
    out = runlog("restore", "-d", "-b", str(tmp_path), "--image-path", str(empty), "k-3")
    assert out.returncode == 1 and "no config.json" in out.stderr
    assert _outcome(runlog.db, "k-3", "restore")[0] == "rejected"
    # A stopped container: the machine refuses, as runc ("not running").
    runlog("kill", "k-1", "KILL", check=True)
    runlog.wait_status("k-1", "stopped")
    out = runlog("checkpoint", "--image-path", str(tmp_path / "i2"), "k-1")
    assert out.returncode == 1
    assert _outcome(runlog.db, "k-1", "checkpoint")[0] == "rejected"
    runlog("delete", "k-1", check=True)


def test_what_runlog_does_not_checkpoint_is_refused_and_recorded(
    runlog: Any, bundle: Bundle, tmp_path: Path, console: Any, working_criu: str
) -> None:
    def user_namespace(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = linux["gidMappings"] = [
            {"containerID": 0, "hostID": 0, "size": 65536}
        ]

    def terminal(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True

    runlog("run", "-d", "k-user", "-b", str(bundle(["sleep", "60"], user_namespace)), check=True)
    b = bundle(["sleep", "60"], terminal)
    runlog("run", "-d", "--console-socket", str(console.path), "k-tty", "-b", str(b), check=True)
    for cid, words in (("k-user", "a container with a user namespace"), ("k-tty", "a terminal")):
        out = runlog("checkpoint", "--image-path", str(tmp_path / cid), cid)
        assert out.returncode == 1 and words in out.stderr, out.stderr
        assert runlog.state(cid)["status"] == "running"
        outcome, payload = _outcome(runlog.db, cid, "checkpoint")
        assert outcome == "failed" and words in payload["error"]
        runlog("delete", "--force", cid, check=True)


def test_criu_problem_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RUNLOG_CRIU", raising=False)
    assert criu.problem() == "criu is not installed (Debian's criu package)"
    fake = tmp_path / "criu"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Version: 9.9"; exit 0; fi\n'
        'echo "Error (criu/cr-check.c:1): Kernel doesn\'t support PTRACE_O_SUSPEND_SECCOMP" >&2\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    found = criu.problem()
    assert found is not None
    assert found.startswith("criu check fails (criu 9.9, kernel ")
    assert found.endswith("Kernel doesn't support PTRACE_O_SUSPEND_SECCOMP")
