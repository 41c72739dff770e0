"""``runlog audit`` and ``runlog history`` from the command line: formats, exit codes, messages."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.audit.times import local_iso
from engine.cli import main
from engine.eventlog import migrate, sql


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """No RUNLOG_DB of the caller's decides which log a test reads."""


def test_jsonl_is_the_default_off_a_terminal(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "--db", str(audit_log.path), "audit", "--id", "web-1")
    assert code == 0
    records = [orjson.loads(line) for line in out.splitlines()]
    expected = [e for e in audit_log.events if e.container_id == "web-1"]
    assert [r["seq"] for r in records] == [e.seq for e in expected]
    first = records[0]
    assert list(first) == sorted(first)  # stable, sorted keys
    assert first["payload"] == expected[0].payload
    assert first["actor"] == {"uid": 0, "pid": 100, "transport": "cli"}
    assert first["time"].endswith("Z") and first["time_ns"] == expected[0].time_ns


def test_table(audit_log: Any, capsys: Any) -> None:
    db = str(audit_log.path)
    code, out, _ = run(capsys, "--db", db, "audit", "--outcome", "rejected", "-f", "table")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "TIME",
        "CONTAINER",
        "SEQ",
        "TRIGGER",
        "TRANSITION",
        "OUTCOME",
        "ACTOR",
        "DETAIL",
    ]
    rejected = [e for e in audit_log.events if e.outcome == "rejected"]
    assert len(rows) == len(rejected)
    for row, event in zip(rows, rejected, strict=True):
        assert row.startswith(local_iso(event.time_ns) + "  ")
        assert f" {event.container_id} " in row and " rejected " in row
        assert row.endswith(event.payload["error"])
    # columns line up: every row has its CONTAINER where the header has it
    at = header.index("CONTAINER")
    assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows)


def test_csv(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "--db", str(audit_log.path), "audit", "--format=csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(audit_log.events)
    failed = next(r for r in rows if r["outcome"] == "failed")
    event = next(e for e in audit_log.events if e.outcome == "failed")
    assert (failed["container_id"], int(failed["seq"]), failed["source"]) == ("db-1", 1, "")
    assert orjson.loads(failed["payload"]) == event.payload
    assert "quota exceeded" in failed["detail"]


def test_no_match_in_a_table(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(
        capsys, "--db", str(audit_log.path), "audit", "--trigger", "nope", "-f", "table"
    )
    assert (code, out) == (0, "no events match\n")


def test_summary_formats(audit_log: Any, capsys: Any) -> None:
    db = str(audit_log.path)
    code, out, _ = run(capsys, "--db", db, "audit", "--summary", "-f", "table")
    assert code == 0
    assert f"{len(audit_log.events)} events" in out.splitlines()[0]
    assert "HOOK FAILURES BY POINT" in out and "poststop" in out
    code, out, _ = run(capsys, "--db", db, "audit", "--summary", "-f", "jsonl", "--limit", "2")
    records = [orjson.loads(line) for line in out.splitlines()]
    assert records[0]["section"] == "window" and records[0]["events"] == len(audit_log.events)
    assert sum(1 for r in records if r["section"] == "slowest") == 2
    code, out, _ = run(capsys, "--db", db, "audit", "--summary", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    warned = [r for r in rows if r["section"] == "hook_failures" and r["measure"] == "warned"]
    assert {(r["key"], r["value"]) for r in warned} == {("poststop", "1"), ("createRuntime", "0")}


def test_history_shows_actions_results_and_who(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "--db", str(audit_log.path), "history", "web-1")
    assert code == 0
    assert out.startswith("container web-1: deleted; 8 events from ")
    assert "process.spawn_init" in out and "pid 1001" in out
    assert "/usr/libexec/net-setup exit 0" in out
    assert "signal 15 (SIGTERM) sent to pid 1001" in out
    assert "killed by signal 15 (SIGTERM)" in out
    assert "rejected: pause web-1: container not running (state: paused)" in out
    assert "socket uid 1000 pid 200" in out
    assert "external uid 0 pid 100 (noticed during refresh)" in out
    assert "/usr/libexec/net-teardown exit 1 (0.0 ms): veth gone" in out


def test_history_of_a_failed_create(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "--db", str(audit_log.path), "history", "db-1")
    assert code == 0
    assert "/usr/libexec/quota exit 3 (0.0 ms): quota exceeded" in out
    assert "process.spawn_init" in out and "(undone)" in out
    assert (
        "failed: hook(createRuntime, abort): createRuntime hook /usr/libexec/quota exited with "
        "status 3: quota exceeded (undone: process.spawn_init, cgroup.create)"
    ) in out


def test_history_jsonl(audit_log: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "--db", str(audit_log.path), "history", "ghost", "-f", "jsonl")
    assert code == 0
    (record,) = [orjson.loads(line) for line in out.splitlines()]
    assert (record["trigger"], record["outcome"], record["source"]) == ("start", "rejected", None)


@pytest.mark.parametrize(
    "argv", [("audit", "--id", "nosuch"), ("audit", "--id", "zz*", "--summary")]
)
def test_unknown_container(audit_log: Any, capsys: Any, argv: tuple[str, ...]) -> None:
    code, out, err = run(capsys, "--db", str(audit_log.path), *argv)
    assert code == 1 and out == ""
    assert str(audit_log.path) in err
    assert "no such container" in err or "no container id begins with 'zz'" in err


def test_history_of_an_unknown_container_in_runcs_words(
    audit_log: Any, tmp_path: Path, capsys: Any
) -> None:
    code, out, err = run(capsys, "--db", str(audit_log.path), "history", "nosuch")
    assert (code, out, err) == (1, "", "container nosuch: container does not exist\n")
    missing = tmp_path / "none.db"
    code, out, err = run(capsys, "--db", str(missing), "history", "nosuch")
    assert (code, out, err) == (1, "", "container nosuch: container does not exist\n")
    assert not missing.exists()


def test_missing_database_is_not_created(tmp_path: Path, capsys: Any) -> None:
    db = tmp_path / "typo.db"
    code, _, err = run(capsys, "--db", str(db), "audit")
    assert code == 1
    assert f"event log {db}: does not exist" in err
    assert not db.exists()


def test_database_of_an_unknown_schema(tmp_path: Path, capsys: Any) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    code, _, err = run(capsys, "--db", str(foreign), "audit")
    assert code == 1
    assert "is not a runlog event log (its tables: accounts)" in err


def test_newer_schema_revision(audit_log: Any, capsys: Any) -> None:
    with sqlite3.connect(audit_log.path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    code, _, err = run(capsys, "--db", str(audit_log.path), "history", "web-1")
    assert code == 1
    assert "has schema revision 9999, which this runlog does not know" in err


def test_older_schema_revision_says_to_upgrade(tmp_path: Path, capsys: Any) -> None:
    old = tmp_path / "old.db"
    migrate.upgrade(migrate.url_for(str(old)), sql.REVISIONS[0])
    code, _, err = run(capsys, "--db", str(old), "audit")
    assert code == 1
    assert f"is at schema revision {sql.REVISIONS[0]}, older than" in err
    assert "runlog db upgrade" in err
    with sqlite3.connect(old) as conn:  # untouched
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"


def test_not_a_database(tmp_path: Path, capsys: Any) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 10)
    code, _, err = run(capsys, "--db", str(notes), "audit")
    assert code == 1 and "is not an SQLite database" in err


def test_an_unreachable_database_is_one_line(capsys: Any) -> None:
    code, _, err = run(capsys, "--db", "postgresql://db.invalid/runlog", "audit")
    assert code == 1 and err.startswith("event log postgresql://db.invalid/runlog: cannot be read")
    assert len(err.splitlines()) == 1


def test_bad_flag_value(audit_log: Any, capsys: Any) -> None:
    code, _, err = run(capsys, "--db", str(audit_log.path), "audit", "--since", "last tuesday")
    assert code == 1 and "--since: cannot read 'last tuesday' as a time" in err


def test_a_signal_sent_is_not_read_as_a_death() -> None:
    from engine.audit.describe import action_detail

    sent = {"signal": 15, "all": True, "pids": [7, 9]}
    assert action_detail(sent) == "signal 15 (SIGTERM) sent to every process: pids 7, 9"
    assert action_detail({"signal": 9}) == "killed by signal 9 (SIGKILL)"


def test_who_reaped_the_init_and_what_seccomp_left_out_are_told() -> None:
    from engine.audit.describe import action_detail

    spawned = {"pid": 41, "init_parent": "caller", "seccomp_skipped": ["nosuch"]}
    assert action_detail(spawned) == (
        "pid 41; its parent: the caller of create; seccomp: left out nosuch"
    )
    assert action_detail({"reaped_by_caller": True}) == (
        "status taken by the caller of create, which reaped it"
    )
