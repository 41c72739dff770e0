"""Real containers: a busybox bundle per test, the CLI as a subprocess, and a
check after every test that no process, cgroup, mount or state directory of
it is left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.bundles import BUSYBOX, make_busybox_bundle

REPO = Path(__file__).resolve().parents[2]


_FULL = "import sys; from engine.cli import main; sys.exit(main(sys.argv[1:]))"


def run_to_files(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """``argv`` run with its stdout and stderr in files, not pipes: a
    created container keeps create's (as with runc), so a pipe would not
    see EOF until it exits. No stdin unless ``kw`` gives one."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run(argv, stdout=out, stderr=err, check=False, **kw).returncode
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            argv, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


class Runlog:
    """``runlog --root R --db D ARGS...`` in a subprocess."""

    def __init__(self, root: Path, db: Path, cwd: Path) -> None:
        self.root = root
        self.db = db
        self.cwd = cwd

    def __call__(
        self, *args: str, check: bool = False, timeout: float = 30, full: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        # python -m engine starts with the short way (engine.quick); full=True
        # goes to engine.cli at once.
        entry = ["-c", _FULL] if full else ["-m", "engine"]
        cmd = [sys.executable, *entry, "--root", str(self.root), "--db", str(self.db)]
        proc = run_to_files(
            [*cmd, *args],
            timeout=timeout,
            cwd=self.cwd,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            **kw,
        )
        proc.args = args
        if check and proc.returncode != 0:
            raise AssertionError(f"runlog {' '.join(args)}: {proc.returncode}: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        """``runlog state CID``, parsed."""
        doc: dict[str, Any] = json.loads(self("state", cid, check=True).stdout)
        return doc

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> dict[str, Any]:
        """Poll ``state`` until ``status`` (or the timeout); the last state."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.state(cid)
            if doc["status"] == status or time.monotonic() > deadline:
                return doc
            time.sleep(0.05)

    def events(self, cid: str, queries: bool = False) -> list[tuple[str, str | None, str]]:
        """(trigger, dest, outcome) of the container's events, without the
        queries (accepted state and wait requests) unless asked."""
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                'SELECT "trigger", dest, outcome, json_extract(payload, "$.query") FROM events '
                "WHERE container_id = ? ORDER BY seq",
                (cid,),
            )
            return [(str(t), d, str(o)) for t, d, o, q in rows if queries or not q]

    def payload(self, cid: str, trigger: str) -> dict[str, Any]:
        """The payload of the container's first ``trigger`` event."""
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                'SELECT payload FROM events WHERE container_id = ? AND "trigger" = ? '
                "ORDER BY seq LIMIT 1",
                (cid, trigger),
            ).fetchone()
        assert row is not None, f"no {trigger} event for {cid}"
        doc: dict[str, Any] = json.loads(row[0])
        return doc


def _cgroup_dirs(parent: str) -> list[Path]:
    """Every hierarchy's directory for ``parent`` that exists."""
    return [d for d in Path("/sys/fs/cgroup").glob(f"*/{parent.strip('/')}") if d.is_dir()]


def _leftovers(marker: str, root: Path, parent: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{pid}/root").startswith(marker):
                found.append(f"process {pid} in the container's root")
            elif marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(f"process {pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()!r}")
        except OSError:
            continue
    with open("/proc/self/mountinfo") as fh:
        found += [f"mount {line.split()[4]}" for line in fh if marker in line]
    if root.exists():
        found += [f"state directory {p}" for p in root.iterdir()]
    for base in _cgroup_dirs(parent):
        found += [f"cgroup {p}" for p in base.iterdir() if p.is_dir()]
        base.rmdir()  # the test's parent, made by the cgroup manager
    return found


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_root() -> Iterator[None]:
    yield
    for base in _cgroup_dirs("/runlog-test"):
        try:
            base.rmdir()
        except OSError:
            pass  # another run is using it


@pytest.fixture
def runlog(tmp_path: Path) -> Iterator[Runlog]:
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    if not os.path.exists(BUSYBOX):
        pytest.fail(f"{BUSYBOX} is missing: make installs busybox-static")
    tool = Runlog(tmp_path / "root", tmp_path / "events.db", tmp_path)
    yield tool
    if tool.root.exists():
        for entry in tool.root.iterdir():
            tool("delete", "--force", entry.name)
    left = _leftovers(str(tmp_path), tool.root, cgroup_parent(tmp_path))
    assert not left, f"left behind: {left}"


def cgroup_parent(tmp_path: Path) -> str:
    """Each test's containers get cgroups under their own parent, so that two
    test runs at once (or a failed one's leftovers) never share a cgroup."""
    return f"/runlog-test/{tmp_path.parent.name}-{tmp_path.name}"


@pytest.fixture
def parent_cgroup(tmp_path: Path) -> str:
    """The test's cgroup parent, for containers another tool makes (podman)."""
    return cgroup_parent(tmp_path)


@pytest.fixture
def bundle(tmp_path: Path) -> Callable[..., Path]:
    """``bundle(args, edit=None)``: a busybox bundle under tmp_path."""
    count = 0

    def make(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        nonlocal count
        count += 1
        directory = tmp_path / f"bundle{count}"
        parent = cgroup_parent(tmp_path)

        def configure(spec: dict[str, Any]) -> None:
            spec["linux"]["cgroupsPath"] = f"{parent}/c{count}"
            if edit is not None:
                edit(spec)

        make_busybox_bundle(str(directory), args, edit=configure)
        return directory

    return make


@pytest.fixture
def shell_hook(tmp_path: Path) -> Callable[..., Callable[[dict[str, Any]], None]]:
    """``shell_hook(name, script, point, **entry)``: write ``script`` (sh) to
    ``tmp_path/name`` as an executable and return the config edit that makes
    it the one hook at ``point`` (``entry``: more of its fields, ``timeout``)."""

    def make(name: str, script: str, point: str, **entry: Any) -> Callable[[dict[str, Any]], None]:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)

        def edit(spec: dict[str, Any]) -> None:
            spec["hooks"] = {point: [{"path": str(path), **entry}]}

        return edit

    return make


@pytest.fixture
def reachable(runlog: Any) -> Iterator[Path]:
    """A directory every uid can traverse, outside pytest's (mode 0700) base:
    the mapped root of a user namespace must reach the bundle. Checked
    afterwards for processes and mounts left in it, as the runlog fixture
    checks tmp_path."""
    directory = Path(tempfile.mkdtemp(prefix="runlog-userns-", dir="/tmp"))
    directory.chmod(0o711)
    try:
        yield directory
        if runlog.root.exists():  # a failed test's containers, before the check
            for entry in runlog.root.iterdir():
                runlog("delete", "--force", entry.name)
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/root").startswith(str(directory)):
                    left.append(f"process {pid}")
            except OSError:
                continue
        with open("/proc/self/mountinfo") as fh:
            left += [f"mount {line.split()[4]}" for line in fh if str(directory) in line]
        assert not left, f"left behind: {left}"
    finally:
        shutil.rmtree(directory)


class ConsoleSocket:
    """runc's console socket: accept one connection, receive the pty master
    with SCM_RIGHTS, then read everything the container writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.name = b""
        self.master: int | None = None
        self.received = threading.Event()
        self.output = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(20)
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            name, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        self.name = name
        if fds:
            self.master = fds[0]
        self.received.set()
        if self.master is None:
            return
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the last slave fd closed
                break
            if not chunk:
                break
            self.output += chunk

    def type(self, text: str) -> None:
        """Write ``text`` to the terminal, as if typed at it."""
        assert self.received.wait(10), "no connection on the console socket"
        assert self.master is not None, "no pty master came with the connection"
        os.write(self.master, text.encode())

    def wait_for(self, text: str, timeout: float = 10) -> str:
        """The terminal's output (without carriage returns) once ``text`` is in it."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.output.decode(errors="replace").replace("\r", "")
            if text in seen:
                return seen
            assert time.monotonic() < deadline, f"no {text!r} on the terminal: {seen!r}"
            time.sleep(0.05)

    def close(self) -> None:
        if not self.received.is_set():
            # Nobody came (the runtime refused first): release the accept.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as poke:
                poke.connect(str(self.path))
        self.server.close()
        self.thread.join(timeout=20)
        if self.master is not None:
            os.close(self.master)


#: What exec -t runs to show what its terminal is: the tty, its size, a
#: last line to wait for, and an exit code the runtime's exec returns.
TTY_PROBE = ["sh", "-c", "tty; stty size; echo probed; exit 5"]


def exec_on_console(
    tool: Callable[..., subprocess.CompletedProcess[str]],
    console: ConsoleSocket,
    cid: str,
    *flags: str,
) -> tuple[int, str, list[str], bool]:
    """``tool exec -t FLAGS --console-socket`` of :data:`TTY_PROBE` in
    ``cid`` (``tool``: runlog's or runc's, as a test calls it, not raising
    on failure): exec's exit code and stderr, the lines the console got,
    and whether the console saw the terminal close (the process's end)."""
    got = tool("exec", "-t", *flags, "--console-socket", str(console.path), cid, *TTY_PROBE)
    if got.returncode not in (0, 5):
        return got.returncode, got.stderr, [], False
    lines = console.wait_for("probed\n").splitlines()
    console.thread.join(timeout=10)  # the reader ends when the last slave fd closes
    return got.returncode, got.stderr, lines, not console.thread.is_alive()


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[Callable[[str], ConsoleSocket]]:
    """``consoles(name)``: a console socket at ``tmp_path/name``, closed after the test."""
    made: list[ConsoleSocket] = []

    def make(name: str) -> ConsoleSocket:
        made.append(ConsoleSocket(tmp_path / name))
        return made[-1]

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def console(consoles: Callable[[str], ConsoleSocket]) -> ConsoleSocket:
    """One console socket, ``tmp_path/console.sock``."""
    return consoles("console.sock")


class Runc:
    """``runc --root R ARGS...`` in a subprocess, for a bundle side by side."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = run_to_files(["runc", "--root", str(self.root), *args], timeout=30)
        proc.args = args
        if check and proc.returncode != 0:
            raise AssertionError(f"runc {' '.join(args)}: {proc.returncode}: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        """``runc state CID``, parsed."""
        doc: dict[str, Any] = json.loads(self("state", cid).stdout)
        return doc


@pytest.fixture
def runc(tmp_path: Path) -> Iterator[Runc]:
    """runc with its own --root; what a test leaves is deleted with --force."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make deps installs it)")
    tool = Runc(tmp_path / "runc-root")
    yield tool
    if tool.root.exists():
        for entry in tool.root.iterdir():
            tool("delete", "--force", entry.name, check=False)


@pytest.fixture
def side_by_side(runlog: Runlog, runc: Runc) -> dict[str, Callable[..., list[str]]]:
    """``side_by_side[name](*args)``: the argv of ``ARGS`` for runlog and
    runc, each with its own root, for the same command run by both."""
    ours = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    theirs = ["runc", "--root", str(runc.root)]
    return {
        "runlog": lambda *args: [*ours, *args],
        "runc": lambda *args: [*theirs, *args],
    }
