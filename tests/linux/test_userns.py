"""The subordinate id ranges a rootless mapping is checked against, and --rootless."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ActionError, UsageError
from engine.linux.userns import check_ranges, subordinate_ranges
from engine.oci.model import IDMapping
from engine.settings import Settings, parse_rootless


def test_ranges_by_name_or_uid(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\nbob:200000:10\n2001:300000:5\nbad line\n")
    assert subordinate_ranges(str(subuid), "alice", 2001) == [(100000, 65536), (300000, 5)]
    assert subordinate_ranges(str(tmp_path / "none"), "alice", 2001) == []


def test_check_ranges_names_file_user_and_range(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\n")
    ok = (IDMapping(0, 2001, 1), IDMapping(1, 100000, 65536))
    check_ranges("uidMappings", ok, str(subuid), "alice", 2001)
    bad = (IDMapping(0, 2001, 1), IDMapping(1, 100000, 65537))
    with pytest.raises(ActionError) as err:
        check_ranges("uidMappings", bad, str(subuid), "alice", 2001)
    message = str(err.value)
    assert "linux.uidMappings[1]" in message
    assert "100000-165536" in message
    assert f"{subuid} gives alice 100000-165535" in message
    with pytest.raises(ActionError, match="has no range for alice"):
        check_ranges("gidMappings", (IDMapping(0, 5, 1),), str(tmp_path / "none"), "alice", 2001)


def test_rootless_values_as_runc_reads_them() -> None:
    assert parse_rootless("auto") is None
    assert parse_rootless("") is None
    assert parse_rootless("true") is True
    assert parse_rootless("1") is True
    assert parse_rootless("F") is False
    with pytest.raises(UsageError, match="--rootless"):
        parse_rootless("maybe")
    assert Settings(rootless="true").is_rootless()
    assert not Settings(rootless="false").is_rootless()
    with pytest.raises(UsageError):
        Settings.from_flags({"rootless": "yes"}, {})
