"""The command line: main(argv), exit codes, messages, logs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.cli import main
from engine.cmdline import Opt, parse
from engine.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "machine" in out and "--systemd-cgroup" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("runlog version ")


def test_unknown_command_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 1
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["machine", "check", "--nope"]) == 1
    assert "flag provided but not defined: --nope" in capsys.readouterr().err


def test_argument_count_in_runc_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == 1
    assert '"history" requires exactly 1 argument(s)' in capsys.readouterr().err


def test_systemd_cgroup_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--systemd-cgroup", "machine", "check"]) == 1
    assert "--systemd-cgroup: runlog manages cgroups through cgroupfs only" in (
        capsys.readouterr().err
    )


def test_machine_check_show_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machine", "check"]) == 0
    out = capsys.readouterr().out
    assert "statemachine.yaml: ok: 6 states, 13 transitions, sha256 " in out
    assert main(["machine", "show"]) == 0
    assert "cgroup.freeze" in capsys.readouterr().out
    assert main(["machine", "graph"]) == 0
    assert capsys.readouterr().out.startswith("stateDiagram-v2\n")


def test_machine_check_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text((REPO / "statemachine.yaml").read_text().replace("cgroup.thaw", "cgroup.melt"))
    assert main(["machine", "check", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    line = next(
        n for n, text in enumerate(bad.read_text().splitlines(), 1) if "cgroup.melt" in text
    )
    assert err.startswith(f"{bad}:{line}:")
    assert "cgroup.melt" in err
    assert len(err.splitlines()) == 1


def test_machine_from_flag_and_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text((REPO / "statemachine.yaml").read_text())
    monkeypatch.setenv("RUNLOG_MACHINE", str(site))
    assert main(["machine", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{site}: ok")
    assert main(["--machine", str(REPO / "statemachine.yaml"), "machine", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{REPO / 'statemachine.yaml'}: ok")


def test_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sub" / "events.db"
    assert main(["--db", str(db), "db", "current"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not db.exists()
    assert main(["--db", str(db), "db", "upgrade"]) == 0
    assert "(head)" in capsys.readouterr().out
    assert main(["--db", str(db), "db", "current"]) == 0
    assert "(head)" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    assert main(["--db", str(db), "db", "current"]) == 1
    assert "9999 (newer than this runlog knows" in capsys.readouterr().out
    assert main(["--db", str(db), "db", "upgrade"]) == 1
    assert "newer than this runlog knows" in capsys.readouterr().err


def test_db_from_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("RUNLOG_DB", str(db))
    assert main(["db", "upgrade"]) == 0
    assert db.exists()


def test_history_of_unknown_container(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "e.db"), "history", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "container nope: container does not exist"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_errors_go_to_the_log_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    log = tmp_path / "runlog.log"
    argv = ["--log", str(log), "--log-format", fmt, "--db", str(tmp_path / "e.db")]
    assert main([*argv, "history", "ghost"]) == 1
    (line,) = log.read_text().splitlines()
    if fmt == "json":
        record = json.loads(line)
        assert record["level"] == "error"
        assert record["msg"] == "container ghost: container does not exist"
    else:
        assert 'level=error msg="container ghost: container does not exist"' in line
        assert line.startswith('time="')


def test_parser_accepts_runc_spellings() -> None:
    opts = (
        Opt("--bundle", "-b", value=True),
        Opt("--force", "-f"),
        Opt("--pid-file", value=True),
    )
    flags, args = parse(
        opts, ["ID", "-b", "/b", "--force=false", "-pid-file", "/p"], interleave=True, where="x"
    )
    assert args == ["ID"] and flags == {"bundle": "/b", "force": False, "pid_file": "/p"}
    flags, args = parse(opts, ["--bundle=/c", "-f", "--", "-x"], interleave=True, where="x")
    assert args == ["-x"] and flags["bundle"] == "/c" and flags["force"] is True
    flags, args = parse(opts, ["-f", "cmd", "-b", "x"], interleave=False, where="x")
    assert args == ["cmd", "-b", "x"] and flags["bundle"] is None
    with pytest.raises(UsageError, match="flag needs an argument: -b"):
        parse(opts, ["-b"], interleave=True, where="x")
    with pytest.raises(UsageError, match="invalid boolean value 'maybe'"):
        parse(opts, ["--force=maybe"], interleave=True, where="x")


def test_cache_dir_sits_next_to_an_sqlite_log() -> None:
    from engine.settings import Settings

    assert Settings(db="/var/lib/runlog/events.db").cache_dir() == "/var/lib/runlog/cache"
    assert Settings(db="sqlite:////srv/log/e.db").cache_dir() == "/srv/log/cache"
    assert Settings(db="postgresql://db/runlog").cache_dir() is None
    assert Settings(db=":memory:").cache_dir() is None


@pytest.mark.parametrize(
    ("environ", "count"),
    [
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 2),
        ({"LISTEN_PID": "+42", "LISTEN_FDS": "+1"}, 1),  # Go's Atoi takes a sign
        ({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, 0),  # another process's
        ({"LISTEN_FDS": "2"}, 0),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "-1"}, 0),
        ({"LISTEN_PID": "42", "LISTEN_FDS": " 2"}, 0),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "1_0"}, 0),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "٣"}, 0),  # a digit, not ASCII
    ],
)
def test_socket_activation_is_read_as_runc_reads_it(environ: dict[str, str], count: int) -> None:
    from engine.commands.container import _listen_fds

    assert _listen_fds(environ, 42) == count
