"""engine.linux.mountinfo: the kernel's escapes undone, lines parsed."""

from __future__ import annotations

import os

import pytest

from engine.linux.mountinfo import MountInfo, parse, unescape


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("/plain", "/plain"),
        ("/a\\040b", "/a b"),
        ("/tab\\011and\\012newline", "/tab\tand\nnewline"),
        ("/back\\134slash", "/back\\slash"),
        ("/not\\an\\escape\\09", "/not\\an\\escape\\09"),  # no three octal digits
        ("/end\\04", "/end\\04"),
        ("/\\777", "/\\777"),  # above \377: not the kernel's
    ],
)
def test_unescape(field: str, path: str) -> None:
    assert unescape(field) == path


def test_a_name_that_is_not_utf8_comes_back_as_fsdecode_gives_it() -> None:
    assert os.fsencode(unescape("/x\\377y")) == b"/x\xffy"


def test_parse_skips_optional_fields_and_bad_lines() -> None:
    text = (
        "22 1 8:1 / / rw,relatime shared:1 master:2 - ext4 /dev/sda1 rw\n"
        "garbage line\n"
        "23 22 0:5 /bus /proc/my\\040bus rw - proc proc rw,nosuid\n"
        "24 22 0:6 / /short rw - tmpfs\n"
    )
    assert parse(text) == [
        MountInfo("/", "/", "ext4", "rw"),
        MountInfo("/bus", "/proc/my bus", "proc", "rw,nosuid"),
    ]
