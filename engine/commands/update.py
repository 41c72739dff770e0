"""``runlog update``: runc's update - new limits for a container's cgroup.

``-r FILE`` (``-`` for stdin) gives OCI ``linux.resources`` as JSON; else
the flags build it, as runc's do (memory sizes as ``512m``, ``1g``; ``-1``
for no limit). The monitor runs the machine's ``update`` (refused for a
stopped container: "container not running", as runc) and records the limit
files' values before and after in the event.
"""

from __future__ import annotations

import sys
from typing import Any

from engine.commands.container import _call
from engine.errors import RunlogError, UsageError
from engine.settings import Settings

__all__ = ["main"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# flag -> (section, field, kind)
_FLAGS = (
    ("memory", "memory", "limit", "size"),
    ("memory_reservation", "memory", "reservation", "size"),
    ("memory_swap", "memory", "swap", "size"),
    ("kernel_memory", "memory", "kernel", "size"),
    ("kernel_memory_tcp", "memory", "kernelTCP", "size"),
    ("cpu_share", "cpu", "shares", "uint"),
    ("cpu_quota", "cpu", "quota", "int"),
    ("cpu_period", "cpu", "period", "uint"),
    ("cpu_rt_period", "cpu", "realtimePeriod", "uint"),
    ("cpu_rt_runtime", "cpu", "realtimeRuntime", "int"),
    ("cpuset_cpus", "cpu", "cpus", "text"),
    ("cpuset_mems", "cpu", "mems", "text"),
    ("pids_limit", "pids", "limit", "int"),
    ("blkio_weight", "blockIO", "weight", "uint"),
)


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    for name, what in (("l3_cache_schema", "l3 cache"), ("mem_bw_schema", "memory bandwidth")):
        if flags.get(name):
            raise RunlogError(f"Intel RDT: {what} schema is not enabled")
    source = flags.get("resources")
    resources = _read(str(source)) if source else _from_flags(flags)
    reply = _call(settings, args[0], "update", {"op": "update", "resources": resources})
    if settings.debug:
        from engine import jsonfast

        sys.stderr.write(jsonfast.dumps(reply.get("update")) + "\n")
    return 0


def _read(path: str) -> dict[str, Any]:
    from engine import jsonfast

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as fh:
                text = fh.read()
        doc = jsonfast.loads(text)
    except OSError as err:
        raise UsageError(f"open {path}: {err.strerror}") from None
    except ValueError as err:
        raise UsageError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a JSON object (linux.resources)")
    return doc


def _from_flags(flags: dict[str, object]) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = {}
    for dest, section, field, kind in _FLAGS:
        value = flags.get(dest)
        if value in (None, ""):
            continue
        resources.setdefault(section, {})[field] = _value(
            str(value), kind, "--" + dest.replace("_", "-")
        )
    return resources


def _value(text: str, kind: str, flag: str) -> int | str:
    if kind == "text":
        return text
    if kind == "size":
        if text == "-1":
            return -1
        return _size(text, flag)
    try:
        number = int(text)
    except ValueError:
        raise UsageError(f"invalid value for {flag}: {text!r} is not an integer") from None
    if kind == "uint" and number < 0:
        raise UsageError(f"invalid value for {flag}: {text!r} is negative")
    return number


def _size(text: str, flag: str) -> int:
    """go-units' RAMInBytes: 512, 512k, 1.5g, 1GiB, 64mb (multiples of 1024)."""
    low = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = low[-1:] if low[-1:] in _UNITS else ""
    number = low[: len(low) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"invalid value for {flag}: invalid size: {text!r}") from None
    if value < 0:
        raise UsageError(f"invalid value for {flag}: invalid size: {text!r}")
    return int(value * _UNITS[unit])
