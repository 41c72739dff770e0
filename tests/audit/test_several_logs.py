"""root's view of a node: audit, history and replay over several logs at once.

Logs recorded through the real service (fake actions), read with ``--db``
given more than once or as a glob; every row names the log it came from.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.status import Actor
from tests.audit.test_commands import run


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """No RUNLOG_DB of the caller's decides which log a test reads."""


def _record(path: Path, story: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(str(path), synchronous="OFF")
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), FakeWorld().drivers)
    try:
        for cid, trigger in story:
            try:
                service.request(cid, trigger, Actor(0, 1, "cli"), {})
            except RunlogError:
                pass  # rejected: recorded all the same
    finally:
        store.close()


@pytest.fixture
def logs(tmp_path: Path) -> list[Path]:
    """Three logs, as a site config's /var/lib/runlog/{user}/events.db names
    them; ``c1`` lives in two of them, written turn by turn."""
    a, b, c = (tmp_path / "logs" / name / "events.db" for name in ("alice", "bob", "carol"))
    _record(a, [("c1", "create"), ("c1", "start")])
    _record(b, [("c1", "create"), ("c2", "create"), ("c2", "start")])
    _record(a, [("c1", "pause")])
    _record(c, [("c9", "create"), ("c9", "start"), ("c9", "start")])  # the last is rejected
    return [a, b, c]


def test_audit_merges_logs_in_time_order_each_row_naming_its_log(
    logs: list[Path], capsys: Any
) -> None:
    a, b, c = map(str, logs)
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "--format", "jsonl")
    assert code == 0
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [r["time_ns"] for r in records] == sorted(r["time_ns"] for r in records)
    assert [(r["log"], r["container_id"], r["trigger"]) for r in records] == [
        (a, "c1", "create"),
        (a, "c1", "start"),
        (b, "c1", "create"),
        (b, "c2", "create"),
        (b, "c2", "start"),
        (a, "c1", "pause"),
        (c, "c9", "create"),
        (c, "c9", "start"),
        (c, "c9", "start"),
    ]
    # The same as a table: a LOG column; and the latest N of all the logs.
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "-f", "table")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["TIME", "LOG", "CONTAINER"]
    assert [r.split()[1] for r in rows] == [r["log"] for r in records]
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "-f", "csv")
    header, *lines = list(csv.reader(io.StringIO(out)))
    assert header[-1] == "log" and [line[-1] for line in lines] == [r["log"] for r in records]
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "--limit", "2")
    assert [orjson.loads(line)["log"] for line in out.splitlines()] == [c, c]


def test_a_glob_reads_every_log_it_matches(logs: list[Path], capsys: Any, tmp_path: Path) -> None:
    pattern = str(tmp_path / "logs" / "*" / "events.db")
    code, out, _ = run(capsys, "--db", pattern, "audit", "--trigger", "create")
    assert code == 0
    assert sorted(orjson.loads(line)["log"] for line in out.splitlines()) == sorted(
        [str(logs[0]), str(logs[1]), str(logs[1]), str(logs[2])]
    )
    code, out, err = run(capsys, "--db", str(tmp_path / "none" / "*.db"), "audit")
    assert code != 0 and out == ""
    assert err.strip() == f"--db {tmp_path}/none/*.db: no event log matches this pattern"


def test_summary_and_verify_over_several_logs(logs: list[Path], capsys: Any) -> None:
    a, b, c = map(str, logs)
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "--summary", "-f", "jsonl")
    assert code == 0
    records = [orjson.loads(line) for line in out.splitlines()]
    (window,) = [r for r in records if r["section"] == "window"]
    assert window["events"] == 9
    starts = [r for r in records if r["section"] == "trigger" and r["trigger"] == "start"]
    assert (starts[0]["ok"], starts[0]["rejected"]) == (3, 1)
    code, out, _ = run(capsys, "--db", a, "--db", b, "--db", c, "audit", "--verify")
    assert code == 0
    assert out.splitlines() == [
        f"event log {a}: chain intact, 3 events verified",
        f"event log {b}: chain intact, 3 events verified",
        f"event log {c}: chain intact, 3 events verified",
    ]


def test_history_shows_each_logs_life_of_an_id(logs: list[Path], capsys: Any) -> None:
    a, b, _ = map(str, logs)
    code, out, _ = run(capsys, "--db", a, "--db", b, "history", "c1")
    assert code == 0
    # b's c1 ended before a's pause: a's life is the latest.
    assert out.startswith(f"life 2 of 2 in log {a}\ncontainer c1: paused; 3 events")
    code, out, _ = run(capsys, "--db", a, "--db", b, "history", "--all", "c1")
    assert f"life 1 of 2 in log {b}\ncontainer c1: created; 1 events" in out
    code, out, _ = run(capsys, "--db", a, "--db", b, "history", "-f", "jsonl", "--all", "c1")
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["log"], r["trigger"]) for r in records] == [
        (b, "create"),
        (a, "create"),
        (a, "start"),
        (a, "pause"),
    ]
    code, out, _ = run(capsys, "--db", a, "--db", b, "history", "c2")
    assert out.startswith(f"in log {b}\ncontainer c2: running")


def test_replay_replays_each_history_from_its_own_log(logs: list[Path], capsys: Any) -> None:
    a, b, c = map(str, logs)
    dbs = ("--db", a, "--db", b, "--db", c)
    code, out, _ = run(capsys, *dbs, "replay", "--all", "--format", "jsonl")
    records = [orjson.loads(line) for line in out.splitlines()]
    histories = {r["container_id"]: r for r in records if r["kind"] == "history"}
    assert sorted(histories) == sorted([f"c1@{a}", f"c1@{b}", f"c2@{b}", f"c9@{c}"])
    assert (histories[f"c1@{a}"]["state"], histories[f"c1@{b}"]["state"]) == ("paused", "created")
    assert code == 0 and all(h["agrees"] for h in histories.values())
    code, out, _ = run(capsys, *dbs, "replay", "--id", "c1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"c1@{a}: paused at seq 3")
    assert lines[1].startswith(f"c1@{b}: created at seq 1")
    code, _, err = run(capsys, *dbs, "replay", "--export", str(logs[0].parent / "out"))
    assert code != 0 and "one log at a time" in err


def test_an_unreadable_log_is_one_line_naming_it(logs: list[Path], capsys: Any) -> None:
    a, b, _ = map(str, logs)
    os.unlink(b)
    code, out, err = run(capsys, "--db", a, "--db", b, "audit")
    assert code != 0 and out == ""
    assert err.splitlines() == [f"event log {b}: does not exist (check --db or RUNLOG_DB; "
                                "runlog db upgrade creates one)"]  # fmt: skip


def test_other_commands_take_the_last_db_as_runc_takes_a_repeated_flag(
    logs: list[Path], capsys: Any
) -> None:
    a, b, _ = map(str, logs)
    code, out, _ = run(capsys, "--db", a, "--db", b, "db", "current")
    assert code == 0 and out.startswith(f"event log {b}:")
