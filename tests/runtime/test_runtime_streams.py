"""The container's streams kept by the monitor (``create --log-path``), with
real containers, as root: create's stdio released, the log in each format,
``reopen_log``, and ``runlog attach`` with several clients."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.monitor.streams import LogFile, timestamp

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]
K8S_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")


def runlog_cmd(runlog: Any) -> list[str]:
    return [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]


def _attach(runlog: Any, cid: str) -> subprocess.Popen[bytes]:
    """``runlog attach CID`` in the background, its three streams piped."""
    return subprocess.Popen(
        [*runlog_cmd(runlog), "attach", cid],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        env=env(),
    )


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def close(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if a failed test left it running, and close its pipes."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def contains(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text()


# -- the log file, without a container ------------------------------------------


def test_log_formats_split_lines_by_stream(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    log = LogFile(str(path), "kubernetes")
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\nthree")
    log.flush()
    log.close()
    found = [K8S_LINE.match(line) for line in path.read_text().splitlines()]
    assert all(found), path.read_text()
    assert [(m[2], m[3], m[4]) for m in found if m] == [
        ("stdout", "F", "one"),
        ("stderr", "F", "err"),
        ("stdout", "F", "two"),
        ("stdout", "F", "three"),
    ]


def test_json_log_keeps_the_newline_and_long_lines_come_in_parts(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    log = LogFile(str(path), "json")
    log.write("stdout", b"x" * (16 * 1024 + 3) + b"\n\xff\n")
    log.close()
    objs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [o["log"] for o in objs] == ["x" * 16 * 1024, "xxx\n", "\ufffd\n"]
    assert {o["stream"] for o in objs} == {"stdout"}
    assert all(re.fullmatch(r"\S+T\S+\.\d{9}Z", o["time"]) for o in objs)


def test_timestamp_is_rfc3339_utc_nanoseconds() -> None:
    assert timestamp(1_700_000_000_000_000_042) == "2023-11-14T22:13:20.000000042Z"


# -- real containers ------------------------------------------------------------------


def test_create_with_log_path_releases_its_stdio(runlog: Any, bundle: Bundle) -> None:
    """A caller reading create's stdout through a pipe (Slurm) sees EOF as
    soon as create returns: the container does not hold the pipe."""
    b = bundle(["sh", "-c", "echo hello; echo oops >&2"])
    log = runlog.cwd / "c.log"
    proc = subprocess.Popen(
        [*runlog_cmd(runlog), "create", "c1", "-b", str(b), "--log-path", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env(),
    )
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        close(proc)
    assert proc.returncode == 0, err
    assert out == b""
    runlog("start", "c1", check=True)
    assert runlog("wait", "c1").stdout == "0\n"
    # Drained before the exit was recorded: all of it is there once wait answers.
    assert sorted(log.read_text().splitlines()) == ["hello", "oops"]
    assert (runlog.root / "c1" / "attach.sock").exists() is False
    runlog("delete", "c1", check=True)


@pytest.mark.parametrize("fmt", ["basic", "kubernetes", "json"])
def test_log_formats(runlog: Any, bundle: Bundle, fmt: str) -> None:
    b = bundle(["sh", "-c", "echo one; echo two >&2; printf three"])
    log = runlog.cwd / f"{fmt}.log"
    proc = runlog("run", "--log-path", str(log), "--log-format", fmt, "r1", "-b", str(b))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    text = log.read_text()
    if fmt == "basic":
        # The bytes as written; stdout's and stderr's may interleave.
        assert sorted(text) == sorted("one\ntwo\nthree")
        assert text.startswith("one\n")
        return
    if fmt == "kubernetes":
        matches = [K8S_LINE.match(line) for line in text.splitlines()]
        assert all(matches), text
        got = {(m[2], m[3], m[4]) for m in matches if m}
        assert got == {("stdout", "F", "one"), ("stderr", "F", "two"), ("stdout", "F", "three")}
        return
    objs = [json.loads(line) for line in text.splitlines()]
    assert {(o["stream"], o["log"]) for o in objs} == {
        ("stdout", "one\n"),
        ("stderr", "two\n"),
        ("stdout", "three"),
    }
    assert all(set(o) == {"time", "stream", "log"} for o in objs)


def test_reopen_log_after_rotation(runlog: Any, bundle: Bundle) -> None:
    script = (
        "echo before; while [ ! -e /next ]; do sleep 0.02; done; echo after; "
        "while [ ! -e /stop ]; do sleep 0.02; done"
    )
    b = bundle(["sh", "-c", script])
    log = runlog.cwd / "app.log"
    runlog("run", "-d", "--log-path", str(log), "rot", "-b", str(b), check=True)
    wait_for(contains(log, "before\n"), "the first line")
    rotated = runlog.cwd / "app.log.1"
    log.rename(rotated)
    reply = runlog("ctl", "rot", '{"op": "reopen_log"}')
    assert reply.returncode == 0, reply.stderr
    (b / "rootfs" / "next").touch()
    wait_for(contains(log, "after\n"), "the line after reopen")
    assert rotated.read_text() == "before\n"
    assert log.read_text() == "after\n"
    (b / "rootfs" / "stop").touch()
    assert runlog("wait", "rot").stdout == "0\n"
    runlog("delete", "rot", check=True)


def test_reopen_log_without_a_log_is_refused(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sleep", "100"])
    runlog("create", "nolog", "-b", str(b), check=True)
    reply = runlog("ctl", "nolog", '{"op": "reopen_log"}')
    assert reply.returncode == 1
    assert "has no container log" in reply.stderr
    attach = runlog("attach", "nolog")
    assert attach.returncode == 1
    assert "nothing to attach to" in attach.stderr
    runlog("delete", "--force", "nolog", check=True)


def test_two_attached_clients_see_the_same_output(runlog: Any, bundle: Bundle) -> None:
    """Each client's input reaches the container's stdin; each client sees
    everything written after it connected, stdout and stderr; both end when
    the container does, and the log has it all."""
    script = 'read a; echo "a=$a"; read b; echo "b=$b"; echo "err=$b" >&2'
    b = bundle(["sh", "-c", script])
    log = runlog.cwd / "att.log"
    runlog("run", "-d", "--log-path", str(log), "att", "-b", str(b), check=True)
    assert oct((runlog.root / "att" / "attach.sock").stat().st_mode & 0o777) == "0o600"
    clients = []
    try:
        for line in (b"one\n", b"two\n"):
            client = _attach(runlog, "att")
            clients.append(client)
            assert client.stdin is not None
            client.stdin.write(line)
            client.stdin.flush()
            if line == b"one\n":
                # The container has read A's line: A is attached, and B is not yet.
                wait_for(contains(log, "a=one\n"), "the first line")
        results = [c.communicate(timeout=20) for c in clients]
    finally:
        for client in clients:
            close(client)
    first, second = (out.decode() for out, _err in results)
    assert [c.returncode for c in clients] == [0, 0], [err for _out, err in results]
    assert sorted(first.splitlines()) == ["a=one", "b=two", "err=two"]
    assert sorted(second.splitlines()) == ["b=two", "err=two"]
    assert sorted(log.read_text().splitlines()) == ["a=one", "b=two", "err=two"]
    assert runlog("wait", "att").stdout == "0\n"
    runlog("delete", "att", check=True)


def terminal(spec: dict[str, Any]) -> None:
    spec["process"]["terminal"] = True


def test_log_path_and_console_socket_together_are_refused(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["true"], edit=terminal)
    proc = runlog(
        "create",
        "tty",
        "-b",
        str(b),
        "--log-path",
        str(runlog.cwd / "t.log"),
        "--console-socket",
        str(runlog.cwd / "console.sock"),
    )
    assert proc.returncode == 1
    assert "--log-path and --console-socket" in proc.stderr
    assert not (runlog.root / "tty").exists()


def test_terminal_owned_by_the_monitor(runlog: Any, bundle: Bundle) -> None:
    """terminal: true without --console-socket: the monitor keeps the pty; a
    new client first sees the last line on the screen; console_size
    resizes it; input reaches the container through the pty."""
    script = 'printf "prompt> "; read x; stty size; echo "got $x"'
    b = bundle(["sh", "-c", script], edit=terminal)
    log = runlog.cwd / "tty.log"
    runlog("run", "-d", "--log-path", str(log), "tty", "-b", str(b), check=True)
    wait_for(contains(log, "prompt> "), "the prompt")
    reply = runlog("ctl", "tty", '{"op": "console_size", "rows": 33, "cols": 101}')
    assert reply.returncode == 0, reply.stderr
    client = _attach(runlog, "tty")
    try:
        out, err = client.communicate(b"hello\n", timeout=20)
    finally:
        close(client)
    assert client.returncode == 0, err
    text = out.decode()
    assert text.startswith("prompt> "), text
    # The pty echoes the input and ends lines with CR LF.
    assert "hello\r\n33 101\r\ngot hello\r\n" in text, text
    assert log.read_bytes() == b"prompt> hello\r\n33 101\r\ngot hello\r\n"
    assert runlog("wait", "tty").stdout == "0\n"
    runlog("delete", "tty", check=True)


def test_console_size_without_a_terminal_is_refused(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sleep", "100"])
    runlog("create", "c", "-b", str(b), "--log-path", str(runlog.cwd / "c.log"), check=True)
    reply = runlog("ctl", "c", '{"op": "console_size", "rows": 1, "cols": 1}')
    assert reply.returncode == 1
    assert "has no terminal owned by its monitor" in reply.stderr
    runlog("delete", "--force", "c", check=True)


def test_unknown_log_format_is_refused(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["true"])
    proc = runlog("create", "c", "-b", str(b), "--log-path", "x.log", "--log-format", "xml")
    assert proc.returncode == 1
    assert "--log-format: invalid value 'xml' (one of: basic, kubernetes, json)" in proc.stderr
    assert not (runlog.root / "c").exists()
