"""JSON text laid out byte for byte as Go's ``encoding/json`` lays it out.

Callers of runc compare and parse its output: ``runc state`` prints
``json.MarshalIndent(state, "", "  ")``, ``runc spec`` writes
``MarshalIndent(spec, "", "\\t")`` and ``runc features`` uses an encoder
indented by four spaces (and a trailing newline, which the caller adds).
:mod:`engine.jsonfast` writes Python's layout; this module writes Go's:
``": "`` after keys, no space after commas, ``{}``/``[]`` for empty
containers, and Go's string escapes (``<``, ``>``, ``&``, U+2028 and U+2029
escaped as ``\\u003c``…, other non-ASCII text left as it is).

A dict is written in its own order. Go writes struct fields in declaration
order and map keys sorted, so callers build struct-like dicts in field
order and pass map-like dicts (annotations, sysctl) with their keys sorted.
"""

from __future__ import annotations

__all__ = ["render"]


def _escapes() -> dict[int, str]:
    table = {code: f"\\u{code:04x}" for code in range(0x20)}
    table.update(
        {
            ord("\b"): "\\b",
            ord("\f"): "\\f",
            ord("\n"): "\\n",
            ord("\r"): "\\r",
            ord("\t"): "\\t",
            ord('"'): '\\"',
            ord("\\"): "\\\\",
            # Go escapes these by default (json.Marshal's escapeHTML).
            ord("<"): "\\u003c",
            ord(">"): "\\u003e",
            ord("&"): "\\u0026",
            0x2028: "\\u2028",
            0x2029: "\\u2029",
        }
    )
    return table


_ESCAPES = _escapes()


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def render(obj: object, indent: str = "") -> str:
    """Return ``obj`` as Go would marshal it; ``indent=""`` is ``json.Marshal``.

    Accepts dicts with string keys, lists, tuples, strings, ints, bools and
    ``None``; anything else (floats included) raises :class:`TypeError`.
    """
    out: list[str] = []
    _write(obj, indent, 0, out)
    return "".join(out)


def _write(obj: object, indent: str, depth: int, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = "\n" + indent * (depth + 1) if indent else ""
        colon = ": " if indent else ":"
        out.append("{")
        for n, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            out.append(("," if n else "") + inner + _string(key) + colon)
            _write(value, indent, depth + 1, out)
        out.append(("\n" + indent * depth if indent else "") + "}")
    elif isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        inner = "\n" + indent * (depth + 1) if indent else ""
        out.append("[")
        for n, value in enumerate(obj):
            out.append(("," if n else "") + inner)
            _write(value, indent, depth + 1, out)
        out.append(("\n" + indent * depth if indent else "") + "]")
    else:
        raise TypeError(f"{type(obj).__name__} is not rendered as Go JSON")
