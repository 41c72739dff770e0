"""engine.places: the event log never on a network filesystem, the user's
default log elsewhere then, and private directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import places
from engine.errors import RunlogError
from engine.eventlog import open_store
from engine.layout import default_root, private
from engine.settings import Settings


@pytest.fixture
def nfs_under(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths under any of these are on NFS (statfs faked)."""
    under: list[str] = []
    real = places.filesystem_type

    def fake(path: str) -> int:
        if any(path == u or path.startswith(u + "/") for u in under):
            return 0x6969
        return real(path)

    monkeypatch.setattr(places, "filesystem_type", fake)
    return under


def test_sqlite_log_on_nfs_is_refused_naming_the_flag_and_variable(
    tmp_path: Path, nfs_under: list[str]
) -> None:
    nfs_under.append(str(tmp_path))
    with pytest.raises(RunlogError) as err:
        open_store(str(tmp_path / "log" / "events.db"))
    message = str(err.value)
    assert "NFS" in message and "--db" in message and "RUNLOG_DB" in message
    assert not (tmp_path / "log").exists()


def test_local_filesystem_is_fine(tmp_path: Path) -> None:
    assert places.network_filesystem(str(tmp_path / "a" / "b")) is None
    assert places.filesystem_type(str(tmp_path)) != 0
    open_store(str(tmp_path / "events.db")).close()


def test_default_db_leaves_a_network_home(tmp_path: Path, nfs_under: list[str]) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    assert places.default_db(env, 2001) == f"{home}/.local/state/runlog/events.db"
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    assert places.default_db(env, 2001) == f"{tmp_path}/state/runlog/events.db"
    nfs_under.append(str(tmp_path))
    assert places.default_db(env, 2001) == "/var/tmp/runlog-2001/events.db"


def test_default_root() -> None:
    assert default_root(0, "/run/user/0") == "/run/runlog"
    assert default_root(2001, "/run/user/2001") == "/run/user/2001/runlog"
    assert default_root(2001, None) == "/tmp/runlog-2001"
    assert default_root(2001, "relative") == "/tmp/runlog-2001"


def test_private_dir_made_and_checked(tmp_path: Path) -> None:
    uid = os.geteuid()
    target = tmp_path / "a" / "b" / "runlog"
    places.private_dir(str(target), uid)
    assert private(str(target), uid)
    assert (target.stat().st_mode & 0o777, target.parent.stat().st_mode & 0o777) == (0o700,) * 2
    target.chmod(0o755)
    with pytest.raises(places.PlaceError, match=f"{target} has mode 0755"):
        places.private_dir(str(target), uid)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(places.PlaceError, match=f"{link} is a symlink"):
        places.private_dir(str(link), uid)
    with pytest.raises(places.PlaceError, match="belongs to uid"):
        places.private_dir(str(tmp_path / "a"), uid + 1)


def test_settings_say_which_places_were_defaults(tmp_path: Path) -> None:
    settings = Settings.from_flags({"root": str(tmp_path)}, {})
    assert settings.defaulted == ("db",)
    assert Settings.from_flags({}, {"RUNLOG_DB": "x", "RUNLOG_ROOT": "y"}).defaulted == ()
