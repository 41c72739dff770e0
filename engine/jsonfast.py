"""JSON for the hot path, on the C scanner and encoder alone.

``import json`` pulls in ``re`` and costs about 8 ms, more than half the
floor of a scheduler's ``runlog state`` call; the ``_json`` accelerator the
stdlib wraps costs 0.3 ms. This module drives it directly, and does
without ``from __future__ import annotations`` (a module to import, 0.2 ms). Bulk work (the
monitor, audit, replay) uses orjson instead.
"""

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["JSONError", "dumps", "json_type", "loads"]


class JSONError(ValueError):
    """Malformed JSON; ``pos`` is the character offset, ``line``/``col`` 1-based."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        self.pos = pos
        self.line = doc.count("\n", 0, pos) + 1
        self.col = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {self.line} column {self.col}")


def _constant(name: str) -> float:
    raise ValueError(f"invalid constant {name}")


class _Context:
    """The attributes ``_json.make_scanner`` reads from a decoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str]

    def __init__(self) -> None:
        self.memo = {}


_SCANNER = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed decoder
_WS = " \t\n\r"


def loads(data: str | bytes) -> "Any":
    """Parse one JSON document; raise :class:`JSONError` with its position."""
    doc = data.decode("utf-8") if isinstance(data, bytes) else data
    end = len(doc)
    pos = 0
    while pos < end and doc[pos] in _WS:
        pos += 1
    try:
        value, pos = _SCANNER(doc, pos)
    except Exception as err:
        # The error path may be slow: let the stdlib say where and why.
        _raise_stdlib_error(doc)
        raise JSONError(str(err), doc, pos) from None
    while pos < end and doc[pos] in _WS:
        pos += 1
    if pos != end:
        raise JSONError("Extra data", doc, pos)
    return value


def _raise_stdlib_error(doc: str) -> None:
    import json

    try:
        json.loads(doc)
    except json.JSONDecodeError as err:
        raise JSONError(err.msg, doc, err.pos) from None


def _default(obj: object) -> "Any":
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_ESCAPE = _json.encode_basestring_ascii
_ENCODER = _json.make_encoder(None, _default, _ESCAPE, None, ": ", ", ", False, False, True)
_COMPACT = _json.make_encoder(None, _default, _ESCAPE, None, ":", ",", False, False, True)


def dumps(obj: object, *, compact: bool = True) -> str:
    """Serialise ``obj``; compact by default, as runc prints its state."""
    encoder = _COMPACT if compact else _ENCODER
    return "".join(encoder(obj, 0))


def json_type(value: object) -> str:
    """The JSON type of a decoded value, as error messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
