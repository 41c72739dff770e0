"""A foreground ``run`` of a ``terminal: true`` config without
``--console-socket`` (``runc spec``'s default, a user's first try) copies
the caller's terminal to the container's pty and back, as runc's: the same
bundle through runlog and runc side by side, each on a pty of the test's
own that is its controlling terminal. So does ``exec -t``."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import REPO

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

Bundle = Callable[..., Path]
Runtime = Callable[..., list[str]]


def _tty_bundle(bundle: Bundle, script: str) -> Path:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True

    return bundle(["sh", "-c", script], edit)


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class OnPty:
    """A command whose stdin, stdout and stderr are the slave of a new pty,
    its controlling terminal (a session of its own), ``rows`` x ``cols``;
    the test reads and types on the master."""

    def __init__(
        self, argv: list[str], rows: int = 30, cols: int = 100, stdin: Any = None, **kw: Any
    ) -> None:
        self.master, self.slave = os.openpty()
        _winsize(self.slave, rows, cols)
        self.mode = termios.tcgetattr(self.slave)
        self.out = b""

        def controlling() -> None:
            os.setsid()
            fcntl.ioctl(1, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave if stdin is None else stdin,
            stdout=self.slave,
            stderr=self.slave,
            preexec_fn=controlling,  # noqa: PLW1509 (no threads here)
            **{"env": {**os.environ, "PYTHONPATH": str(REPO)}, **kw},
        )

    def read_until(self, marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.proc.args}: no {marker!r} in {self.out!r}")
            ready, _w, _x = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.out += os.read(self.master, 4096)
                except OSError:  # EIO: the slave closed everywhere
                    continue

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def resize(self, rows: int, cols: int) -> None:
        """The caller's window changes: the kernel signals the terminal's
        foreground group, and the test the command too."""
        _winsize(self.master, rows, cols)
        self.proc.send_signal(signal.SIGWINCH)

    def finish(self) -> tuple[int, bytes, bool]:
        """The exit status, all the output, whether the terminal's mode is
        as it was before."""
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.proc.args}: still running; {self.out!r}") from None
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                break
            if not data:
                break
            self.out += data
        restored = termios.tcgetattr(self.slave) == self.mode
        os.close(self.master)
        os.close(self.slave)
        return code, self.out, restored


SCRIPT = "echo hi; tty; read x; echo got $x; stty size; echo waiting; read y; stty size; exit 3"


def test_run_copies_the_terminal_as_runc(
    side_by_side: dict[str, Runtime], runlog: Any, bundle: Bundle
) -> None:
    b = _tty_bundle(bundle, SCRIPT)
    got, pids = {}, {}
    for name, argv in side_by_side.items():
        pty = OnPty(argv("run", "-b", str(b), f"tty-{name}"))
        pty.read_until(b"/dev/pts/")
        pty.type(b"hello\r")
        pty.read_until(b"waiting")
        pty.resize(40, 120)
        time.sleep(0.5)  # the resize passed on before the next line
        pty.type(b"\r")
        got[name] = pty.finish()
        pids[name] = pty.proc.pid
    for name, (code, out, restored) in got.items():
        assert code == 3, (name, out)
        assert restored, name
        lines = out.decode().split("\r\n")
        assert lines[:2] == ["hi", "/dev/pts/0"], (name, out)
        assert "got hello" in lines, (name, out)
        # The window size set on the caller's terminal, then its change.
        assert lines[lines.index("got hello") + 1] == "30 100", (name, out)
        assert lines[-2:] == ["40 120", ""], (name, out)
    assert got["runlog"] == got["runc"]
    assert runlog.events("tty-runlog") == [
        ("create", "created", "ok"),
        ("start", "running", "ok"),
        ("exit", "stopped", "ok"),
        ("delete", "deleted", "ok"),
    ]
    (collected,) = runlog.payload("tty-runlog", "exit")["actions"]
    assert collected["result"] == {"exit_code": 3}
    # Who asked: the run, for its create, start and delete.
    with sqlite3.connect(runlog.db) as conn:
        asked = conn.execute(
            'SELECT "trigger", actor_pid FROM events WHERE container_id = ? '
            "AND \"trigger\" IN ('create', 'start', 'delete') ORDER BY seq",
            ("tty-runlog",),
        ).fetchall()
    assert asked == [(t, pids["runlog"]) for t in ("create", "start", "delete")]
    assert not list(runlog.root.iterdir())


def test_run_with_a_terminal_forwards_signals(
    side_by_side: dict[str, Runtime], bundle: Bundle
) -> None:
    b = _tty_bundle(
        bundle, "trap 'echo caught; exit 42' TERM; echo ready; while :; do sleep 0.05; done"
    )
    for name, argv in side_by_side.items():
        pty = OnPty(argv("run", "-b", str(b), f"sig-{name}"))
        pty.read_until(b"ready")
        pty.proc.send_signal(signal.SIGTERM)
        code, out, restored = pty.finish()
        assert (code, restored) == (42, True), (name, out)
        assert out.endswith(b"caught\r\n"), (name, out)


def test_stdin_not_a_terminal_but_stdout_one(
    side_by_side: dict[str, Runtime], bundle: Bundle
) -> None:
    """runc takes the terminal from stderr, stdout or stdin, whichever is
    one (stdout here: stdin is /dev/null, whose end is copied as nothing)."""
    b = _tty_bundle(bundle, "echo hi; tty; exit 3")
    got = {}
    for name, argv in side_by_side.items():
        pty = OnPty(argv("run", "-b", str(b), f"in-{name}"), stdin=subprocess.DEVNULL)
        got[name] = pty.finish()
    code, out, restored = got["runlog"]
    assert (code, out, restored) == (3, b"hi\r\n/dev/pts/0\r\n", True), got
    assert got["runlog"] == got["runc"]


def _without_terminal(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """``argv`` with no stdio a terminal and no controlling terminal."""
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )


def _empty(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


def test_run_without_any_terminal_is_refused_as_runc(
    side_by_side: dict[str, Runtime], runlog: Any, runc: Any, bundle: Bundle
) -> None:
    """No stdio a terminal and no controlling one: runc cannot open
    /dev/tty, and says so before anything is made; runlog too."""
    b = _tty_bundle(bundle, "echo hi")
    for name, argv in side_by_side.items():
        proc = _without_terminal(argv("run", "-b", str(b), f"none-{name}"))
        assert proc.returncode == 1, (name, proc.stderr)
        assert b"open /dev/tty: no such device or address" in proc.stderr, name
        assert proc.stdout == b"", name
    assert runlog.events("none-runlog") == [("create", None, "rejected")]
    assert _empty(runlog.root) and _empty(runc.root)


def test_detached_run_with_a_terminal_still_needs_a_console_socket(
    side_by_side: dict[str, Runtime], runlog: Any, runc: Any, bundle: Bundle
) -> None:
    b = _tty_bundle(bundle, "echo hi")
    for name, argv in side_by_side.items():
        pty = OnPty(argv("run", "-d", "-b", str(b), f"d-{name}"))
        code, out, restored = pty.finish()
        assert (code, restored) == (1, True), (name, out)
        runtime = name.encode()
        assert (
            b"cannot allocate tty if " + runtime + b" will detach without setting console socket"
        ) in out, (name, out)
    assert runlog.events("d-runlog") == [("create", None, "rejected")]
    assert _empty(runlog.root) and _empty(runc.root)


def test_exec_t_copies_the_terminal_and_resizes_as_runc(
    side_by_side: dict[str, Runtime], runlog: Any, runc: Any, bundle: Bundle
) -> None:
    b = bundle(["sleep", "300"])
    runlog("run", "-d", "-b", str(b), "x-ours", check=True)
    runc("run", "-d", "-b", str(bundle(["sleep", "300"])), "x-runc")
    got = {}
    for name, cid in (("runlog", "x-ours"), ("runc", "x-runc")):
        pty = OnPty(side_by_side[name]("exec", "-t", cid, "sh", "-c", SCRIPT))
        pty.read_until(b"/dev/pts/")
        pty.type(b"hello\r")
        pty.read_until(b"waiting")
        pty.resize(40, 120)
        time.sleep(0.5)
        pty.type(b"\r")
        got[name] = pty.finish()
    code, out, restored = got["runlog"]
    assert (code, restored) == (3, True), out
    lines = out.decode().split("\r\n")
    assert lines[lines.index("got hello") + 1 :] == ["30 100", "waiting", "", "40 120", ""], out
    assert got["runlog"] == got["runc"]
    runc("delete", "--force", "x-runc")
    runlog("delete", "--force", "x-ours", check=True)


def test_exec_t_without_any_terminal_is_refused_as_runc(
    side_by_side: dict[str, Runtime], runlog: Any, runc: Any, bundle: Bundle
) -> None:
    runlog("run", "-d", "-b", str(bundle(["sleep", "300"])), "n-ours", check=True)
    runc("run", "-d", "-b", str(bundle(["sleep", "300"])), "n-runc")
    for name, cid in (("runlog", "n-ours"), ("runc", "n-runc")):
        proc = _without_terminal(side_by_side[name]("exec", "-t", cid, "echo", "hi"))
        assert proc.returncode == 255, (name, proc.stderr)
        assert b"exec failed: open /dev/tty: no such device or address" in proc.stderr, name
        assert proc.stdout == b"", name
    # Refused before the monitor was asked: recorded, no process started.
    assert ("exec", None, "rejected") in runlog.events("n-ours")
    assert not any(t == "exec_exit" for t, _d, _o in runlog.events("n-ours"))
    runc("delete", "--force", "n-runc")
    runlog("delete", "--force", "n-ours", check=True)
