"""The short way (engine.quick): which command lines it takes, that it reads
them as engine.cli does, and what it answers for each reply a monitor can give."""

from __future__ import annotations

import _socket
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import cli, control, jsonfast, quick
from engine.cmdline import parse
from engine.layout import DEFAULT_ROOT
from engine.oci import signals
from engine.oci.signals import parse_signal

REPO = Path(__file__).resolve().parent.parent
NO_ENV: dict[bytes, bytes] = {}


def _read(argv: list[str], env: dict[bytes, bytes] = NO_ENV) -> tuple[object, ...] | None:
    call = quick.recognize(argv, env)
    if call is None:
        return None
    return (call.root, call.db, call.command, call.container_id, call.force)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["state", "c1"], (DEFAULT_ROOT, "", "state", "c1", False)),
        (["--root", "/r", "state", "c1"], ("/r", "", "state", "c1", False)),
        (["--root=/r", "--db=/d.db", "start", "c1"], ("/r", "/d.db", "start", "c1", False)),
        (["--rootless", "true", "--root", "/r", "pause", "c1"], ("/r", "", "pause", "c1", False)),
        (["--root=", "resume", "c1"], (DEFAULT_ROOT, "", "resume", "c1", False)),
        (["delete", "c1"], (DEFAULT_ROOT, "", "delete", "c1", False)),
        (["delete", "--force", "c1"], (DEFAULT_ROOT, "", "delete", "c1", True)),
        (["delete", "c1", "-f"], (DEFAULT_ROOT, "", "delete", "c1", True)),
        # The README's Slurm recipes give create this; the other calls may have it too.
        (
            ["--cgroup-manager=disabled", "--root=/r", "kill", "c1"],
            ("/r", "", "kill", "c1", False),
        ),
        (["--cgroup-manager", "cgroupfs", "state", "c1"], (DEFAULT_ROOT, "", "state", "c1", False)),
        # Slurm's oci.conf: "runc --rootless=true --root=/run/user/%U/ state %n.%u.%j.%s.%t"
        (
            ["--rootless=true", "--root=/run/user/0/", "state", "n.0.7.0.0"],
            ("/run/user/0/", "", "state", "n.0.7.0.0", False),
        ),
    ],
)
def test_the_usual_calls_are_taken(argv: list[str], expected: tuple[object, ...]) -> None:
    assert _read(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["state"],
        ["state", "-h"],
        ["state", "--help", "c1"],
        ["state", "c1", "c2"],
        ["state", "../c1"],
        ["state", "-"],
        ["state", "--", "c1"],
        ["state", "--force", "c1"],
        ["kill", "c1", "NOSIG"],
        ["kill", "c1", "65"],
        ["kill", "c1", "-9"],
        ["kill", "c1", "--all"],
        ["kill", "-a", "-a", "c1"],
        ["kill", "c1", "TERM", "x"],
        ["kill", "--all=true", "c1"],
        ["create", "c1"],
        ["list"],
        ["--root"],
        ["--root", "/r"],
        ["--log", "/l", "state", "c1"],
        ["--debug", "state", "c1"],
        ["--systemd-cgroup", "state", "c1"],
        ["--cgroup-manager=systemd", "state", "c1"],
        ["--cgroup-manager=none", "state", "c1"],
        ["--cgroup-manager"],
        ["-root", "/r", "state", "c1"],
        ["delete", "-f", "-f", "c1"],
        ["delete", "--force=true", "c1"],
        ["delete", "-f"],
    ],
)
def test_everything_else_goes_to_the_full_command_line(argv: list[str]) -> None:
    assert _read(argv) is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["kill", "c1"], ("c1", 15, False)),
        (["kill", "c1", "9"], ("c1", 9, False)),
        (["kill", "c1", "KILL"], ("c1", 9, False)),
        (["kill", "c1", "sigusr1"], ("c1", 10, False)),
        (["kill", "-a", "c1"], ("c1", 15, True)),
        # Slurm's oci.conf: "runc --rootless=true --root=/run/user/%U/ kill -a %n.%u.%j.%s.%t"
        (["--rootless=true", "--root=/r/", "kill", "--all", "n.0.7.0.0"], ("n.0.7.0.0", 15, True)),
        (["kill", "--all", "c1", "SIGRTMIN+2"], ("c1", 36, True)),
    ],
)
def test_kill_is_taken_with_its_signal_and_all(
    argv: list[str], expected: tuple[object, ...]
) -> None:
    call = quick.recognize(argv, NO_ENV)
    assert call is not None and call.command == "kill"
    assert quick._SIGRTMAX == signals.SIGRTMAX  # numbers are read without the table
    assert (call.container_id, call.signal, call.everyone) == expected


def test_the_environment_gives_the_root_and_a_log_sends_the_call_on() -> None:
    assert _read(["state", "c1"], {b"RUNLOG_ROOT": b"/env"}) == ("/env", "", "state", "c1", False)
    assert _read(["--root", "/r", "state", "c1"], {b"RUNLOG_ROOT": b"/env"})[0] == "/r"  # type: ignore[index]
    assert _read(["state", "c1"], {b"RUNLOG_LOG": b"/l"}) is None


def _full_reading(argv: list[str], env: dict[str, str]) -> tuple[object, ...] | None:
    """What engine.cli makes of ``argv``: the handler it would call, with what."""
    seen: list[tuple[object, ...]] = []

    def handler(target: str) -> Callable[[Any, dict[str, object], list[str]], int]:
        def record(s: Any, flags: dict[str, object], args: list[str]) -> int:
            name = target.rpartition(":")[2]
            if name == "kill":
                # kill's signal as engine.commands.container.kill reads it
                signal = parse_signal(args[1]) if len(args) > 1 else 15
                seen.append((s.root, s.db, name, args[0], signal, bool(flags.get("all"))))
            else:
                seen.append((s.root, s.db, name, args[0], bool(flags.get("force"))))
            return 0

        return record

    real = cli._handler, cli.environ
    cli._handler, cli.environ = handler, lambda: env  # type: ignore[assignment]
    try:
        code = cli.main(argv)
    finally:
        cli._handler, cli.environ = real
    return seen[0] if code == 0 and seen else None


_TOKENS = st.sampled_from(
    [
        "state",
        "start",
        "pause",
        "resume",
        "delete",
        "kill",
        "c1",
        "a.b-c_d+e",
        "..",
        "--root",
        "--root=/r",
        "/r2",
        "--db",
        "--db=/d.db",
        "--rootless",
        "--rootless=false",
        "--force",
        "-f",
        "-a",
        "--all",
        "9",
        "KILL",
        "sigusr1",
        "NOSIG",
        "--debug",
        "--help",
        "--",
        "-",
        "",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_TOKENS, max_size=7))
def test_a_call_taken_is_read_as_engine_cli_reads_it(argv: list[str]) -> None:
    ours = _read(argv)
    if ours is None:
        return
    full = _full_reading(argv, {})
    assert full is not None, f"engine.cli refuses {argv}"
    root, db, command, cid, force = ours
    if command == "kill":
        call = quick.recognize(argv, {})
        assert call is not None
        assert full == (root, db or full[1], command, cid, call.signal, call.everyone)
    else:
        assert full == (root, db or full[1], command, cid, force)


def test_the_global_flags_known_here_are_engine_clis() -> None:
    values = {n for opt in cli.GLOBAL_OPTS if opt.value for n in opt.names}
    switches = {n for opt in cli.GLOBAL_OPTS if not opt.value for n in opt.names}
    assert (values, switches) == (quick.GLOBAL_VALUE_FLAGS, quick.GLOBAL_SWITCHES)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["create", "--bundle", "b", "c1"], "create"),
        # Slurm's oci.conf and podman's calls.
        (["--rootless=true", "--root=/run/user/0/", "create", "--bundle", "b", "c1"], "create"),
        (["--root", "/r", "--log", "/l", "--log-format", "json", "create", "c1"], "create"),
        (["--systemd-cgroup", "run", "c1"], "run"),
        (["-root", "/r", "run", "c1"], "run"),
        (["--root", "create", "state", "c1"], "state"),
        (["state", "create"], "state"),
        (["--nope", "create", "c1"], None),
        (["--", "create"], None),
        (["--root"], None),
        ([], None),
    ],
)
def test_the_command_word_is_read_past_the_global_flags(
    argv: list[str], command: str | None
) -> None:
    assert quick.command_of(argv) == command


@settings(max_examples=600, deadline=None)
@given(st.lists(_TOKENS | st.sampled_from(["create", "run", "--log", "-root", "-h"]), max_size=7))
def test_the_command_word_read_here_is_engine_clis(argv: list[str]) -> None:
    # A create or run seen here forks its monitor before engine.cli has read
    # the line: it must be the command engine.cli finds.
    ours = quick.command_of(argv)
    if ours is None:
        return
    _flags, rest = parse(cli.GLOBAL_OPTS, argv, interleave=False, where="runlog")
    assert rest and rest[0] == ours


# -- answers: a fake monitor on a real socket ---------------------------------------


class FakeMonitor:
    """Serves ``control.sock`` of container ``c1`` under ``root``: each
    connection gets ``answer(request_bytes)`` (``None``: hang up at once)."""

    def __init__(self, root: Path, answer: Callable[[bytes], bytes | None]) -> None:
        self.dir = root / "c1"
        self.dir.mkdir(parents=True)
        self.requests: list[bytes] = []
        self.answer = answer
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.bind(str(self.dir / "control.sock"))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                fd, _ = self.sock._accept()  # type: ignore[attr-defined]
            except OSError:
                return
            conn = _socket.socket(fileno=fd)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.requests.append(data)
            reply = self.answer(data)
            if reply is not None:
                conn.sendall(reply)
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(_socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Callable[[Callable[[bytes], bytes | None]], FakeMonitor]]:
    made: list[FakeMonitor] = []

    def make(answer: Callable[[bytes], bytes | None]) -> FakeMonitor:
        made.append(FakeMonitor(tmp_path / "root", answer))
        return made[-1]

    yield make
    for m in made:
        m.close()


def _call(tmp_path: Path, command: str, force: bool = False) -> quick.Call:
    return quick.Call(str(tmp_path / "root"), "", command, "c1", force)


# The monitor's own encoder (compact: read without a parser, engine.control)
# and another one (parsed): the same answer.
ENCODERS = [jsonfast.dumps, json.dumps]


@pytest.mark.parametrize("encode", ENCODERS)
def test_state_prints_the_text_of_the_reply(
    tmp_path: Path, monitor: Any, capsysbinary: pytest.CaptureFixture[bytes], encode: Any
) -> None:
    text = '{\n  "ociVersion": "1.2.1",\n  "id": "c1",\n  "annotations": {"a": "\\"text\\": é"}\n}'
    # As the dispatcher answers: "ok" first, "text" last; a "text" inside too.
    reply = {"ok": True, "status": "created", "state": {"text": "x"}, "text": text}
    fake = monitor(lambda _r: encode(reply).encode() + b"\n")
    assert _call(tmp_path, "state").run() == 0
    assert capsysbinary.readouterr().out == text.encode() + b"\n"
    assert fake.requests == [b'{"op":"state"}\n']


def test_the_usual_replies_are_read_without_a_parser() -> None:
    state = {"ok": True, "status": "running", "state": {"id": "c1"}, "text": '{"id": "c1"}'}
    assert control.state_text_of(jsonfast.dumps(state).encode() + b"\n") == b'{"id": "c1"}'
    assert control.is_ok(jsonfast.dumps({"ok": True, "status": "deleted"}).encode())
    # Any other shape is left to the parser.
    for other in (
        {"ok": False, "error": "container not running", "text": "x"},
        {"ok": True, "text": "x", "status": "running"},  # "text" not last
        {"ok": True, "status": "running"},  # none
        {"text": "x", "ok": True},  # "ok" not first
    ):
        assert control.state_text_of(jsonfast.dumps(other).encode()) is None
    assert control.state_text_of(json.dumps(state).encode()) is None  # not compact
    assert not control.is_ok(jsonfast.dumps({"ok": False, "error": "x"}).encode())
    assert not control.is_ok(b"garbage")


@given(st.text())
def test_a_json_string_reads_as_the_scanner_reads_it(text: str) -> None:
    for encoded in (jsonfast.dumps(text), json.dumps(text, ensure_ascii=False)):
        assert control.json_string(encoded[1:-1]) == text


@given(st.text(alphabet=st.sampled_from('\\"/bfnrtu0123456789abcdefABCDEF xé\n\x01')))
def test_a_string_body_the_scanner_refuses_is_refused(body: str) -> None:
    try:
        expected: str | None = json.loads(f'"{body}"')
    except ValueError:
        expected = None
    assert control.json_string(body) == expected


def test_the_requests_are_engine_clis(tmp_path: Path, monitor: Any) -> None:
    fake = monitor(lambda _r: b'{"ok": true}\n')
    for command in ("start", "pause", "resume"):
        assert _call(tmp_path, command).run() == 0
    assert _call(tmp_path, "delete", force=True).run() == 0
    kill = quick.Call(str(tmp_path / "root"), "", "kill", "c1", signal=9, everyone=True)
    assert kill.run() == 0
    assert [json.loads(r) for r in fake.requests] == [
        {"op": "start"},
        {"op": "pause"},
        {"op": "resume"},
        {"op": "delete", "force": True},
        {"op": "kill", "signal": 9, "all": True},
    ]


def test_kill_sends_what_engine_cli_sends(tmp_path: Path, monitor: Any) -> None:
    from engine.commands import container
    from engine.settings import Settings

    fake = monitor(lambda _r: b'{"ok": true}\n')
    settings = Settings.from_flags({"root": str(tmp_path / "root")}, {})
    for args, flags in ((["c1"], {}), (["c1", "KILL"], {"all": True})):
        container.kill(settings, flags, args)
        argv = ["kill", *(["-a"] if flags else []), *args]
        call = quick.recognize(["--root", str(tmp_path / "root"), *argv], NO_ENV)
        assert call is not None
        assert call.run() == 0
    full_term, quick_term, full_kill, quick_kill = fake.requests
    assert (
        json.loads(full_term)
        == json.loads(quick_term)
        == {"op": "kill", "signal": 15, "all": False}
    )
    assert (
        json.loads(full_kill) == json.loads(quick_kill) == {"op": "kill", "signal": 9, "all": True}
    )


def test_a_refusal_is_printed_with_its_exit_code(
    tmp_path: Path, monitor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monitor(lambda _r: b'{"ok": false, "error": "container not running", "exit_code": 1}\n')
    assert _call(tmp_path, "pause").run() == 1
    assert capsys.readouterr().err == "container not running\n"


def test_a_reply_that_is_not_json_is_an_error(
    tmp_path: Path, monitor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monitor(lambda _r: b"garbage\n")
    assert _call(tmp_path, "start").run() == 1
    assert "the monitor's reply is not JSON" in capsys.readouterr().err


def test_no_answer_goes_to_the_full_path(tmp_path: Path, monitor: Any) -> None:
    fake = monitor(lambda _r: None)
    assert _call(tmp_path, "start").run() is None
    assert len(fake.requests) == 1


def test_nobody_listening_goes_to_the_full_path_without_a_request(tmp_path: Path) -> None:
    (tmp_path / "root" / "c1").mkdir(parents=True)
    assert _call(tmp_path, "state").run() is None  # no control.sock
    assert _call(tmp_path / "elsewhere", "delete").run() is None  # no state directory


@pytest.mark.parametrize("encode", ENCODERS)
def test_delete_waits_for_the_monitor_to_exit(tmp_path: Path, monitor: Any, encode: Any) -> None:
    # The "monitor" of runtime.json is a process that exits after the reply.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    assert proc.stdin is not None
    stdin = proc.stdin

    def answer(_r: bytes) -> bytes:
        stdin.close()  # the process ends now, after this reply
        return b'{"ok": true, "status": "deleted"}\n'

    monitor(answer)
    # runtime.json as the monitor writes it (read without a parser) or not.
    runtime = {"monitor_pid": proc.pid, "monitor_start": 1}
    (tmp_path / "root" / "c1" / "runtime.json").write_text(encode(runtime))
    assert _call(tmp_path, "delete").run() == 0
    # Exited before run() returned (a Python process takes milliseconds to).
    assert proc.poll() == 0
