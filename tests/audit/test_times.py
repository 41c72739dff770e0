"""Reading times from the command line; writing them for people and programs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.audit.times import local_iso, parse_time, utc_iso
from engine.errors import UsageError

NOW = 1_800_000_000_000_000_000
SEC = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ago"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 7 * 86400), ("1w", 7 * 86400), ("1.5h", 5400)],
)
def test_durations_count_back_from_now(text: str, ago: int) -> None:
    assert parse_time(text, NOW) == NOW - ago * SEC


def test_now() -> None:
    assert parse_time("now", NOW) == NOW


def test_iso_with_offset_and_z() -> None:
    expected = int(datetime(2026, 1, 10, 12, tzinfo=UTC).timestamp()) * SEC
    assert parse_time("2026-01-10T12:00:00Z", NOW) == expected
    assert parse_time("2026-01-10T13:00:00+01:00", NOW) == expected
    assert parse_time("2026-01-10T12:00:00.25Z", NOW) == expected + SEC // 4


def test_iso_without_offset_is_local_time() -> None:
    local = datetime(2026, 1, 10, 12, 30).astimezone()
    assert parse_time("2026-01-10T12:30", NOW) == int(local.timestamp()) * SEC
    midnight = datetime(2026, 1, 10).astimezone()
    assert parse_time("2026-01-10", NOW) == int(midnight.timestamp()) * SEC


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-5m", "m", "2026-13-01", ""])
def test_unreadable_times_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match=r"--since: cannot read .* as a time; use ISO 8601"):
        parse_time(text, NOW, flag="--since")


def test_utc_iso_keeps_nanoseconds() -> None:
    ns = int(datetime(2026, 1, 10, 4, 5, 6, tzinfo=UTC).timestamp()) * SEC + 123_456_789
    assert utc_iso(ns) == "2026-01-10T04:05:06.123456789Z"


def test_local_iso_has_milliseconds_and_the_local_offset() -> None:
    ns = int(datetime(2026, 1, 10, 4, 5, 6, tzinfo=UTC).timestamp()) * SEC + 987_654_321
    text = local_iso(ns)
    back = datetime.fromisoformat(text)
    assert back.utcoffset() == datetime.fromtimestamp(ns // SEC).astimezone().utcoffset()
    assert abs(back - datetime(2026, 1, 10, 4, 5, 6, 987_000, tzinfo=UTC)) < timedelta(
        microseconds=1
    )
    assert text.count(".") == 1 and len(text.split(".")[1]) == len("987+00:00")
