"""Times on the command line and in output.

Input: ISO 8601 (``2026-11-30``, ``2026-11-30T14:05``, with or without an
offset; no offset means local time) or a duration before now (``90s``,
``15m``, ``2h``, ``7d``, ``1w``). Output: local ISO 8601 with milliseconds
for people, UTC with nanoseconds for programs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.errors import UsageError

__all__ = ["local_iso", "parse_time", "utc_iso"]

_NS = 1_000_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_time(text: str, now_ns: int, *, flag: str = "time") -> int:
    """``text`` as ns since the epoch (UTC); raise UsageError naming ``flag``."""
    value = text.strip()
    if value == "now":
        return now_ns
    unit = _UNITS.get(value[-1:].lower())
    if unit is not None:
        try:
            amount = float(value[:-1])
        except ValueError:
            pass
        else:
            if amount >= 0:
                return now_ns - int(amount * unit * _NS)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{flag}: cannot read {text!r} as a time; use ISO 8601 (2026-11-30, "
            "2026-11-30T14:05:00, with an offset or Z for UTC) or a duration before "
            "now (90s, 15m, 2h, 7d, 1w)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as `date` and `journalctl` read it
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def local_iso(ns: int) -> str:
    """``2026-11-30T05:40:10.337+01:00``: for tables people read."""
    secs, rest = divmod(ns, _NS)
    when = datetime.fromtimestamp(secs).astimezone()
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    offset = when.strftime("%z")
    return f"{base}.{rest // 1_000_000:03d}{offset[:3]}:{offset[3:]}"


def utc_iso(ns: int) -> str:
    """``2026-11-30T04:40:10.337123456Z``: RFC 3339 with nanoseconds, for programs."""
    secs, rest = divmod(ns, _NS)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"
