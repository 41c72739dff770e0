"""The lean process (engine.runtime.monitor.lean) on its own, without a
container: what it answers itself, what wakes the monitor, and a monitor
that cannot be woken ending with a word in runlog's --log."""

from __future__ import annotations

import _socket
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import control
from engine.errors import MonitorGone
from engine.runtime.monitor import handover

REPO = Path(__file__).resolve().parents[1]
STATE_REPLY = '{"ok":true,"status":"running","state":{"id":"c"},"text":"{}"}\n'


class LeanProcess:
    def __init__(self, proc: subprocess.Popen[bytes], sock: str, log: Path) -> None:
        self.proc = proc
        self.sock = sock
        self.log = log


@pytest.fixture
def lean_process(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(**changes: Any) -> LeanProcess:
        path = str(tmp_path / "control.sock")
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        (tmp_path / "requests").mkdir(exist_ok=True)
        log = tmp_path / "runlog.log"
        header: dict[str, Any] = {
            "path": sys.path,
            "id": "c",
            "runtime_log": [str(log), "text"],
            "sock": listener.fileno(),
            "pidfd": None,
            "watcher": None,
            "init_pid": None,
            "owner": os.getuid(),
            "state_reply": STATE_REPLY,
            "wait_reply": None,
            "record_queries": False,
            "spool": str(tmp_path / "requests"),
            "freezer": {},
            "poll": 0.05,
            "waiters": [],
            "wake_on": [],
            "retry": None,
            **changes,
        }
        data = json.dumps(header).encode()
        memfd = os.memfd_create("test", 0)
        os.write(memfd, len(data).to_bytes(8, "little") + data + b"not a pickle")
        boot = handover._BOOT
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", boot, str(REPO), str(memfd)],
            pass_fds=(listener.fileno(), memfd),
        )
        listener.close()
        os.close(memfd)
        started.append(proc)
        return LeanProcess(proc, path, log)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_lean_process_answers_state_and_the_spools_wakeup(lean_process: Any) -> None:
    proc = lean_process()
    for _ in range(3):
        raw = control.call_raw(proc.sock, b'{"op": "state"}\n', timeout=10)
        assert raw.decode() == STATE_REPLY
    assert control.call_raw(proc.sock, b"spool\n", timeout=10) == b'{"ok":true}\n'
    assert proc.proc.poll() is None
    # Its own memory: the interpreter and little else.
    private = 0
    for line in Path(f"/proc/{proc.proc.pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private += int(line.split()[1])
    assert private < 4096


@pytest.mark.parametrize(
    "request_",
    [b'{"op": "start"}\n', b'{"op": "state", "x": 1}\n', b"not json\n", b'{"op": "wait"}\n'],
)
def test_anything_else_wakes_the_monitor(lean_process: Any, request_: bytes) -> None:
    """Here the monitor cannot be rebuilt (no pickle in the memfd): it
    ends, saying so in runlog's --log, and its client sees the connection
    close unanswered."""
    proc = lean_process()
    with pytest.raises(MonitorGone):
        control.call_raw(proc.sock, request_, timeout=10)
    assert proc.proc.wait(timeout=10) != 0
    text = proc.log.read_text()
    assert "container c: its monitor ends: woken (a request)" in text, text


def test_a_spooled_request_wakes_the_monitor(lean_process: Any, tmp_path: Path) -> None:
    proc = lean_process()
    time.sleep(0.1)
    assert proc.proc.poll() is None
    (tmp_path / "requests" / "r1").write_text('{"op": "state"}')
    assert proc.proc.wait(timeout=10) != 0
    assert "woken (a spooled request)" in proc.log.read_text()


def test_events_in_the_journal_wake_the_monitor_to_write_them(lean_process: Any) -> None:
    """A monitor resting with events in its journal (the log refused them)
    wakes after ``retry`` seconds to write them into the log; not before."""
    proc = lean_process(retry=0.5)
    time.sleep(0.25)
    assert proc.proc.poll() is None
    assert proc.proc.wait(timeout=10) != 0
    assert "woken (the journal)" in proc.log.read_text()


def test_the_container_and_the_machine_survive_the_handover(tmp_path: Path) -> None:
    """What goes through the memfd comes back equal: the configuration as
    create read it (read-only mappings included), the cgroup resources and
    paths, the machine definition in force."""
    import io

    from engine.bundles import make_busybox_bundle
    from engine.machine.definition import load, resolve
    from engine.oci.config import load_bundle
    from engine.runtime.monitor.container import Container
    from engine.runtime.shared.statedir import StateDir

    def edit(spec: dict[str, Any]) -> None:
        spec["annotations"] = {"org.example": "kept"}
        spec["linux"]["resources"] = {"memory": {"limit": 1 << 26}}

    bundle = make_busybox_bundle(str(tmp_path / "b"), ["sleep", "1"], edit=edit)
    container = Container(StateDir(str(tmp_path / "root"), "c"), load_bundle(bundle))
    definition = load(resolve(None, {}))
    keep: list[int] = []
    buffer = io.BytesIO()
    handover._Pickler(buffer, keep).dump({"container": container, "definition": definition})
    back = handover._Unpickler(io.BytesIO(buffer.getvalue()), {}).load()
    assert back["container"].config == container.config
    assert dict(back["container"].config.annotations) == {"org.example": "kept"}
    assert back["container"].resources == container.resources
    assert back["container"].manager.paths == container.manager.paths
    assert back["definition"].digest == definition.digest
    assert keep == []  # no socket in it: nothing to keep open
