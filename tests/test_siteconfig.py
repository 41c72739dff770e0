"""The site configuration (RUNLOG_CONFIG here; /etc/runlog/runlog.toml is
never written by a test): placeholders, precedence, errors that name the
file, the line and the key, and --debug saying where each setting came
from."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.siteconfig import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "runlog.toml"
    path.write_text(text)
    return {"RUNLOG_CONFIG": str(path)}


def test_placeholders_and_where_each_setting_came_from(tmp_path: Path) -> None:
    env = _write(
        tmp_path,
        f'root = "{tmp_path}/run-{{uid}}"\ndb = "{tmp_path}/{{user}}/events.db"\nrootless = true\n',
    )
    uid = os.geteuid()
    user = pwd.getpwuid(uid).pw_name
    settings = Settings.from_flags({}, env)
    assert settings.root == f"{tmp_path}/run-{uid}"
    assert settings.db == f"{tmp_path}/{user}/events.db"
    assert settings.rootless == "true"
    assert settings.sources["root"] == env["RUNLOG_CONFIG"]
    assert settings.defaulted == ()
    # The environment wins over the file, a flag over both.
    settings = Settings.from_flags({"root": "/flag"}, {**env, "RUNLOG_DB": "/env.db"})
    assert (settings.root, settings.db) == ("/flag", "/env.db")
    assert (settings.sources["root"], settings.sources["db"]) == ("--root", "RUNLOG_DB")
    assert "setting rootless='true' from " + env["RUNLOG_CONFIG"] in settings.origins()


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('root = "/a"\ndb "/b"\n', "line 2, key 'db "),
        ('root = "/a"\ncolour = "red"\n', "line 2, key 'colour': unknown"),
        ("root = 3\n", "line 1, key 'root': a string is needed"),
    ],
)
def test_a_malformed_file_names_file_line_and_key(tmp_path: Path, text: str, wanted: str) -> None:
    env = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Settings.from_flags({}, env)
    assert env["RUNLOG_CONFIG"] in str(err.value)
    assert wanted in str(err.value), str(err.value)


def test_debug_says_where_settings_came_from(tmp_path: Path) -> None:
    env = _write(tmp_path, f'root = "{tmp_path}/root"\n')
    base = {k: v for k, v in os.environ.items() if k != "RUNLOG_ROOT"}
    out = subprocess.run(
        [sys.executable, "-m", "engine", "--debug", "list"],
        env={**base, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"setting root='{tmp_path}/root' from {env['RUNLOG_CONFIG']}" in out.stderr
    assert "setting db=" in out.stderr and "from RUNLOG_DB" in out.stderr
    bad = _write(tmp_path, "root = \n")
    out = subprocess.run(
        [sys.executable, "-m", "engine", "state", "x"],
        env={**os.environ, **bad, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert bad["RUNLOG_CONFIG"] in out.stderr and "line 1" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_group_that_may_read_the_log_from_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    env = _write(tmp_path, 'log_group = "adm"\n')
    settings = Settings.from_flags({}, env)
    assert settings.log_group == "adm"
    assert settings.sources["log_group"] == env["RUNLOG_CONFIG"]
    settings = Settings.from_flags({}, {**env, "RUNLOG_LOG_GROUP": "staff"})
    assert (settings.log_group, settings.sources["log_group"]) == ("staff", "RUNLOG_LOG_GROUP")
    assert Settings.from_flags({}, {}).log_group is None


def test_monitor_rest_from_the_file_the_environment_or_the_default(tmp_path: Path) -> None:
    """``monitor_rest``: the seconds idle before a monitor rests, or off.
    RUNLOG_MONITOR_LEAN wins over the file, which wins over the default
    (5 s); --debug names where it came from."""
    default = Settings.from_flags({}, {})
    assert (default.monitor_rest, default.rest_after()) == ("5", 5.0)
    assert "monitor_rest" not in default.sources
    assert "setting monitor_rest='5' from the default" in default.origins()
    for text, rest in (
        ('monitor_rest = "off"\n', None),
        ('monitor_rest = "OFF"\n', None),
        ('monitor_rest = "30"\n', 30.0),
        ('monitor_rest = "0.5"\n', 0.5),
        ('monitor_rest = "0"\n', 0.0),
        ("monitor_rest = 12\n", 12.0),
        ("monitor_rest = 2.5\n", 2.5),
    ):
        env = _write(tmp_path, text)
        settings = Settings.from_flags({}, env)
        assert settings.rest_after() == rest, text
        assert settings.sources["monitor_rest"] == env["RUNLOG_CONFIG"]
        origin = f"setting monitor_rest={settings.monitor_rest!r} from {env['RUNLOG_CONFIG']}"
        assert origin in settings.origins()
    env = _write(tmp_path, 'monitor_rest = "off"\n')
    settings = Settings.from_flags({}, {**env, "RUNLOG_MONITOR_LEAN": "2"})
    assert (settings.rest_after(), settings.sources["monitor_rest"]) == (2.0, "RUNLOG_MONITOR_LEAN")
    assert "setting monitor_rest='2' from RUNLOG_MONITOR_LEAN" in settings.origins()
    for value, rest in (("", 5.0), ("1", 1.0), ("off", None), ("OFF", None), ("0", 0.0)):
        assert Settings.from_flags({}, {"RUNLOG_MONITOR_LEAN": value}).rest_after() == rest, value
    # A typo in the variable is an error naming it, as one in the file is.
    for value in ("-1", "soon", "5s", "nan"):
        with pytest.raises(ConfigError, match=f"RUNLOG_MONITOR_LEAN='{value}': neither seconds"):
            Settings.from_flags({}, {"RUNLOG_MONITOR_LEAN": value})


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('monitor_rest = "soon"\n', "'soon' is neither seconds (0 or more) nor \"off\""),
        ('monitor_rest = "-1"\n', "'-1' is neither seconds"),
        ('monitor_rest = "nan"\n', "'nan' is neither seconds"),
        ("monitor_rest = -3\n", "'-3' is neither seconds"),
        ("monitor_rest = true\n", "a string is needed, not bool"),
        ("monitor_rest = [5]\n", "a string is needed, not list"),
        ("rootless = 5\n", "key 'rootless': a string is needed, not int"),
    ],
)
def test_a_bad_monitor_rest_names_file_line_and_key(tmp_path: Path, text: str, wanted: str) -> None:
    env = _write(tmp_path, 'root = "/r"\n' + text)
    with pytest.raises(ConfigError) as err:
        Settings.from_flags({}, env)
    said = str(err.value)
    assert said.startswith(f"site configuration {env['RUNLOG_CONFIG']}: line 2, key "), said
    assert wanted in said and "\n" not in said, said


def test_the_cgroup_manager_from_a_flag_the_environment_the_file_or_the_default(
    tmp_path: Path,
) -> None:
    default = Settings.from_flags({}, {})
    assert (default.cgroup_manager, default.no_cgroup()) == ("cgroupfs", False)
    assert "setting cgroup_manager='cgroupfs' from the default" in default.origins()
    env = _write(tmp_path, 'cgroup_manager = "disabled"\n')
    settings = Settings.from_flags({}, env)
    assert settings.no_cgroup()
    assert settings.sources["cgroup_manager"] == env["RUNLOG_CONFIG"]
    settings = Settings.from_flags({}, {**env, "RUNLOG_CGROUP_MANAGER": "cgroupfs"})
    assert (settings.no_cgroup(), settings.sources["cgroup_manager"]) == (
        False,
        "RUNLOG_CGROUP_MANAGER",
    )
    settings = Settings.from_flags({"cgroup_manager": "disabled"}, {"RUNLOG_CGROUP_MANAGER": "x"})
    assert (settings.no_cgroup(), settings.sources["cgroup_manager"]) == (True, "--cgroup-manager")
    # systemd is --systemd-cgroup's other spelling (which engine.cli refuses).
    assert Settings.from_flags({"cgroup_manager": "systemd"}, {}).systemd_cgroup
    with pytest.raises(ConfigError, match="RUNLOG_CGROUP_MANAGER='none': not one of"):
        Settings.from_flags({}, {"RUNLOG_CGROUP_MANAGER": "none"})
    env = _write(tmp_path, 'root = "/r"\ncgroup_manager = "off"\n')
    with pytest.raises(ConfigError) as err:
        Settings.from_flags({}, env)
    assert str(err.value) == (
        f"site configuration {env['RUNLOG_CONFIG']}: line 2, key 'cgroup_manager': "
        "'off' is not one of cgroupfs, systemd, disabled"
    )
