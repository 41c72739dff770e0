"""The OCI state object: what ``runlog state`` prints and what hooks read.

runtime-spec runtime.md "State" defines the object a runtime hands to hooks
on stdin (``ociVersion``, ``id``, ``status``, ``pid``, ``bundle``,
``annotations``). ``runc state`` prints a larger one (libcontainer's
``containerState``: adds ``rootfs``, ``created`` and ``owner``), which
schedulers parse; runlog prints that one, key for key and in runc's order,
and may append its own ``exitCode``, ``startedAt`` and ``finishedAt``.

Times are integer nanoseconds since the epoch and are written as Go writes a
``time.Time`` in JSON: RFC 3339 in UTC with up to nine fractional digits,
trailing zeros dropped (``2024-05-01T10:00:00.5Z``).

``runlog state`` is polled, so this module avoids :mod:`datetime`,
:mod:`dataclasses` and :mod:`re`; :mod:`time` is built in.
"""

from __future__ import annotations

import time

from engine.oci.version import OCI_VERSION
from engine.status import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["OCI_STATUSES", "format_time", "hook_state", "oci_state", "parse_time"]

# runtime-spec runtime.md "State": the status values, plus runc's "paused".
OCI_STATUSES = (
    Status.CREATING,
    Status.CREATED,
    Status.RUNNING,
    Status.PAUSED,
    Status.STOPPED,
)

_NS = 1_000_000_000


def format_time(ns: int) -> str:
    """Format nanoseconds since the epoch as Go's ``time.Time`` JSON (UTC)."""
    seconds, nanos = divmod(ns, _NS)
    t = time.gmtime(seconds)
    # Not strftime: glibc's %Y does not pad years below 1000, Go does.
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def parse_time(text: str) -> int:
    """Parse an RFC 3339 time (``Z`` or ``±hh:mm``) into nanoseconds since the epoch.

    The inverse of :func:`format_time`; raises :class:`ValueError`.
    """
    try:
        return _parse_time(text)
    except (ValueError, IndexError):
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None


def _number(text: str) -> int:
    if not (text.isdigit() and text.isascii()):
        raise ValueError(text)
    return int(text)


def _parse_time(text: str) -> int:
    if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] != "T":
        raise ValueError(text)
    if text[13] != ":" or text[16] != ":":
        raise ValueError(text)
    year, month, day = _number(text[0:4]), _number(text[5:7]), _number(text[8:10])
    hour, minute, second = _number(text[11:13]), _number(text[14:16]), _number(text[17:19])
    rest = text[19:]
    nanos = 0
    if rest.startswith("."):
        end = 1
        while end < len(rest) and rest[end].isdigit():
            end += 1
        digits = rest[1:end]
        if not 1 <= len(digits) <= 9:
            raise ValueError(text)
        nanos = _number(digits.ljust(9, "0"))
        rest = rest[end:]
    if rest == "Z":
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        offset = _number(rest[1:3]) * 3600 + _number(rest[4:6]) * 60
        if rest[0] == "-":
            offset = -offset
    else:
        raise ValueError(text)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        raise ValueError(text)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(text)
    days = _days_from_civil(year, month, day)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * _NS + nanos


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar
    # (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _check_status(status: str) -> None:
    if status not in OCI_STATUSES:
        raise ValueError(f"not an OCI container status: {status!r}")


def oci_state(
    *,
    container_id: str,
    pid: int,
    status: str,
    bundle: str,
    rootfs: str,
    created: int,
    annotations: Mapping[str, str] | None = None,
    owner: str = "",
    oci_version: str = OCI_VERSION,
    exit_code: int | None = None,
    started_at: int | None = None,
    finished_at: int | None = None,
) -> dict[str, Any]:
    """Build the object ``runc state`` prints, in runc's key order.

    ``pid`` is 0 once the container has stopped, as runc reports it.
    ``annotations`` are left out when empty (runc's ``omitempty``) and
    sorted otherwise (Go writes map keys sorted). ``owner`` is empty, as in
    ``runc state``; only ``runc list`` fills it in. ``created``,
    ``started_at`` and ``finished_at`` are nanoseconds since the epoch. The
    last three keys are runlog's and appear only when given.
    """
    _check_status(status)
    state: dict[str, Any] = {
        "ociVersion": oci_version,
        "id": container_id,
        "pid": pid,
        "status": status,
        "bundle": bundle,
        "rootfs": rootfs,
        "created": format_time(created),
    }
    if annotations:
        state["annotations"] = {key: annotations[key] for key in sorted(annotations)}
    state["owner"] = owner
    if exit_code is not None:
        state["exitCode"] = exit_code
    if started_at is not None:
        state["startedAt"] = format_time(started_at)
    if finished_at is not None:
        state["finishedAt"] = format_time(finished_at)
    return state


def hook_state(
    *,
    container_id: str,
    status: str,
    pid: int | None,
    bundle: str,
    annotations: Mapping[str, str] | None = None,
    oci_version: str = OCI_VERSION,
) -> dict[str, Any]:
    """Build the state a hook reads on stdin (runtime-spec runtime.md "State").

    Key order and omissions follow runtime-spec's Go ``State`` type: ``pid``
    is left out when there is none (``omitempty``) and so are empty
    annotations. The spec requires a pid for ``created`` and ``running``;
    without one this raises :class:`ValueError`.
    """
    _check_status(status)
    if not pid and status in (Status.CREATED, Status.RUNNING):
        raise ValueError(f"a {status} container's state needs its pid")
    state: dict[str, Any] = {"ociVersion": oci_version, "id": container_id, "status": status}
    if pid:
        state["pid"] = pid
    state["bundle"] = bundle
    if annotations:
        state["annotations"] = {key: annotations[key] for key in sorted(annotations)}
    return state
