"""engine.oci.gojson: text laid out as Go's encoding/json lays it out."""

from __future__ import annotations

import json

import pytest

from engine.oci.gojson import render


def test_compact_is_json_marshal() -> None:
    assert render({"a": 1, "b": [True, False, None], "c": {}}) == (
        '{"a":1,"b":[true,false,null],"c":{}}'
    )


def test_indented_is_marshal_indent() -> None:
    value = {"id": "c1", "list": [1, {"x": []}], "empty": {}, "n": -3}
    assert render(value, "\t") == (
        '{\n\t"id": "c1",\n\t"list": [\n\t\t1,\n\t\t{\n\t\t\t"x": []\n\t\t}\n\t],'
        '\n\t"empty": {},\n\t"n": -3\n}'
    )


def test_matches_python_json_where_the_formats_agree() -> None:
    value = {"k": ["a", 1, {"z": None}], "t": True}
    assert render(value, "  ") == json.dumps(value, indent=2)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain", '"plain"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("<a href='x'>&</a>", "\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""),
        ("caf\u00e9 \u2603 \U0001f600", '"caf\u00e9 \u2603 \U0001f600"'),  # UTF-8 as is
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("\x7f", '"\x7f"'),
    ],
)
def test_strings_are_escaped_as_go_escapes_them(text: str, encoded: str) -> None:
    assert render(text) == encoded
    assert json.loads(encoded) == text


def test_tuples_are_arrays() -> None:
    assert render(("a", 2)) == '["a",2]'


@pytest.mark.parametrize("value", [1.5, {1: "x"}, {"a": object()}, b"bytes", {"s": {1, 2}}])
def test_refuses_what_it_cannot_write_exactly(value: object) -> None:
    with pytest.raises(TypeError):
        render(value)
