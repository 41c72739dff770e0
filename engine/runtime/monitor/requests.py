"""Control requests, decoded: the one decoder both transports (socket and
spool) use, on the monitor's side.

What a request is - one JSON object of at most
:data:`~engine.wire.MAX_REQUEST` bytes, UTF-8, with an ``op`` and the
fields that op takes (:data:`engine.wire.OPS`: start, console size,
reopen log, pause, resume, kill, state, wait, delete, update, checkpoint,
exec and exec_exit) - is the wire format's
(:mod:`engine.wire`); this checks a request against it.

Anything else - not UTF-8, not JSON, not an object, no ``op``, an unknown
op, an unknown field, a wrong type, a missing field, a value out of range,
more than :data:`~engine.wire.MAX_REQUEST` bytes - raises
:class:`RequestError`, whose message names what is wrong (and the field).
The monitor replies with it and records a ``rejected`` event; it never
raises anything else.
"""

from __future__ import annotations

from engine import jsonfast, wire
from engine.errors import RunlogError
from engine.wire import MAX_REQUEST, OPS, Field

__all__ = ["MAX_REQUEST", "OPS", "Field", "Request", "RequestError", "decode"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# How much of a bad name or text goes into a message (and so into the log).
_QUOTE = 64


class Request:
    """A request that passed validation: its op and every field, defaults filled in."""

    __slots__ = ("args", "op")

    def __init__(self, op: str, args: dict[str, Any]) -> None:
        self.op = op
        self.args = args

    def __repr__(self) -> str:
        return f"Request({self.op!r}, {self.args!r})"


class RequestError(RunlogError):
    """A request that cannot be acted on as sent.

    ``op`` is the op when the request named one as a string (the event's
    trigger), ``field`` the field at fault, ``request`` the decoded object
    when the request was one, ``raw`` the start of the text otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        field: str | None = None,
        request: dict[str, Any] | None = None,
        raw: str | None = None,
    ) -> None:
        self.op = op
        self.field = field
        self.request = request
        self.raw = raw
        super().__init__(message)


def _quote(text: str) -> str:
    if len(text) > _QUOTE:
        text = text[:_QUOTE] + "..."
    return repr(text)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def decode(data: bytes) -> Request:
    """Decode and check one request; raise :class:`RequestError`."""
    if len(data) > MAX_REQUEST:
        raise RequestError(
            f"request too large: more than {MAX_REQUEST} bytes",
            raw=data[:_QUOTE].decode("utf-8", "replace"),
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(
            f"malformed request: not UTF-8 (byte {err.start})",
            raw=data[:_QUOTE].decode("utf-8", "replace"),
        ) from None
    if not text.strip():
        raise RequestError("malformed request: empty", raw=text)
    try:
        obj = jsonfast.loads(text)
    except (ValueError, RecursionError) as err:
        # RecursionError: nesting deeper than the C scanner goes.
        message = str(err) if isinstance(err, ValueError) else "nested too deep"
        raise RequestError(f"malformed request: {message}", raw=text[: _QUOTE * 4]) from None
    if not isinstance(obj, dict):
        raise RequestError(
            f'malformed request: expected a JSON object {{"op": ...}}, not {_kind(obj)}',
            raw=text[: _QUOTE * 4],
        )
    return check(obj)


def check(obj: dict[str, Any]) -> Request:
    """Check a decoded request object against :data:`OPS`."""
    if "op" not in obj:
        raise RequestError('malformed request: no "op" field', field="op", request=obj)
    op = obj["op"]
    if not isinstance(op, str):
        raise RequestError(
            f'malformed request: field "op" must be a string, not {_kind(op)}',
            field="op",
            request=obj,
        )
    fields = OPS.get(op)
    if fields is None:
        raise RequestError(
            f"unknown request {_quote(op)}; known: {', '.join(OPS)}", op=op, request=obj
        )
    for name in obj:
        if name != "op" and name not in fields:
            raise RequestError(
                f"request {op}: unknown field {_quote(name)}", op=op, field=name, request=obj
            )
    args: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in obj:
            if spec.required:
                raise RequestError(
                    f"request {op}: missing field {name!r} ({spec.kind})",
                    op=op,
                    field=name,
                    request=obj,
                )
            args[name] = spec.default
            continue
        value = _value(spec.kind, obj[name])
        if value is None:
            raise RequestError(
                f"request {op}: field {name!r} must be {spec.kind}, not {_describe(obj[name])}",
                op=op,
                field=name,
                request=obj,
            )
        args[name] = value
    return Request(op, args)


def _describe(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return _kind(value)
    text = value if isinstance(value, str) else str(value)
    return f"{_kind(value)} ({_quote(text) if isinstance(value, str) else text[:_QUOTE]})"


def _value(kind: str, value: object) -> object:
    """The checked value, or None if ``value`` is not of ``kind``."""
    if kind == wire.BOOL:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None  # JSON true is no number
    if kind == wire.SIZE:
        return value if isinstance(value, int) and 0 <= value <= 0xFFFF else None
    if kind == wire.INT:
        return value if isinstance(value, int) and 0 <= value < 2**63 else None
    if kind == wire.TEXT:
        return value if isinstance(value, str) else None
    if kind == wire.OBJECT:
        return value if isinstance(value, dict) else None
    if kind == wire.STRINGS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value if ok else None
    if kind == wire.SIGNAL:
        if isinstance(value, int):
            return value if 0 <= value <= 64 else None
        if isinstance(value, str) and len(value) <= _QUOTE:
            from engine.oci.signals import parse_signal

            try:
                return parse_signal(value)
            except RunlogError:
                return None
        return None
    raise AssertionError(f"unknown field kind {kind!r}")
