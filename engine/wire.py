"""The control protocol's wire format: what a client sends a container's
monitor and what the monitor answers, on ``control.sock`` and through the
request spool alike.

This module is the one place that says it. The monitor's side decodes
requests with it (:mod:`engine.runtime.monitor.requests`), answers with it
(:mod:`engine.runtime.monitor.dispatch`, :mod:`engine.runtime.monitor.server`);
the one client (:mod:`engine.control`, for the short way and the commands
alike) writes requests and reads answers as it says, without importing it
(the short way pays for every module). Tests hold the monitor's replies,
and the client's reading of them, to :func:`nonconforming`
(tests/test_wire.py, and a real monitor's in
tests/runtime/test_runtime_control.py).

Framing
    One request per connection: one JSON object, UTF-8, on one line ending
    in ``\\n``, at most :data:`MAX_REQUEST` bytes; the client then shuts its
    sending side. The monitor answers with one JSON object on one line and
    closes the connection (``wait``: once the init has ended). Through the
    spool, the request is a file's content and the answer is ``NAME.reply``
    (:mod:`engine.runtime.shared.spool`). :data:`POKE` on the socket is no
    request: it wakes the monitor to read its spool, answered
    :data:`POKED`.

Requests
    ``{"op": OP, FIELD: VALUE, ...}``; :data:`OPS` lists every op and its
    fields (kind, required, default). An unknown op or field, a missing
    required field or a value of the wrong kind is refused, recorded, and
    answered with an error.

Replies (:data:`REPLY_FIELDS`)
    ``ok`` (always, the first member); when false, ``error`` (the one line
    the CLI prints) and ``exit_code`` (>= 1, runc's where runc has one).
    When true, from the monitor: ``status`` (the container's, after the
    request) and ``state`` (the OCI state as ``state.json`` has it) -
    except for ``delete``, whose reply is :data:`DELETED`, and a poke.
    Per op: ``state`` adds ``text`` (``state.json``'s text as it is, what
    ``runlog state`` prints), always the last member; ``wait`` adds
    ``exit`` (how the init ended: ``exit_code`` or ``signal``, perhaps
    ``exec_error``, ``reaped_by_caller``, ``lost``); ``exec`` adds ``exec``
    (the exec's id) and ``pid`` (the init's); ``update`` adds ``update``.

Encoding
    runlog's own encoder, compact (``jsonfast.dumps``), members in the order
    above. The short way (:mod:`engine.quick`) relies on that: it reads a
    reply that starts ``{"ok":true,`` and, for ``state``, ends with the
    ``text`` member without loading the JSON scanner
    (:func:`engine.control.is_ok`, :func:`engine.control.state_text_of`);
    any other shape is parsed. Requests of flags and numbers are written
    the same way (:func:`engine.control.request_line`).
"""

__all__ = [
    "DELETED",
    "MAX_REQUEST",
    "OPS",
    "POKE",
    "POKED",
    "REPLY_FIELDS",
    "Field",
    "encode_reply",
    "failure",
    "nonconforming",
    "ok",
    "state_reply",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: Requests larger than this (in bytes, the newline included) are refused,
#: unread beyond it.
MAX_REQUEST = 64 * 1024

#: On control.sock, this line (and its newline) wakes the monitor to take
#: what its request spool holds; the answer, :data:`POKED`, comes once it has.
POKE = b"spool"

# The kinds of a request's fields, as the refusal of a wrong value says them.
BOOL = "a boolean"
SIZE = "an integer from 0 to 65535"
SIGNAL = "a signal number (0-64) or name"
INT = "a non-negative integer"
TEXT = "a string"
STRINGS = "a list of strings"
OBJECT = "an object"


class Field:
    """One field of an op: its kind (one of the texts above), whether it
    must be given, and its value when it is not."""

    __slots__ = ("default", "kind", "required")

    def __init__(self, kind: str, *, required: bool = False, default: object = None) -> None:
        self.kind = kind
        self.required = required
        self.default = default


#: runc's CRIU flags that checkpoint takes: passed on to CRIU, or refused
#: by name (engine.actions.criu).
CRIU_BOOLS = (
    "tcp_established",
    "ext_unix_sk",
    "shell_job",
    "file_locks",
    "auto_dedup",
    "lazy_pages",
    "pre_dump",
)
CRIU_TEXTS = ("manage_cgroups_mode", "parent_path", "page_server", "status_fd")

#: Every op and its fields. The machine's triggers among them (start,
#: pause, resume, kill, delete, and update, checkpoint, exec, exec_exit
#: where the machine has them) are fired through the service; the others
#: are answered by the monitor itself.
#:
#:     op              fields
#:     start           bind: bool (false) (bound: answered as a bound wait, the
#:                                         bond made before the start)
#:     pause, resume   -
#:     kill            signal: number 0-64 or name (default 15, TERM); all: bool (false)
#:     state           -
#:     wait            bind: bool (false) (the reply comes when the init has ended;
#:                                         bound: a waiter gone before kills it)
#:     console_size    rows, cols: int 0-65535, both required (a pty the monitor owns)
#:     reopen_log      -                  (a container log: create --log-path)
#:     delete          force: bool (false)
#:     update          resources: object (OCI linux.resources: memory, cpu, pids)
#:     checkpoint      image_path: text (required); work_path: text; leave_running: bool;
#:                     runc's CRIU flags (tcp_established, shell_job, ...: bool;
#:                     manage_cgroups_mode, parent_path, page_server, status_fd:
#:                     text; empty_ns: strings)
#:     exec            args: strings (required); user, cwd: text; tty, detach,
#:                     ignore_paused: bool   (recorded; the caller makes the process)
#:     exec_exit       exec: int (required, the exec's id); pid: int; exit_code,
#:                     signal: int; exec_error: text; watch: bool (the monitor
#:                     watches pid and records its end itself)
OPS: "dict[str, dict[str, Field]]" = {
    "start": {"bind": Field(BOOL, default=False)},
    "pause": {},
    "resume": {},
    "kill": {"signal": Field(SIGNAL, default=15), "all": Field(BOOL, default=False)},
    "state": {},
    "wait": {"bind": Field(BOOL, default=False)},
    "console_size": {
        "rows": Field(SIZE, required=True),
        "cols": Field(SIZE, required=True),
    },
    "reopen_log": {},
    "delete": {"force": Field(BOOL, default=False)},
    "update": {"resources": Field(OBJECT, required=True)},
    "checkpoint": {
        "image_path": Field(TEXT, required=True),
        "work_path": Field(TEXT, default=""),
        "leave_running": Field(BOOL, default=False),
        **{name: Field(BOOL, default=False) for name in CRIU_BOOLS},
        **{name: Field(TEXT, default="") for name in CRIU_TEXTS},
        "empty_ns": Field(STRINGS, default=[]),
    },
    "exec": {
        "args": Field(STRINGS, required=True),
        "user": Field(TEXT, default=""),
        "cwd": Field(TEXT, default=""),
        "tty": Field(BOOL, default=False),
        "detach": Field(BOOL, default=False),
        "ignore_paused": Field(BOOL, default=False),
    },
    "exec_exit": {
        "exec": Field(INT, required=True),
        "pid": Field(INT, default=0),
        "exit_code": Field(INT, default=None),
        "signal": Field(INT, default=None),
        "exec_error": Field(TEXT, default=None),
        "watch": Field(BOOL, default=False),
    },
}

#: Every member a reply may have, and the type of its value.
REPLY_FIELDS: "dict[str, type | tuple[type, ...]]" = {
    "ok": bool,
    "error": str,
    "exit_code": int,
    "status": str,
    "state": dict,
    "text": str,
    "exit": dict,
    "exec": int,
    "pid": int,
    "update": (dict, type(None)),
}

#: ``delete``'s answer: the container is gone, so no state comes with it
#: (also what a spool client reports when the spool went with the container).
DELETED: "dict[str, Any]" = {"ok": True, "status": "deleted"}

#: The answer to :data:`POKE`.
POKED: "dict[str, Any]" = {"ok": True}


# -- making requests and replies ---------------------------------------------


def ok(status: str, state: "Mapping[str, Any]", **extra: "Any") -> "dict[str, Any]":
    """A successful answer: the container's status and OCI state, then what
    the op adds (``exit``, ``exec`` and ``pid``, ``update``)."""
    return {"ok": True, "status": status, "state": dict(state), **extra}


def state_reply(status: str, state: "Mapping[str, Any]", text: str) -> "dict[str, Any]":
    """The answer to ``state``: ``text`` (``state.json`` as it is) last."""
    return {"ok": True, "status": status, "state": dict(state), "text": text}


def failure(message: str, exit_code: int) -> "dict[str, Any]":
    """A refusal or failure: the message the CLI prints and its exit code."""
    return {"ok": False, "error": message, "exit_code": exit_code if exit_code > 0 else 1}


def encode_reply(reply: "Mapping[str, Any]") -> bytes:
    """A reply as it goes on the wire: compact, one line."""
    from engine import jsonfast

    return (jsonfast.dumps(reply) + "\n").encode()


# -- checking replies ----------------------------------------------------------


def nonconforming(reply: object, op: "str | None" = None) -> "str | None":
    """What is wrong with ``reply`` against this format (the answer to a
    request ``op``, when known), or ``None`` if nothing is."""
    if not isinstance(reply, dict):
        return f"not a JSON object: {type(reply).__name__}"
    members = list(reply)
    if not members or members[0] != "ok":
        return f'"ok" is not the first member: {members}'
    for name, value in reply.items():
        kind = REPLY_FIELDS.get(name)
        if kind is None:
            return f"unknown member {name!r}"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"member {name!r} is {type(value).__name__}"
    if not reply["ok"]:
        if set(members) != {"ok", "error", "exit_code"} or reply["exit_code"] < 1:
            return f"a failure has ok, error and exit_code >= 1: {reply!r}"
        return None
    if "error" in reply or "exit_code" in reply:
        return "a success carries an error"
    if reply.get("status") == DELETED["status"] or op == "delete":
        return None if reply == DELETED else f"delete's answer is {DELETED!r}: {reply!r}"
    if members == ["ok"]:
        return None if op is None else f"{op}: no status and state"
    if "status" not in reply or "state" not in reply:
        return "a success without status and state"
    if (op == "state") != ("text" in reply):
        return '"text" belongs to state alone'
    if "text" in reply and members[-1] != "text":
        return '"text" is not the last member'
    if op is not None and ("exit" in reply) != (op == "wait") and op != "start":
        return '"exit" belongs to wait and a bound start alone'
    if "exit" in reply:
        how = reply["exit"]
        for name in ("exit_code", "signal"):
            if name in how and (type(how[name]) is not int or how[name] < 0):
                return f"exit's {name} is {how[name]!r}"
    return None
