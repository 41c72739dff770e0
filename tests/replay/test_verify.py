"""``runlog replay --all``: every history through the recorded machine, or a changed one."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.cli import main
from engine.machine.definition import default_path, load
from engine.replay.progress import ProgressBar

REPO_MACHINE = Path(default_path()).read_text()
PAUSE = "  - {trigger: pause, source: running, dest: paused, actions: [cgroup.freeze]}\n"
KILL = (
    "  - {trigger: kill, source: [created, running, paused], dest: null, "
    "actions: [process.signal]}\n"
)
assert PAUSE in REPO_MACHINE and KILL in REPO_MACHINE


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """RUNLOG_MACHINE and RUNLOG_DB of the caller's play no part."""


def changed(tmp_path: Path, old: str, new: str, name: str = "changed.yaml") -> str:
    path = tmp_path / name
    path.write_text(REPO_MACHINE.replace(old, new))
    load(path)  # a valid machine: the test is about replay, not the loader
    return str(path)


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_unchanged_machine_agrees(recorded_log: Any, capsys: Any) -> None:
    code, out, err = run(capsys, "--db", str(recorded_log.path), "replay", "--all", "-v")
    assert code == 0, out + err
    lines = out.splitlines()
    assert sorted(line.split()[1] for line in lines[:-1]) == ["db-1", "ghost", "web-1"]
    assert all(line.startswith("agrees ") for line in lines[:-1])
    n = len(recorded_log.events)
    assert lines[-1].startswith(f"replayed {n} events of 3 histories through the machines they")
    assert lines[-1].endswith("events/s): 3 agree, 0 diverge")
    assert err == ""


def test_a_machine_that_no_longer_allows_pause_from_running(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    machine = changed(
        tmp_path, PAUSE, "  - {trigger: pause, source: created, dest: paused, actions: []}\n"
    )
    code, out, _ = run(
        capsys, "--db", str(recorded_log.path), "replay", "--all", "--machine", machine
    )
    assert code == 1
    web = next(e for e in recorded_log.events if (e.container_id, e.seq) == ("web-1", 3))
    assert "diverges  web-1  (1 of 13 events)" in out
    assert "diverges  db-1  (1 of 4 events)" in out
    assert "  seq 3  " in out
    assert "pause (running → paused, ok): the machine rejects pause in state running" in out
    assert f"through {machine} (sha256 " in out
    assert out.splitlines()[-1].endswith(": 1 agree, 2 diverge")
    assert web.trigger == "pause"


def test_a_machine_that_now_accepts_what_was_rejected(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    machine = changed(
        tmp_path, "source: running, dest: paused", "source: [running, paused], dest: paused"
    )
    code, out, _ = run(
        capsys,
        "--db",
        str(recorded_log.path),
        "replay",
        "--all",
        "--machine",
        machine,
        "-f",
        "jsonl",
    )
    assert code == 1
    records = [orjson.loads(line) for line in out.splitlines()]
    web = next(r for r in records if r.get("container_id") == "web-1")
    (divergence,) = web["divergences"]
    assert (divergence["seq"], divergence["kind"], divergence["would"]) == (4, "accepts", "paused")
    assert divergence["outcome"] == "rejected" and divergence["trigger"] == "pause"
    total = records[-1]
    assert (total["kind"], total["diverge"], total["histories"]) == ("total", 1, 3)


def test_a_machine_where_kill_reaches_another_state(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    machine = changed(
        tmp_path,
        "dest: null, actions: [process.signal]",
        "dest: stopped, actions: [process.signal]",
    )
    code, out, _ = run(
        capsys, "--db", str(recorded_log.path), "replay", "--all", "--machine", machine
    )
    assert code == 1
    assert (
        "seq 6" in out
        and "kill (running → running, ok): the machine goes to stopped, not running" in out
    )
    assert (
        "seq 11" in out
        and "kill (created → created, ok): the machine goes to stopped, not created" in out
    )
    # Replay went on from the recorded state, so the exits after the kills agree.
    assert "exit" not in out.replace("events/s", "")


def test_filters_select_whole_histories(recorded_log: Any, capsys: Any) -> None:
    db = str(recorded_log.path)
    code, out, _ = run(capsys, "--db", db, "replay", "--all", "--outcome", "failed", "-v")
    assert code == 0
    assert out.splitlines()[0] == "agrees    db-1  (4 events, paused)"
    assert "replayed 4 events of 1 histories" in out
    code, out, _ = run(capsys, "--db", db, "replay", "--all", "--id", "web-*", "--id", "ghost")
    assert "of 2 histories" in out


def test_by_digest_after_the_machine_file_changed(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    db = str(recorded_log.path)
    # Appending archived the machine the containers ran under...
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM machines").fetchone() == (1,)
        conn.execute("DELETE FROM machines")  # as in a log from before that
    # ...and so does a first replay, for a log that lacks it...
    assert run(capsys, "--db", db, "replay", "--all")[0] == 0
    with sqlite3.connect(db) as conn:
        (digest, text) = conn.execute("SELECT digest, text FROM machines").fetchone()
    assert digest == load(default_path()).digest and text == REPO_MACHINE
    # ...so once the site's machine has changed, histories still replay through theirs.
    site = changed(
        tmp_path, "source: running, dest: paused", "source: [running, paused], dest: paused"
    )
    code, out, err = run(capsys, "--db", db, "--machine", site, "replay", "--all")
    assert code == 0, out
    assert err == ""
    # and --machine on replay itself is the changed machine's verdict
    assert run(capsys, "--db", db, "replay", "--all", "--machine", site)[0] == 1


def test_an_unknown_digest_falls_back_to_the_current_machine_with_a_note(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    db = str(recorded_log.path)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM machines")  # a log from before machines were archived
    site = changed(
        tmp_path, "source: running, dest: paused", "source: [running, paused], dest: paused"
    )
    code, out, err = run(capsys, "--db", db, "--machine", site, "replay", "--all")
    digest = load(default_path()).digest
    assert f"note: machine {digest[:12]} is not archived here" in err
    assert f"replayed through {site}" in err
    assert code == 1 and "now accepts pause in state paused" in out


def test_a_machine_file_that_does_not_load(recorded_log: Any, tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(REPO_MACHINE.replace("dest: paused", "dest: asleep"))
    code, out, err = run(
        capsys, "--db", str(recorded_log.path), "replay", "--all", "--machine", str(bad)
    )
    assert (code, out) == (1, "")
    assert err.startswith(f"{bad}:34: transitions[2].dest: state 'asleep' is not declared")
    code, _, err = run(
        capsys,
        "--db",
        str(recorded_log.path),
        "replay",
        "--all",
        "--machine",
        str(tmp_path / "none.yaml"),
    )
    assert code == 1 and "none.yaml: cannot read" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "what to replay?"),
        (("--all", "--fixtures", "x"), "are separate modes"),
        (("--id", "web-1", "--since", "2h"), "--since need --all or --export"),
        (("--fixtures", "x", "--trigger", "start"), "--trigger select in an event log"),
        (("--id", "web-*"), "--id takes a container id here, not a prefix"),
    ],
)
def test_usage_errors(recorded_log: Any, capsys: Any, argv: tuple[str, ...], message: str) -> None:
    code, _, err = run(capsys, "--db", str(recorded_log.path), "replay", *argv)
    assert code == 1 and message in err


def test_unknown_schema_database(tmp_path: Path, capsys: Any) -> None:
    foreign = tmp_path / "x.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (a)")
    code, _, err = run(capsys, "--db", str(foreign), "replay", "--all")
    assert code == 1 and "is not a runlog event log (its tables: t)" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    assert ProgressBar.for_terminal(10**6, io.StringIO()) is None
    assert ProgressBar.for_terminal(10, Terminal()) is None  # not worth a bar
    screen = Terminal()
    bar = ProgressBar.for_terminal(200_000, screen)
    assert bar is not None
    bar(50_000)
    bar(200_000)
    bar.close()
    text = screen.getvalue()
    assert "\r[#######-----------------------]  25%  50,000/200,000 events" in text
    assert "\r[##############################] 100%  200,000/200,000 events" in text
    assert text.endswith("\r\033[K")
