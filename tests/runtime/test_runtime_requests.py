"""The control request decoder both transports share: the table of ops, the
messages that name what is wrong, and, under Hypothesis, that no input makes
it raise anything but RequestError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.runtime.monitor.requests import MAX_REQUEST, OPS, Request, RequestError, decode


@pytest.mark.parametrize(
    ("text", "op", "args"),
    [
        ('{"op": "start"}', "start", {"bind": False}),
        ('{"op": "start", "bind": true}', "start", {"bind": True}),
        ('  {"op":"state"}\n', "state", {}),
        ('{"op": "kill"}', "kill", {"signal": 15, "all": False}),
        ('{"op": "kill", "signal": 9, "all": true}', "kill", {"signal": 9, "all": True}),
        ('{"op": "kill", "signal": "sigusr1"}', "kill", {"signal": 10, "all": False}),
        ('{"op": "kill", "signal": "RTMIN+2"}', "kill", {"signal": 36, "all": False}),
        ('{"op": "kill", "signal": 0}', "kill", {"signal": 0, "all": False}),
        ('{"op": "console_size", "rows": 50, "cols": 0}', "console_size", {"rows": 50, "cols": 0}),
        ('{"op": "delete", "force": true}', "delete", {"force": True}),
        ('{"op": "wait"}', "wait", {"bind": False}),
        ('{"op": "wait", "bind": true}', "wait", {"bind": True}),
        ('{"op": "reopen_log"}', "reopen_log", {}),
    ],
)
def test_valid_requests_decode_with_defaults(text: str, op: str, args: dict[str, Any]) -> None:
    request = decode(text.encode())
    assert (request.op, request.args) == (op, args)


@pytest.mark.parametrize(
    ("data", "message", "op", "field"),
    [
        (b"", "malformed request: empty", None, None),
        (b" \n ", "malformed request: empty", None, None),
        (b"{", "malformed request: Expecting property name", None, None),
        (b'{"op": "start"} x', "malformed request: Extra data: line 1 column 17", None, None),
        (b"\xc3\x28", "malformed request: not UTF-8 (byte 0)", None, None),
        (b"NaN", "malformed request: ", None, None),
        (b'"start"', 'expected a JSON object {"op": ...}, not a string', None, None),
        (b"{}", 'malformed request: no "op" field', None, "op"),
        (b'{"op": null}', 'field "op" must be a string, not null', None, "op"),
        (b'{"op": "Start"}', "unknown request 'Start'; known: start, pause", "Start", None),
        (
            b'{"op": "start", "force": true}',
            "request start: unknown field 'force'",
            "start",
            "force",
        ),
        (
            b'{"op": "kill", "signal": 65}',
            "field 'signal' must be a signal number",
            "kill",
            "signal",
        ),
        (b'{"op": "kill", "signal": -1}', "not an integer (-1)", "kill", "signal"),
        (b'{"op": "kill", "signal": "SIGNOPE"}', "not a string ('SIGNOPE')", "kill", "signal"),
        (b'{"op": "kill", "signal": 9.0}', "not a number (9.0)", "kill", "signal"),
        (
            b'{"op": "kill", "all": 1}',
            "field 'all' must be a boolean, not an integer",
            "kill",
            "all",
        ),
        (
            b'{"op": "delete", "force": null}',
            "field 'force' must be a boolean, not null",
            "delete",
            "force",
        ),
        (
            b'{"op": "console_size", "cols": 80}',
            "missing field 'rows' (an integer",
            "console_size",
            "rows",
        ),
        (
            b'{"op": "console_size", "rows": 65536, "cols": 1}',
            "field 'rows' must be an integer from 0 to 65535",
            "console_size",
            "rows",
        ),
        (
            b'{"op": "console_size", "rows": true, "cols": 1}',
            "field 'rows' must be an integer from 0 to 65535, not a boolean",
            "console_size",
            "rows",
        ),
        (b"[" * 5000, "malformed request: nested too deep", None, None),
        (b" " * (MAX_REQUEST + 1), f"request too large: more than {MAX_REQUEST} bytes", None, None),
    ],
)
def test_bad_requests_say_what_is_wrong(
    data: bytes, message: str, op: str | None, field: str | None
) -> None:
    with pytest.raises(RequestError) as caught:
        decode(data)
    assert message in str(caught.value)
    assert (caught.value.op, caught.value.field) == (op, field)


def test_a_long_name_is_cut_short_in_the_message() -> None:
    name = "x" * 10_000
    with pytest.raises(RequestError) as caught:
        decode(json.dumps({"op": "state", name: 1}).encode())
    assert len(str(caught.value)) < 200 and caught.value.field == name


def test_the_limit_is_the_size_of_the_bytes() -> None:
    body = {"op": "kill", "signal": "KILL"}
    pad = MAX_REQUEST - len(json.dumps(body).encode())
    assert decode(json.dumps(body).encode() + b" " * pad).args["signal"] == 9
    with pytest.raises(RequestError, match="too large"):
        decode(json.dumps(body).encode() + b" " * (pad + 1))


def _check(data: bytes) -> Request | None:
    """decode, which must either succeed or raise RequestError with a message."""
    try:
        request = decode(data)
    except RequestError as err:
        assert str(err)
        if err.op is not None:
            assert isinstance(err.op, str)
        return None
    assert request.op in OPS
    assert set(request.args) == set(OPS[request.op])
    return request


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted({name for fields in OPS.values() for name in fields})
REQUESTS = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(OPS)) | st.text(max_size=12) | JSON},
    optional={name: JSON | st.integers(-100, 70_000) for name in [*FIELDS, "extra"]},
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_no_bytes_make_the_decoder_raise_anything_else(data: bytes) -> None:
    _check(data)


@settings(max_examples=600, deadline=None)
@given(REQUESTS)
def test_request_objects_are_accepted_exactly_when_they_fit_the_table(obj: dict[str, Any]) -> None:
    request = _check(json.dumps(obj).encode())
    op = obj["op"]
    fits = isinstance(op, str) and op in OPS and set(obj) - {"op"} <= set(OPS[op])
    if request is None:
        return
    assert fits
    for name, value in request.args.items():
        if name in obj and not isinstance(obj[name], str):
            assert value == obj[name]  # given values pass through unchanged
        elif name not in obj:
            assert value == OPS[op][name].default


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_no_text_makes_the_decoder_raise_anything_else(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "module",
    ["engine.commands.container", "engine.control", "engine.runtime.monitor.requests"],
)
def test_the_control_clients_import_nothing_heavy(module: str) -> None:
    """start, state, kill... are polled by schedulers: watchdog (and the rest)
    stay in the monitor, ``ctl --spool`` and ``events --follow``."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}
    assert module in loaded
    heavy = ("watchdog", "sqlalchemy", "alembic", "orjson", "yaml", "transitions", "threading")
    assert {m for m in loaded if m.split(".")[0] in heavy} == set()
