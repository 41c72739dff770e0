"""The monitor's control plane with real containers, as root: every request
over control.sock and over the request spool, who may ask, what is refused,
``wait``, and what changes under runlog's feet."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import control, wire
from engine.layout import STATE_TIMEOUT
from engine.runtime.monitor.handover import resting
from engine.runtime.monitor.requests import MAX_REQUEST, RequestError, decode
from engine.runtime.shared.spool import REPLY, SpoolClient
from engine.runtime.shared.watcher import Watcher

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]
NOBODY = 65534
# Ends on USR1 with status 3, once /ready says the trap is set.
#: A life with one pause and resume, ended by a signal, then deleted.
PAUSED_ONCE = ["create", "start", "pause", "resume", "kill", "exit", "delete"]
LOOP = "trap 'exit 3' USR1; touch /ready; while true; do sleep 0.05; done"


def runlog_cmd(runlog: Any) -> list[str]:
    return [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]


@pytest.fixture
def popen(runlog: Any) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``popen(*args, out=PATH)``: runlog in the background; killed at the end
    if a failed test left it running (before the leftover check)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, out: Path) -> subprocess.Popen[bytes]:
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                [*runlog_cmd(runlog), *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def rows(db: Path, cid: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute(
            'SELECT "trigger", source, dest, outcome, actor_uid, actor_pid, actor_transport, '
            "payload FROM events WHERE container_id = ? ORDER BY seq",
            (cid,),
        ).fetchall()
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in found]


def changes(db: Path, cid: str) -> list[dict[str, Any]]:
    """The events less the queries (accepted state and wait requests)."""
    return [r for r in rows(db, cid) if not r["payload"].get("query")]


def brief(db: Path, cid: str) -> list[tuple[str, str | None, str, str]]:
    return [(r["trigger"], r["dest"], r["outcome"], r["actor_transport"]) for r in changes(db, cid)]


def _settled(look: Callable[[], Any]) -> Any:
    """``look()`` at a monitor's /proc files, again if a descriptor went
    while it looked (a monitor going to rest execs: engine.runtime.monitor.lean)."""
    for _ in range(50):
        try:
            return look()
        except FileNotFoundError:
            time.sleep(0.02)
    return look()


def watches(pid: int) -> int:
    """The directories the monitor's inotify instance watches."""

    def look() -> int:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                return Path(f"/proc/{pid}/fdinfo/{fd}").read_text().count("inotify wd:")
        return 0

    found: int = _settled(look)
    return found


def watching(pid: int) -> tuple[int, int]:
    """The monitor's threads and inotify instances."""

    def look() -> tuple[int, int]:
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        return len(os.listdir(f"/proc/{pid}/task")), fds.count("anon_inode:inotify")

    found: tuple[int, int] = _settled(look)
    return found


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def status(runlog: Any, cid: str) -> str:
    return str(json.loads(runlog("state", cid, check=True).stdout)["status"])


def runtime_info(runlog: Any, cid: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((runlog.root / cid / "runtime.json").read_text())
    return info


@pytest.fixture
def running(runlog: Any, bundle: Bundle) -> Iterator[Callable[[str], Path]]:
    """``running(cid)``: a started container looping until USR1 (then exit 3)."""
    made: list[str] = []

    def make(cid: str) -> Path:
        b = bundle(["sh", "-c", LOOP])
        runlog("run", "-d", cid, "-b", str(b), check=True)
        wait_for((b / "rootfs" / "ready").exists, "the trap")
        made.append(cid)
        return b

    yield make
    for cid in made:
        runlog("delete", "--force", cid)


class Transport:
    """``ctl`` through one transport, returning (exit status, reply)."""

    def __init__(self, runlog: Any, name: str) -> None:
        self.runlog = runlog
        self.name = name

    def __call__(self, cid: str, request: dict[str, Any] | str) -> tuple[int, dict[str, Any]]:
        text = request if isinstance(request, str) else json.dumps(request)
        flags = ["--spool"] if self.name == "spool" else []
        out = self.runlog("ctl", *flags, cid, text)
        reply: dict[str, Any] = json.loads(out.stdout.splitlines()[0])
        if not reply["ok"]:
            assert out.stderr.strip() == reply["error"]
        return out.returncode, reply


@pytest.mark.parametrize("transport", ["socket", "spool"])
def test_every_request_over_each_transport(
    runlog: Any, bundle: Bundle, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")  # queries are events only when asked
    ctl = Transport(runlog, transport)
    b = bundle(["sh", "-c", LOOP])
    runlog("create", "t-req", "-b", str(b), check=True)
    # The polled `runlog state` asks the monitor over the socket: a query.
    assert json.loads(runlog("state", "t-req", check=True).stdout)["status"] == "created"
    code, reply = ctl("t-req", {"op": "state"})
    assert (code, reply["status"], reply["state"]["status"]) == (0, "created", "created")
    assert reply["state"]["pid"] > 0
    # ... and as runc prints it, which `runlog state` prints as it is.
    assert reply["text"] == (runlog.root / "t-req" / "state.json").read_text()
    assert json.loads(reply["text"]) == reply["state"]
    for op, expected in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        code, reply = ctl("t-req", {"op": op})
        assert (code, reply["status"], reply["state"]["status"]) == (0, expected, expected)
        # The state the reply carries is state.json's, as just written.
        assert reply["state"] == json.loads((runlog.root / "t-req" / "state.json").read_text())
        if op == "start":
            wait_for((b / "rootfs" / "ready").exists, "the trap")
    code, reply = ctl("t-req", {"op": "console_size", "rows": 40, "cols": 120})
    assert code == 1
    assert reply["error"] == "console_size: container t-req has no terminal owned by its monitor"
    code, reply = ctl("t-req", {"op": "reopen_log"})
    assert (code, reply["error"]) == (1, "reopen_log: container t-req has no container log")
    code, reply = ctl("t-req", {"op": "kill", "signal": "USR1"})
    assert code == 0
    code, reply = ctl("t-req", {"op": "wait"})
    assert (code, reply["exit"], reply["state"]["exitCode"]) == (0, {"exit_code": 3}, 3)
    code, reply = ctl("t-req", {"op": "delete"})
    assert (code, reply) == (0, {"ok": True, "status": "deleted"})
    assert not (runlog.root / "t-req").exists()

    events = rows(runlog.db, "t-req")
    # wait is recorded when it arrives: before or after the exit it waits for.
    (wait,) = [e for e in events if e["trigger"] == "wait"]
    assert (wait["outcome"], wait["source"], wait["dest"]) in (
        ("ok", "running", "running"),
        ("ok", "stopped", "stopped"),
    )
    assert wait["payload"] == {"request": {"bind": False}, "query": True}
    events = [e for e in events if e["trigger"] != "wait"]
    assert [(e["trigger"], e["dest"], e["outcome"], e["actor_transport"]) for e in events] == [
        ("create", "created", "ok", "cli"),
        ("state", "created", "ok", "socket"),
        ("state", "created", "ok", transport),
        ("start", "running", "ok", transport),
        ("pause", "paused", "ok", transport),
        ("resume", "running", "ok", transport),
        ("console_size", None, "rejected", transport),
        ("reopen_log", None, "rejected", transport),
        ("kill", "running", "ok", transport),
        ("exit", "stopped", "ok", "monitor"),
        ("delete", "deleted", "ok", transport),
    ]
    asked = [e for e in events if e["actor_transport"] == transport]
    assert {e["actor_uid"] for e in asked} == {0}
    if transport == "socket":
        assert all(e["actor_pid"] for e in asked)  # the ctl process, by SO_PEERCRED
    else:
        assert {e["actor_pid"] for e in asked} == {None}  # a file has an owner, no pid
    assert events[1]["payload"] == {"request": {}, "query": True}
    assert events[6]["payload"]["refused"] == "unsupported"
    assert events[6]["payload"]["request"] == {"rows": 40, "cols": 120}
    assert events[8]["payload"]["request"] == {"signal": 10, "all": False}


def test_wait_returns_the_exit_code_and_the_signal(
    runlog: Any, bundle: Bundle, tmp_path: Path, popen: Any
) -> None:
    b = bundle(["sh", "-c", "read x < /dev/null; sleep 0.3; exit 3"])
    runlog("create", "t-w3", "-b", str(b), check=True)
    waiter = popen("wait", "t-w3", out=tmp_path / "w3.out")
    runlog("start", "t-w3", check=True)
    assert waiter.wait(timeout=20) == 3
    assert (tmp_path / "w3.out").read_text() == "3\n"
    # The status stays until delete: asked again, it is the same at once.
    again = runlog("wait", "t-w3")
    assert (again.returncode, again.stdout) == (3, "3\n")
    assert json.loads(runlog("state", "t-w3", check=True).stdout)["exitCode"] == 3
    runlog("delete", "t-w3", check=True)

    runlog("run", "-d", "t-w9", "-b", str(bundle(["sleep", "60"])), check=True)
    waiter = popen("wait", "t-w9", out=tmp_path / "w9.out")
    spooled = popen("ctl", "--spool", "t-w9", '{"op": "wait"}', out=tmp_path / "s9.out")
    time.sleep(0.3)  # both are waiting
    assert waiter.poll() is None and spooled.poll() is None
    runlog("kill", "t-w9", "KILL", check=True)
    assert waiter.wait(timeout=20) == 128 + 9
    assert (tmp_path / "w9.out").read_text() == "137\n"
    assert spooled.wait(timeout=20) == 0
    reply = json.loads((tmp_path / "s9.out").read_text())
    assert (reply["exit"], reply["state"]["exitCode"]) == ({"signal": 9}, 137)
    runlog("delete", "t-w9", check=True)
    # Killed by runlog: the exit is the monitor's to record, not external.
    assert brief(runlog.db, "t-w9")[-2] == ("exit", "stopped", "ok", "monitor")


def test_a_real_monitors_replies_conform_to_the_wire_format(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    """Every reply of a real monitor, as it comes off control.sock, is of
    the wire format (engine.wire): what the short way reads without a
    parser and what the commands parse."""
    running("t-wire")
    path = str(runlog.root / "t-wire" / "control.sock")
    requests = [
        {"op": "state"},
        {"op": "pause"},
        {"op": "state"},
        {"op": "resume"},
        {"op": "kill", "signal": 0},
        {"op": "console_size", "rows": 24, "cols": 80},  # no terminal: refused
        {"op": "start"},  # running: refused
        {"op": "kill", "signal": 10},  # the loop exits 3
        {"op": "wait"},
        {"op": "delete"},
    ]
    for request in requests:
        op = str(request["op"])
        fields = {k: v for k, v in request.items() if k != "op"}
        raw = control.call_raw(path, control.request_line(op, **fields), timeout=10)
        reply = json.loads(raw)
        assert wire.nonconforming(reply, op) is None, (request, reply)
        assert raw == wire.encode_reply(reply)  # compact, in the format's order
        assert control.is_ok(raw) is reply["ok"]
        if op == "state":
            assert (
                control.state_text_of(raw) == (runlog.root / "t-wire" / "state.json").read_bytes()
            )
        if op == "wait":
            assert reply["exit"] == {"exit_code": 3}
        assert reply["ok"] is (op not in ("console_size", "start")), (request, reply)
    assert reply == wire.DELETED
    assert not (runlog.root / "t-wire").exists()


def test_queries_are_not_events_by_default(runlog: Any, running: Callable[[str], Path]) -> None:
    running("t-quiet")
    for _ in range(5):
        assert status(runlog, "t-quiet") == "running"
    path = str(runlog.root / "t-quiet" / "control.sock")
    assert control.call(path, {"op": "state"}, timeout=10)["ok"] is True
    assert [r["trigger"] for r in rows(runlog.db, "t-quiet")] == ["create", "start"]


def test_two_clients_at_once(
    runlog: Any, running: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")  # queries are events only when asked
    running("t-two")
    path = str(runlog.root / "t-two" / "control.sock")
    results: dict[str, Any] = {}

    def waiter() -> None:
        results["wait"] = control.call(path, {"op": "wait"}, timeout=30)

    def poller(name: str) -> None:
        replies = [control.call(path, {"op": "state"}, timeout=10) for _ in range(25)]
        results[name] = {r["state"]["status"] for r in replies}

    threads = [threading.Thread(target=waiter)] + [
        threading.Thread(target=poller, args=(f"poll{i}",)) for i in range(2)
    ]
    for t in threads:
        t.start()
    # Meanwhile the lifecycle goes on through the same socket.
    assert control.call(path, {"op": "pause"})["status"] == "paused"
    assert control.call(path, {"op": "resume"})["status"] == "running"
    for t in threads[1:]:
        t.join(timeout=30)
    assert results["poll0"] <= {"running", "paused"} and results["poll1"] <= {"running", "paused"}
    assert "wait" not in results  # still running: the waiter still waits
    control.call(path, {"op": "kill", "signal": 10})
    threads[0].join(timeout=30)
    assert results["wait"]["exit"] == {"exit_code": 3}
    assert brief(runlog.db, "t-two")[-4:] == [
        ("pause", "paused", "ok", "socket"),
        ("resume", "running", "ok", "socket"),
        ("kill", "running", "ok", "socket"),
        ("exit", "stopped", "ok", "monitor"),
    ]
    queries = [r["trigger"] for r in rows(runlog.db, "t-two") if r["payload"].get("query")]
    assert (queries.count("state"), queries.count("wait")) == (50, 1)


def _as_nobody(directory: Path, act: Callable[[], bytes]) -> bytes:
    """Run ``act`` in a child that changed to ``directory`` (as root: the test's
    tmp path is 0700) and then became nobody; return what it returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.chdir(directory)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, act())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return data


def _connect_and_send(request: bytes) -> bytes:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect("control.sock")
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            return sock.makefile("rb").read()
    except OSError as err:
        return f"error {err.errno}".encode()


def test_a_peer_neither_root_nor_owner_is_refused(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-peer")
    statedir = runlog.root / "t-peer"
    sock = statedir / "control.sock"
    assert (sock.stat().st_mode & 0o777, sock.stat().st_uid) == (0o600, 0)
    # As the socket is made (0600, root's), nobody cannot even connect.
    assert _as_nobody(statedir, lambda: _connect_and_send(b'{"op":"pause"}\n')) == b"error 13"
    # Opened wider by hand, it connects, and the monitor refuses all the same.
    sock.chmod(0o666)
    for request, trigger in ((b'{"op":"pause"}\n', "pause"), (b"garbage", "request")):
        reply = json.loads(_as_nobody(statedir, lambda r=request: _connect_and_send(r)))
        assert reply["ok"] is False
        assert reply["error"] == (
            "permission denied: uid 65534 is neither root nor the owner of container t-peer (uid 0)"
        )
        last = rows(runlog.db, "t-peer")[-1]
        assert (last["trigger"], last["source"], last["outcome"]) == (
            trigger,
            "running",
            "rejected",
        )
        assert (last["actor_uid"], last["actor_transport"]) == (NOBODY, "socket")
        assert last["actor_pid"] > 0 and last["payload"]["refused"] == "not permitted"
    assert status(runlog, "t-peer") == "running"


def test_a_spooled_request_of_another_user_is_refused(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-spoolperm")
    spool = runlog.root / "t-spoolperm" / "requests"
    assert (spool.stat().st_mode & 0o777, spool.stat().st_uid) == (0o700, 0)
    spool.chmod(0o1777)  # a spool opened to everyone by hand

    def drop() -> bytes:
        Path(".nobody.tmp").write_text('{"op": "pause"}')
        os.rename(".nobody.tmp", "nobody-1")
        return b"dropped"

    assert _as_nobody(spool, drop) == b"dropped"
    reply_file = spool / f"nobody-1{REPLY}"
    wait_for(reply_file.exists, "the reply")
    reply = json.loads(reply_file.read_text())
    assert reply["ok"] is False and "permission denied: uid 65534" in reply["error"]
    assert reply_file.stat().st_uid == NOBODY  # theirs to read and remove
    assert not (spool / "nobody-1").exists()
    last = rows(runlog.db, "t-spoolperm")[-1]
    assert (last["trigger"], last["outcome"], last["actor_uid"]) == ("pause", "rejected", NOBODY)
    assert (last["actor_pid"], last["actor_transport"]) == (None, "spool")
    assert status(runlog, "t-spoolperm") == "running"


BAD = [
    # (request bytes, trigger recorded, words the error must contain)
    (b"not json", "request", "malformed request: Expecting value"),
    (b"[1, 2]", "request", "expected a JSON object"),
    (b'{"signal": 9}', "request", 'no "op" field'),
    (b'{"op": 5}', "request", 'field "op" must be a string, not an integer'),
    (b'{"op": "fly"}', "fly", "unknown request 'fly'"),
    (b'{"op": "kill", "signal": true}', "kill", "field 'signal' must be a signal number"),
    (b'{"op": "kill", "sig": 9}', "kill", "request kill: unknown field 'sig'"),
    (b'{"op": "console_size", "rows": 24}', "console_size", "missing field 'cols'"),
    (b'{"op": "delete", "force": "yes"}', "delete", "field 'force' must be a boolean"),
    (b"\xff\xfe{}", "request", "not UTF-8"),
    (b"", "request", "malformed request: empty"),
    (b"[" * 100_000, "request", "request too large"),
    (b"[" * 30_000, "request", "nested too deep"),
    (json.dumps({"op": "state", "x": "y" * MAX_REQUEST}).encode(), "request", "too large"),
]


@pytest.mark.parametrize("transport", ["socket", "spool"])
def test_malformed_oversized_and_unknown_requests_are_rejected(
    runlog: Any, running: Callable[[str], Path], transport: str
) -> None:
    running("t-bad")
    statedir = runlog.root / "t-bad"
    before = len(rows(runlog.db, "t-bad"))
    with SpoolClient(str(statedir / "requests")) as spool:
        for data, _trigger, words in BAD:
            if transport == "socket":
                raw = control.call_raw(str(statedir / "control.sock"), data, timeout=10)
            else:
                raw = spool.call(data, timeout=10)
            reply = json.loads(raw)
            assert reply["ok"] is False, data[:40]
            assert words in reply["error"], (data[:40], reply["error"])
    events = rows(runlog.db, "t-bad")[before:]
    assert [(e["trigger"], e["outcome"], e["actor_transport"]) for e in events] == [
        (trigger, "rejected", transport) for _data, trigger, _words in BAD
    ]
    assert all(e["payload"]["refused"] == "malformed" for e in events)
    assert events[-1]["payload"]["size"] > MAX_REQUEST  # the size, not the request
    assert len(json.dumps(events[-1]["payload"])) < 2048
    # Still serving, still running.
    assert control.call(str(statedir / "control.sock"), {"op": "state"})["status"] == "running"


def test_a_request_spooled_before_the_monitor_serves_is_acted_on(
    runlog: Any, bundle: Bundle, tmp_path: Path, popen: Any
) -> None:
    hook = tmp_path / "hold.sh"
    hook.write_text(
        f"#!/bin/sh\ntouch {tmp_path}/held\nwhile [ ! -e {tmp_path}/go ]; do sleep 0.02; done\n"
    )
    hook.chmod(0o755)

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"createRuntime": [{"path": str(hook), "env": ["PATH=/usr/bin:/bin"]}]}

    b = bundle(["sh", "-c", LOOP], edit)
    creating = popen("create", "t-early", "-b", str(b), out=tmp_path / "create.out")
    wait_for((tmp_path / "held").exists, "the createRuntime hook")
    # The monitor is inside create: it does not serve yet. Drop a request.
    spool = runlog.root / "t-early" / "requests"
    assert not (runlog.root / "t-early" / "state.json").exists()
    (spool / ".early.tmp").write_text('{"op": "start"}')
    os.rename(spool / ".early.tmp", spool / "early")
    time.sleep(0.2)
    assert (spool / "early").exists()  # nobody has taken it
    (tmp_path / "go").touch()
    assert creating.wait(timeout=20) == 0
    wait_for((spool / f"early{REPLY}").exists, "the reply")
    reply = json.loads((spool / f"early{REPLY}").read_text())
    assert (reply["ok"], reply["status"]) == (True, "running")
    assert brief(runlog.db, "t-early") == [
        ("create", "created", "ok", "cli"),
        ("start", "running", "ok", "spool"),
    ]
    runlog("delete", "--force", "t-early", check=True)


def test_a_spool_that_cannot_be_watched_is_looked_at(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    """No watch on the spool (here: it is elsewhere when the watcher starts):
    the monitor looks at it every second instead, and a
    spooled delete still ends the monitor - here without the client's
    wake-up over control.sock."""
    spool = runlog.root / "t-poll" / "requests"
    hook = tmp_path / "away.sh"
    hook.write_text(f"#!/bin/sh\nmv {spool} {spool}.away\n")
    hook.chmod(0o755)

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"createRuntime": [{"path": str(hook), "env": ["PATH=/usr/bin:/bin"]}]}

    runlog("create", "t-poll", "-b", str(bundle(["sh", "-c", LOOP], edit)), check=True)
    monitor = runtime_info(runlog, "t-poll")["monitor_pid"]
    assert watching(monitor) == (1, 1)
    wait_for(lambda: watches(monitor) == 1, "the freezer's watch")  # the spool's failed
    os.rename(f"{spool}.away", spool)
    with SpoolClient(str(spool)) as client_:
        client_.poke = lambda: False  # type: ignore[method-assign]
        reply = json.loads(client_.call(b'{"op": "start"}', timeout=10))
        assert (reply["ok"], reply["status"]) == (True, "running")
        reply = json.loads(client_.call(b'{"op": "delete", "force": true}', timeout=10))
    assert reply == {"ok": True, "status": "deleted"}
    wait_for(lambda: not Path(f"/proc/{monitor}").exists(), "the monitor to end")
    assert [t for t, _d, _o, _a in brief(runlog.db, "t-poll")] == [
        "create",
        "start",
        "kill",
        "exit",
        "delete",
    ]


def _freezer_state(runlog: Any, cid: str) -> Path:
    paths = runtime_info(runlog, cid)["cgroup_paths"]
    if "freezer" in paths:
        return Path(paths["freezer"]) / "freezer.state"
    return Path(paths["unified"]) / "cgroup.freeze"


def freeze_and_thaw_by_hand(runlog: Any, cid: str) -> None:
    """Write the container's freezer; wait for the monitor to notice each change."""
    freezer = _freezer_state(runlog, cid)
    frozen, thawed = ("FROZEN", "THAWED") if freezer.name == "freezer.state" else ("1", "0")
    freezer.write_text(frozen)
    wait_for(lambda: status(runlog, cid) == "paused", "the monitor to notice the freeze")
    freezer.write_text(thawed)
    wait_for(lambda: status(runlog, cid) == "running", "the monitor to notice the thaw")


def test_a_freezer_written_by_hand_is_recorded_as_external(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-ext")
    monitor = runtime_info(runlog, "t-ext")["monitor_pid"]
    # Only inotify tells the monitor (nothing polls); no thread waits for it.
    assert watching(monitor) == (1, 1)
    wait_for(lambda: watches(monitor) == 2, "the watches")
    freeze_and_thaw_by_hand(runlog, "t-ext")
    # runlog's own pause and resume write the same file: not external.
    runlog("pause", "t-ext", check=True)
    runlog("resume", "t-ext", check=True)
    time.sleep(0.2)
    events = changes(runlog.db, "t-ext")
    assert [(e["trigger"], e["dest"], e["actor_transport"]) for e in events[2:]] == [
        ("pause", "paused", "external"),
        ("resume", "running", "external"),
        ("pause", "paused", "socket"),
        ("resume", "running", "socket"),
    ]
    assert events[2]["payload"]["request"] == {"noticed": "freezer"}
    assert events[2]["actor_uid"] is None


@pytest.fixture
def no_inotify_left() -> Iterator[int]:
    """Every inotify instance root may still have, held by the test: what a
    monitor meets past the kernel's default of 128 (fs.inotify.max_user_instances,
    per user). Yields how many were taken; gives them back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held: list[Watcher] = []
    try:
        while True:
            try:
                held.append(Watcher())
            except OSError as err:
                assert err.errno == errno.EMFILE, err
                break
        if len(os.listdir("/proc/self/fd")) >= hard - 1:
            pytest.skip("the descriptor limit comes before the inotify instance limit")
        yield len(held)
    finally:
        for watcher in held:
            watcher.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_every_duty_is_served_without_an_inotify_instance(
    runlog: Any, bundle: Bundle, tmp_path: Path, popen: Any, no_inotify_left: int
) -> None:
    """Past the inotify instance limit: create says what it gives up (on
    stderr and in its event); the spool client wakes the monitor over
    control.sock and needs no instance itself; a hand-written freezer is
    noticed at the next look; ``events --follow`` looks every so often;
    every request is answered."""
    b = bundle(["sh", "-c", LOOP])
    made = runlog("create", "t-noin", "-b", str(b), check=True)
    given_up = (
        "the request spool and the freezer looked at every 1s, not watched "
        "(inotify: Too many open files; see fs.inotify.max_user_instances)"
    )
    assert made.stderr == f"runlog: container t-noin: {given_up}\n"
    assert rows(runlog.db, "t-noin")[0]["payload"]["request"]["given_up"] == given_up
    monitor = runtime_info(runlog, "t-noin")["monitor_pid"]
    assert watching(monitor) == (1, 0)
    out = tmp_path / "follow.out"
    follower = popen("events", "--follow", "t-noin", out=out)
    spool = Transport(runlog, "spool")
    took = time.monotonic()
    code, reply = spool("t-noin", {"op": "start"})
    assert (code, reply["status"]) == (0, "running")
    assert time.monotonic() - took < 1.0  # woken, not found at the next look
    wait_for((b / "rootfs" / "ready").exists, "the trap")
    freeze_and_thaw_by_hand(runlog, "t-noin")
    assert Transport(runlog, "socket")("t-noin", {"op": "state"})[1]["status"] == "running"
    assert spool("t-noin", {"op": "delete", "force": True}) == (
        0,
        {"ok": True, "status": "deleted"},
    )
    assert follower.wait(timeout=10) == 0
    followed = [json.loads(line)["trigger"] for line in out.read_text().splitlines()]
    assert [t for t in followed if t != "state"] == [
        t for t, _d, _o, _a in brief(runlog.db, "t-noin")
    ]
    assert [t for t, _d, _o, _a in brief(runlog.db, "t-noin")] == PAUSED_ONCE


def test_state_answers_from_the_file_when_the_monitor_does_not(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-busy")
    monitor = runtime_info(runlog, "t-busy")["monitor_pid"]
    os.kill(monitor, signal.SIGSTOP)
    try:
        out = runlog("state", "t-busy")  # waits STATE_TIMEOUT for the monitor
    finally:
        os.kill(monitor, signal.SIGCONT)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["id"], doc["status"]) == ("t-busy", "running")
    assert doc["pid"] == runtime_info(runlog, "t-busy")["init_pid"]
    assert status(runlog, "t-busy") == "running"  # and the monitor serves again


def test_state_answers_while_the_log_is_locked_and_is_recorded_after(
    runlog: Any, running: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLOG_RECORD_QUERIES", "1")  # queries are events only when asked
    # A query is answered first and recorded right after, with the time it
    # was asked: a scheduler's poll does not wait for the log (here held by
    # another writer, as an auditor's long transaction would hold it).
    running("t-lock")
    holder = sqlite3.connect(runlog.db, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        before = time.time_ns()
        out = runlog("state", "t-lock")
        answered = time.time_ns()
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["status"] == "running"
        # From the monitor: not state.json's answer after STATE_TIMEOUT.
        assert answered - before < STATE_TIMEOUT * 1e9 / 2
        queries = [r for r in rows(runlog.db, "t-lock") if r["trigger"] == "state"]
        assert queries == []  # not in the log yet: its writer waits for the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    def asked() -> list[int]:
        with sqlite3.connect(runlog.db) as conn:
            found = conn.execute(
                "SELECT time_ns FROM events WHERE container_id = ? AND \"trigger\" = 'state'",
                ("t-lock",),
            ).fetchall()
        return [int(t) for (t,) in found]

    wait_for(lambda: asked() != [], "the query's event")
    (at,) = asked()
    assert before <= at <= answered
    assert status(runlog, "t-lock") == "running"  # and the monitor serves on


def test_a_kill_from_outside_is_recorded_as_external(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-outside")
    pid = json.loads(runlog("state", "t-outside", check=True).stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert runlog("wait", "t-outside").returncode == 137
    last = changes(runlog.db, "t-outside")[-1]
    assert (last["trigger"], last["dest"], last["actor_transport"]) == (
        "exit",
        "stopped",
        "external",
    )
    assert last["payload"]["request"] == {"cause": "a signal runlog did not send", "signal": 9}
    assert last["payload"]["actions"][0]["result"] == {"signal": 9}


def test_the_oom_killer_is_recorded_as_the_cause(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        limit = 16 * 1024 * 1024  # and no swap beyond it
        spec["linux"]["resources"] = {"memory": {"limit": limit, "swap": limit}}

    # busybox tail buffers a line that never ends: the init itself grows.
    runlog("run", "-d", "t-oom", "-b", str(bundle(["tail", "/dev/zero"], edit)), check=True)
    assert runlog("wait", "t-oom", timeout=60).returncode == 137
    last = changes(runlog.db, "t-oom")[-1]
    assert (last["trigger"], last["actor_transport"]) == ("exit", "external")
    assert last["payload"]["request"] == {"cause": "oom", "signal": 9}
    runlog("delete", "t-oom", check=True)


def test_wait_after_the_monitor_is_killed_says_the_status_is_lost(
    runlog: Any, running: Callable[[str], Path]
) -> None:
    running("t-lostwait")
    os.kill(runtime_info(runlog, "t-lostwait")["monitor_pid"], signal.SIGKILL)
    time.sleep(0.2)
    out = runlog("wait", "t-lostwait")
    assert out.returncode == 1 and "exit status lost" in out.stderr
    assert brief(runlog.db, "t-lostwait")[-1] == ("wait", None, "rejected", "cli")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_events_follow_streams_until_delete(
    runlog: Any, bundle: Bundle, tmp_path: Path, popen: Any
) -> None:
    b = bundle(["sh", "-c", LOOP])
    runlog("create", "t-follow", "-b", str(b), check=True)
    out = tmp_path / "follow.out"
    follower = popen("events", "--follow", "t-follow", out=out)
    wait_for(lambda: out.read_text().count("\n") == 1, "the history so far")
    time.sleep(0.3)
    idle = _cpu_ticks(follower.pid)
    time.sleep(0.5)
    assert _cpu_ticks(follower.pid) - idle <= 1  # asleep, not polling
    runlog("start", "t-follow", check=True)
    wait_for((b / "rootfs" / "ready").exists, "the trap")
    for argv in (("pause",), ("resume",), ("kill", "USR1")):
        runlog(argv[0], "t-follow", *argv[1:], check=True)
    wait_for(lambda: '"trigger":"exit"' in out.read_text(), "the exit, live")
    assert follower.poll() is None
    runlog("delete", "t-follow", check=True)
    assert follower.wait(timeout=10) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["trigger"] for e in lines] == PAUSED_ONCE
    assert [e["seq"] for e in lines] == list(range(1, 8))


def _invalid(data: bytes) -> bool:
    line, newline, _rest = data.partition(b"\n")
    if (line if newline else data) == wire.POKE:
        return False  # a spool client's wake-up, answered ok (engine.runtime.monitor.server)
    try:
        decode(data)
    except RequestError:
        return True
    return False


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
_OBJECTS = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["kill", "delete", "console_size", "state", "pause"])
        | st.text(max_size=5)
    },
    optional={"signal": _JSON, "all": _JSON, "force": _JSON, "rows": _JSON, "x": _JSON},
).map(lambda d: json.dumps(d).encode())


def test_no_request_takes_the_monitor_down(runlog: Any, running: Callable[[str], Path]) -> None:
    running("t-fuzz")
    path = str(runlog.root / "t-fuzz" / "control.sock")
    monitor = runtime_info(runlog, "t-fuzz")["monitor_pid"]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=200) | _OBJECTS)
    def refused(data: bytes) -> None:
        if not _invalid(data):
            return  # valid requests act on the container; the decoder's tests cover them
        reply = json.loads(control.call_raw(path, data, timeout=10))
        assert reply["ok"] is False and reply["error"]

    refused()
    assert Path(f"/proc/{monitor}").exists()
    assert control.call(path, {"op": "state"})["status"] == "running"


def test_hooks_fork_while_the_monitor_watches(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    """The monitor forks hook processes while its inotify instance is open
    (close-on-exec: no hook holds it): every hook still runs, and in the
    order of its points."""
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$1" >> {log}\n')
    hook.chmod(0o755)

    def edit(spec: dict[str, Any]) -> None:
        spec["hooks"] = {
            point: [{"path": str(hook), "args": ["hook.sh", point]}]
            for point in ("poststart", "poststop")
        }

    for n in range(4):
        cid = f"t-fork{n}"
        runlog("create", cid, "-b", str(bundle(["true"], edit)), check=True)
        monitor = runtime_info(runlog, cid)["monitor_pid"]
        assert watching(monitor) == (1, 1)
        runlog("start", cid, check=True, timeout=20)
        assert runlog("wait", cid, timeout=20).returncode == 0
        runlog("delete", cid, check=True, timeout=20)
    assert log.read_text().split() == ["poststart", "poststop"] * 4


def test_a_control_socket_path_too_long_for_an_address_still_serves(
    runlog: Any, bundle: Bundle
) -> None:
    # podman's ids are 64 characters; under a long --root, control.sock's
    # path outgrows a socket address (107 bytes).
    cid = "c" * 64
    path = runlog.root / cid / "control.sock"
    assert len(str(path)) > 107
    b = bundle(["sleep", "30"])
    runlog("create", "-b", str(b), cid, check=True)
    assert path.is_socket()
    assert runlog.state(cid)["status"] == "created"
    runlog("start", cid, check=True)
    runlog("pause", cid, check=True)
    runlog("resume", cid, check=True)
    runlog("delete", "--force", cid, check=True)
    triggers = [t for t, _dest, outcome in runlog.events(cid) if outcome == "ok"]
    assert triggers == ["create", "start", "pause", "resume", "kill", "exit", "delete"]


def test_a_create_the_monitor_cannot_serve_is_undone_and_recorded(
    runlog: Any, bundle: Bundle
) -> None:
    # A fault after the create transition (here the loop's construction,
    # made to fail): the init and its cgroup go, the undoing is in the log.
    b = bundle(["sleep", "30"])
    script = (
        "import sys\n"
        "import engine.runtime.monitor.main as monitor\n"
        "def broken(*args, **kwargs):\n"
        "    raise OSError(28, 'No space left on device')\n"
        "monitor._server = broken\n"
        "from engine.cli import main\n"
        f"sys.exit(main(['--root', {str(runlog.root)!r}, '--db', {str(runlog.db)!r}, "
        f"'create', '-b', {str(b)!r}, 'undone']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "container undone: cannot serve it: OSError: [Errno 28] No space left on device"
    )
    assert not (runlog.root / "undone").exists()
    events = runlog.events("undone")
    assert [(t, outcome) for t, _dest, outcome in events] == [
        ("create", "ok"),
        ("kill", "ok"),
        ("exit", "ok"),
        ("delete", "ok"),
    ]


#: RUNLOG_SCALE=1000 runs the 1,000 running containers the issue asks for as root.
SCALE = int(os.environ.get("RUNLOG_SCALE", "256"))


def test_every_duty_of_256_running_containers(
    runlog: Any, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """256 running containers at the kernel's default limits: every one
    answers a spooled request and notices a freezer written by hand (by
    inotify, or at its next look past the instance limit), and once its
    monitor rests (engine.runtime.monitor.lean), a thaw written by hand
    too. Prints memory and counts per monitor, at rest."""
    monkeypatch.delenv("RUNLOG_MONITOR_LEAN", raising=False)  # resting as by default
    b = bundle(["sleep", "100000"])
    ids = [f"t-s{n}" for n in range(SCALE)]
    try:
        for cid in ids:
            runlog("run", "-d", cid, "-b", str(b), check=True)
        monitors = [runtime_info(runlog, cid)["monitor_pid"] for cid in ids]
        spool = Transport(runlog, "spool")
        for cid in ids:
            assert spool(cid, {"op": "state"})[1]["status"] == "running"
        for cid in ids:
            freezer = _freezer_state(runlog, cid)
            freezer.write_text("FROZEN" if freezer.name == "freezer.state" else "1")
        wait_for(
            lambda: all(status(runlog, cid) == "paused" for cid in ids),
            "every monitor to notice its freeze",
            timeout=60,
        )
        wait_for(lambda: all(map(resting, monitors)), "every monitor to rest", timeout=120)
        print(_scale_report(runlog, ids, monitors))
        for cid in ids:
            freezer = _freezer_state(runlog, cid)
            freezer.write_text("THAWED" if freezer.name == "freezer.state" else "0")
        wait_for(
            lambda: all(status(runlog, cid) == "running" for cid in ids),
            "every resting monitor to notice its thaw",
            timeout=60,
        )
    finally:
        for cid in ids:
            runlog("delete", "--force", cid, timeout=60)


def _scale_report(runlog: Any, ids: list[str], monitors: list[int]) -> str:
    """Memory and counts per monitor, what was given up, and the limits in force."""
    smaps = [_smaps(pid) for pid in monitors]
    counts = [watching(pid) for pid in monitors]
    fds = [len(os.listdir(f"/proc/{pid}/fd")) for pid in monitors]

    def mean(key: str) -> str:
        return f"{sum(m[key] for m in smaps) / len(smaps) / 1024:.2f}"

    given_up = sum(1 for cid in ids if "given_up" in rows(runlog.db, cid)[0]["payload"]["request"])
    later = sum(1 for cid in ids for r in rows(runlog.db, cid) if r["trigger"] == "watch")
    limits = {
        name: Path(f"/proc/sys/fs/inotify/{name}").read_text().strip()
        for name in ("max_user_instances", "max_user_watches")
    }
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    return (
        f"\n{len(ids)} monitors ({sum(map(resting, monitors))} resting), per monitor: "
        f"PSS {mean('Pss')} MiB, "
        f"private {mean('Private_Dirty')} MiB, RSS {mean('Rss')} MiB; "
        f"threads {sorted({t for t, _i in counts})}; inotify instances "
        f"{sorted({i for _t, i in counts})} ({sum(i for _t, i in counts)} in all); "
        f"fds {min(fds)}-{max(fds)}\n"
        f"given up at create: {given_up} (looked at every second instead); "
        f"watches refused later: {later}\n"
        f"limits: fs.inotify {limits}, RLIMIT_NOFILE {nofile}, RLIMIT_NPROC {nproc}, "
        f"pids.max {_pids_max()}"
    )


def _pids_max() -> str:
    """The pids limit of the cgroup the tests run in (v2, else v1's)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _n, controllers, path = line.split(":", 2)
        base = "/sys/fs/cgroup" if controllers == "" else "/sys/fs/cgroup/pids"
        if controllers in ("", "pids"):
            limit = Path(f"{base}{path}/pids.max")
            if limit.exists():
                return limit.read_text().strip()
    return "?"


def _smaps(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        found[key] = int(rest.split()[0])
    return found


def test_a_watch_refused_later_is_said_and_looked_at(
    runlog: Any, bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch the monitor's instance refuses once create has reported (the
    spool's here, as at fs.inotify.max_user_watches) is no silent fallback:
    the container's events and runlog's --log say what is given up, and a
    request dropped into the spool by hand, waking no one, is served at the
    next look."""
    monkeypatch.setenv("RUNLOG_FAULT", "watch:spool:fail")
    log = tmp_path / "runlog.log"
    b = bundle(["sh", "-c", LOOP])
    made = runlog("--log", str(log), "create", "t-watch", "-b", str(b), check=True)
    assert made.stderr == ""  # create had its instance: nothing given up then
    given_up = (
        "the request spool looked at every 1s, not watched "
        "(inotify: No space left on device; see fs.inotify.max_user_watches)"
    )

    def said() -> list[dict[str, Any]]:
        return [r for r in rows(runlog.db, "t-watch") if r["trigger"] == "watch"]

    wait_for(lambda: bool(said()), "the watch event")
    [event] = said()
    assert (event["outcome"], event["payload"]["request"]) == ("ok", {"given_up": given_up})
    assert f'level=warning msg="container t-watch: {given_up}"' in log.read_text()
    monitor = runtime_info(runlog, "t-watch")["monitor_pid"]
    assert watching(monitor) == (1, 1)  # its instance stays, for the freezer
    spool = runlog.root / "t-watch" / "requests"
    (spool / ".by-hand.tmp").write_text(json.dumps({"op": "start"}))
    (spool / ".by-hand.tmp").rename(spool / "by-hand")
    took = time.monotonic()
    reply = json.loads(SpoolClient(str(spool)).reply("by-hand", timeout=5))
    assert reply["status"] == "running"
    assert time.monotonic() - took < 2.5  # the look every second found it
    assert status(runlog, "t-watch") == "running"
    runlog("delete", "--force", "t-watch", check=True)
