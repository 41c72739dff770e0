"""The control protocol's wire format (engine.wire): the monitor's dispatcher
answers every op in it, with a stand-in service and container (no root);
the real round trip is in tests/runtime/test_runtime_control.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from engine import control, jsonfast, wire
from engine.errors import RequestFailed, TransitionRejected
from engine.runtime.monitor.dispatch import Dispatcher
from engine.runtime.monitor.requests import decode
from engine.status import Actor, Status, Transport

OWNER = 1000
ROOT = Actor(0, 1, Transport.SOCKET)
STATE_TEXT = b'{\n  "ociVersion": "1.0.2",\n  "id": "c1",\n  "status": "created"\n}'


class FakeContainer:
    def __init__(self) -> None:
        self.id = "c1"
        self.owner = OWNER
        self.status = Status.CREATED
        self.state: dict[str, Any] = {"ociVersion": "1.0.2", "id": "c1", "status": "created"}
        self.state_text = STATE_TEXT
        self.exit: dict[str, Any] | None = None
        self.pid = 42
        self.manager = SimpleNamespace(
            paths={},
            freezer_state=lambda: "thawed",
            kill_all=lambda: 0,
            lacks=lambda trigger, resources: None,  # not rootless: lacks nothing
        )

    def reap(self, block: bool) -> bool:
        return False


MOVES = {"start": Status.RUNNING, "pause": Status.PAUSED, "resume": Status.RUNNING}


class FakeService:
    """The machine's answers, as far as the replies need them."""

    def __init__(self, container: FakeContainer) -> None:
        self.container = container
        self.lifecycle = SimpleNamespace(may=lambda status, trigger: True)
        self.journal = None
        self.refused: list[str] = []

    def request(self, cid: str, trigger: str, actor: Actor, args: dict[str, Any]) -> Any:
        if trigger == "pause" and self.container.status != Status.RUNNING:
            raise TransitionRejected(cid, trigger, self.container.status, "container not running")
        if trigger in MOVES:
            self.container.status = MOVES[trigger]
            self.container.state["status"] = self.container.status
        result = {"memory": {"limit": 1}} if trigger == "update" else None
        return SimpleNamespace(payload={"actions": [{"result": result}]})

    def refuse(self, cid: str, trigger: str, *args: Any, **kwargs: Any) -> None:
        self.refused.append(trigger)

    def record_query(self, *args: Any, **kwargs: Any) -> None:
        pass


def dispatcher() -> Dispatcher:
    container = FakeContainer()
    return Dispatcher(FakeService(container), container)  # type: ignore[arg-type]


def ask(d: Dispatcher, request: dict[str, Any] | bytes, actor: Actor = ROOT) -> dict[str, Any]:
    data = request if isinstance(request, bytes) else control.request_line(**request)
    replies: list[dict[str, Any]] = []
    d.handle(data, actor, replies.append)
    assert len(replies) == 1
    return replies[0]


def conforms(reply: dict[str, Any], op: str | None) -> None:
    problem = wire.nonconforming(reply, op)
    assert problem is None, f"{op}: {problem}: {reply!r}"
    # As it goes on the wire, read back the same, by the parser and by the
    # short way's readers.
    raw = wire.encode_reply(reply)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert json.loads(raw) == reply
    assert control.is_ok(raw) is reply["ok"]
    if op == "state" and reply["ok"]:
        assert control.state_text_of(raw) == reply["text"].encode()


# One request of every op the wire format has, in an order the fake allows.
EVERY_OP = [
    {"op": "state"},
    {"op": "start"},
    {"op": "pause"},
    {"op": "resume"},
    {"op": "kill", "signal": 0, "all": False},
    {"op": "update", "resources": {"memory": {"limit": 1}}},
    {"op": "checkpoint", "image_path": "/tmp/img", "leave_running": True},
    {"op": "exec", "args": ["true"]},
    {"op": "exec_exit", "exec": 1, "exit_code": 0},
    {"op": "console_size", "rows": 24, "cols": 80},
    {"op": "reopen_log"},
    {"op": "wait"},
    {"op": "delete", "force": False},
]


def test_every_op_is_asked_here() -> None:
    assert [r["op"] for r in EVERY_OP if r["op"] in wire.OPS] == [r["op"] for r in EVERY_OP]
    assert {r["op"] for r in EVERY_OP} == set(wire.OPS)


def test_every_reply_of_the_dispatcher_conforms() -> None:
    d = dispatcher()
    for request in EVERY_OP:
        op = request["op"]
        if op == "wait":
            d.container.exit = {"exit_code": 3}
        reply = ask(d, request)
        conforms(reply, op)
        # A container without a terminal or log of its monitor's: refused.
        assert reply["ok"] is (op not in ("console_size", "reopen_log")), (op, reply)
    assert reply == wire.DELETED


def test_the_state_reply_is_the_short_ways_shape() -> None:
    reply = ask(dispatcher(), {"op": "state"})
    assert list(reply) == ["ok", "status", "state", "text"]
    assert control.state_text_of(wire.encode_reply(reply)) == STATE_TEXT


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not json\n", "malformed request"),
        (b'{"op": "frobnicate"}\n', "unknown request"),
        (b'{"op": "kill", "signal": "NOPE"}\n', "signal"),
        (b'{"op": "console_size", "rows": 1}\n', "missing field"),
        (b"x" * (wire.MAX_REQUEST + 1), "too large"),
    ],
)
def test_refusals_conform(data: bytes, words: str) -> None:
    reply = ask(dispatcher(), data)
    conforms(reply, None)
    assert not reply["ok"] and words in reply["error"]


def test_a_peer_neither_root_nor_owner_gets_a_conforming_refusal() -> None:
    reply = ask(dispatcher(), {"op": "state"}, Actor(4242, 7, Transport.SOCKET))
    conforms(reply, "state")
    assert not reply["ok"] and "permission denied" in reply["error"]


def test_a_refused_transition_conforms() -> None:
    reply = ask(dispatcher(), {"op": "pause"})  # created: not running
    conforms(reply, "pause")
    assert "container not running" in reply["error"]


def test_a_bound_start_is_answered_at_the_init_end_and_binds_before_the_start() -> None:
    d = dispatcher()
    service: Any = d.service
    bound_at_start: list[bool] = []
    moved = service.request

    def request(cid: str, trigger: str, actor: Actor, args: dict[str, Any]) -> Any:
        if trigger == "start":
            bound_at_start.append(bool(d.bound))
        return moved(cid, trigger, actor, args)

    service.request = request
    replies: list[dict[str, Any]] = []
    d.handle(control.request_line("start", bind=True), ROOT, replies.append)
    assert (replies, bound_at_start, d.container.status) == ([], [True], Status.RUNNING)
    d.container.exit = {"exit_code": 3}
    d.exited()
    [reply] = replies
    conforms(reply, "start")
    assert reply["exit"] == {"exit_code": 3} and not d.bound


def test_a_bound_start_refused_is_answered_now_and_binds_nothing() -> None:
    d = dispatcher()
    d.container.status = Status.RUNNING

    def refuse(cid: str, trigger: str, actor: Actor, args: dict[str, Any]) -> Any:
        raise TransitionRejected(cid, trigger, d.container.status, "already running")

    d.service.request = refuse  # type: ignore[method-assign]
    reply = ask(d, {"op": "start", "bind": True})
    conforms(reply, "start")
    assert "already running" in reply["error"]
    assert (d.waiters, d.bound) == ([], {})


def test_a_bound_start_whose_client_goes_kills_the_container() -> None:
    d = dispatcher()
    asked: list[tuple[str, dict[str, Any]]] = []
    moved = d.service.request

    def request(cid: str, trigger: str, actor: Actor, args: dict[str, Any]) -> Any:
        asked.append((trigger, args))
        return moved(cid, trigger, actor, args)

    d.service.request = request  # type: ignore[method-assign]
    replies: list[dict[str, Any]] = []
    d.handle(control.request_line("start", bind=True), ROOT, replies.append)
    [respond] = d.waiters
    d.forget(respond)
    assert asked == [("start", {"bind": True}), ("kill", {"signal": 9, "all": True})]
    assert replies == []


def test_the_checker_finds_what_is_wrong() -> None:
    ok = wire.ok("running", {"id": "c1"})
    assert wire.nonconforming(ok, "start") is None
    assert wire.nonconforming({"status": "running", "ok": True, "state": {}}) is not None
    assert wire.nonconforming({**ok, "text": "{}"}, "start") is not None
    assert wire.nonconforming({**ok, "surprise": 1}) is not None
    assert wire.nonconforming({"ok": False, "error": "x"}) is not None
    assert wire.nonconforming({"ok": False, "error": "x", "exit_code": 0}) is not None
    assert wire.nonconforming(wire.failure("x", 0)) is None  # made 1
    assert wire.nonconforming({**ok, "exit": {"signal": "9"}}, "wait") is not None
    assert wire.nonconforming([]) is not None


def test_request_lines_are_the_encoders() -> None:
    for request in EVERY_OP:
        line = control.request_line(**request)
        assert line == (jsonfast.dumps(request) + "\n").encode()
        assert decode(line).op == request["op"]


def test_the_client_raises_what_a_refusal_says(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = wire.encode_reply(wire.failure("container c1: nope", 7))
    monkeypatch.setattr(control, "exchange", lambda path, data, timeout: refusal)
    with pytest.raises(RequestFailed) as caught:
        control.call("/nowhere", {"op": "start"})
    assert (str(caught.value), caught.value.exit_code) == ("container c1: nope", 7)
