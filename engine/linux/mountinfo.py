"""``/proc/self/mountinfo`` (proc(5)), parsed: one record a mount.

A line is ``id parent major:minor root mount-point options [optional
fields...] - fstype source super-options``. The kernel escapes space, tab,
newline and backslash in paths as octal (``\\040``...); :func:`unescape`
undoes that on bytes, so a name that is not UTF-8 comes back as
``os.fsdecode`` gives it and ``os.fsencode`` in a syscall finds the same
path. No ``re``: ``runlog pause`` reads mountinfo through the cgroups
package, which stays cheap to import.
"""

from __future__ import annotations

import os

from engine.frozen import record

__all__ = ["MountInfo", "parse", "read", "unescape"]

_BACKSLASH = 0x5C
_OCTAL = b"01234567"


@record
class MountInfo:
    """One mount, with its paths decoded."""

    root: str  # the directory of the filesystem shown at the mount point
    mount_point: str
    fstype: str
    super_options: str


def unescape(field: str) -> str:
    """``field`` with the kernel's ``\\NNN`` octal escapes decoded."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        code = raw[i : i + 4]
        if (
            len(code) == 4
            and code[0] == _BACKSLASH
            and code[1] in b"0123"
            and code[2] in _OCTAL
            and code[3] in _OCTAL
        ):
            out.append(int(code[1:], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def parse(text: str) -> list[MountInfo]:
    """The mounts of a mountinfo text, in its order; a line that does not
    parse is skipped."""
    mounts: list[MountInfo] = []
    for line in text.splitlines():
        fields = line.split()  # whitespace in a path is escaped
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        root, mount_point = unescape(fields[3]), unescape(fields[4])
        mounts.append(MountInfo(root, mount_point, fields[sep + 1], fields[sep + 3]))
    return mounts


def read() -> str:
    """This process's mountinfo, decoded as paths are."""
    with open("/proc/self/mountinfo", "rb") as fh:
        return os.fsdecode(fh.read())
