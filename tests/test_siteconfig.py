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
