"""The SQL views: the same in a new database and a migrated one, and true to the payloads."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog import migrate, sql
from engine.eventlog.record import Event
from engine.eventlog.schema import VIEWS
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(1000, 77, "socket")


def _views(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
        return {str(name): str(text) for name, text in rows}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[Path, list[Event]]]:
    """A log whose payloads hold hook runs in all four places a payload keeps them."""
    world = FakeWorld(
        hooks={
            "createRuntime": [FakeHook("/hooks/net", 0)],
            "poststop": [FakeHook("/hooks/ok", 0), FakeHook("/hooks/teardown", 2, "busy\n")],
        }
    )
    path = tmp_path / "events.db"
    store = SQLiteStore(str(path), synchronous="OFF")
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
    steps = [
        ("a", "create"), ("a", "start"), ("a", "start"), ("a", "kill"), ("a", "delete"),
        ("b", "create"), ("ghost", "pause"),
    ]  # fmt: skip
    for cid, trigger in steps:
        if cid == "b":  # createContainer fails after createRuntime ran: done hooks, failed hooks
            world.hooks["createContainer"] = [FakeHook("/hooks/mount", 5, "no such device")]
        try:
            service.request(cid, trigger, ACTOR, {"signal": 9} if trigger == "kill" else {})
        except RunlogError:
            pass
    events = store.events()
    store.close()
    yield path, events


def _query(path: Path, view: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {view} ORDER BY 1")]


def test_new_and_migrated_databases_have_the_same_views(tmp_path: Path) -> None:
    by_ddl, by_alembic = tmp_path / "ddl.db", tmp_path / "alembic.db"
    SQLiteStore(str(by_ddl)).close()
    migrate.upgrade(migrate.url_for(str(by_alembic)))
    expected = {name: f"CREATE VIEW {name} AS\n{select}" for name, select in VIEWS.items()}
    assert _views(by_ddl) == expected
    assert _views(by_alembic) == expected
    assert set(VIEWS) == {
        "container_current_state",
        "transition_durations",
        "hook_runs",
        "rejected_requests",
    }


def test_migration_0002_froze_the_views_of_the_schema() -> None:
    (path,) = (migrate.migrations_dir() / "versions").glob("0002_*.py")
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.VIEWS == VIEWS


def test_upgrade_from_0001_adds_views_and_downgrade_removes_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = migrate.url_for(str(path))
    migrate.upgrade(url, "0001")
    assert _views(path) == {}
    migrate.upgrade(url)
    assert set(_views(path)) == set(VIEWS)
    cfg = migrate.alembic_config(url)
    command.downgrade(cfg, "0001")
    assert _views(path) == {}
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "machines" not in tables and "events" in tables


def test_container_current_state(log: tuple[Path, list[Event]]) -> None:
    path, _ = log
    rows = {r["container_id"]: r for r in _query(path, "container_current_state")}
    with SQLiteStore(str(path)) as store:
        heads = {c.id: c for c in store.containers()}
    assert set(rows) == set(heads) == {"a", "b", "ghost"}
    for cid, row in rows.items():
        assert (row["state"], row["last_seq"], row["machine_digest"]) == (
            heads[cid].state,
            heads[cid].seq,
            heads[cid].machine_digest,
        )
    assert [rows[c]["present"] for c in ("a", "b", "ghost")] == [0, 0, 0]  # deleted, never
    # Milliseconds: a fake world's five events may all fall in one.
    assert (
        rows["a"]["first_event_at"].endswith("Z")
        and rows["a"]["first_event_at"] <= rows["a"]["last_event_at"]
    )


def test_transition_durations(log: tuple[Path, list[Event]]) -> None:
    path, events = log
    rows = _query(path, "transition_durations")
    attempted = [e for e in events if e.outcome != "rejected"]
    assert [r["event_id"] for r in rows] == [e.id for e in attempted]
    for row, event in zip(rows, attempted, strict=True):
        done = event.payload["done" if event.outcome == "failed" else "actions"]
        assert row["actions"] == len(done)
        assert row["duration_ms"] == pytest.approx(sum(a["ms"] for a in done), abs=1e-3)
        assert (row["trigger"], row["source"], row["dest"]) == (
            event.trigger,
            event.source,
            event.dest,
        )


def _hook_runs_in_python(events: list[Event]) -> list[tuple[Any, ...]]:
    """Every hook run of every payload, found by walking the payloads."""
    found = []
    for e in events:
        records = e.payload.get("actions", []) + e.payload.get("done", [])
        for record in records:
            result = record["result"]
            if not record["action"].startswith("hook"):
                continue
            warned = "warning" in result
            for run in result.get("runs" if warned else "hooks", []):
                failure = "warned" if warned else "failed"
                outcome = "ok" if run["exit_code"] == 0 else failure
                found.append((e.id, result["point"], run["path"], run["exit_code"], outcome))
        if e.outcome == "failed" and e.payload["action"].startswith("hook("):
            point = e.payload["action"][len("hook(") :].split(",")[0]
            for run in e.payload["details"]["runs"]:
                outcome = "ok" if run["exit_code"] == 0 else "failed"
                found.append((e.id, point, run["path"], run["exit_code"], outcome))
    return sorted(found)


def test_hook_runs(log: tuple[Path, list[Event]]) -> None:
    path, events = log
    rows = _query(path, "hook_runs")
    got = sorted((r["event_id"], r["point"], r["path"], r["exit_code"], r["result"]) for r in rows)
    assert got == _hook_runs_in_python(events)
    results = {(r["path"], r["result"]) for r in rows}
    assert {
        ("/hooks/net", "ok"),  # ok create of a, and done before b's failure
        ("/hooks/teardown", "warned"),  # poststop: on_failure warn
        ("/hooks/mount", "failed"),  # b's createContainer aborted its create
    } <= results
    mount = next(r for r in rows if r["path"] == "/hooks/mount")
    assert (mount["trigger"], mount["event_outcome"], mount["stderr_tail"]) == (
        "create",
        "failed",
        "no such device",
    )


def test_rejected_requests(log: tuple[Path, list[Event]]) -> None:
    path, events = log
    rows = _query(path, "rejected_requests")
    rejected = [e for e in events if e.outcome == "rejected"]
    assert [(r["container_id"], r["trigger"], r["state"]) for r in rows] == [
        ("a", "start", "running"),
        ("ghost", "pause", None),
    ]
    for row, event in zip(rows, rejected, strict=True):
        assert row["error"] == event.payload["error"]
        assert (row["actor_uid"], row["actor_pid"], row["transport"]) == (1000, 77, "socket")


def test_machine_archive_is_content_addressed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(sql.INSERT_MACHINE, ("d" * 64, "version: 1\n", "/a.yaml", 1))
        conn.execute(sql.INSERT_MACHINE, ("d" * 64, "other text", "/b.yaml", 2))  # a no-op
        assert conn.execute(sql.SELECT_MACHINE, ("d" * 64,)).fetchall() == [("version: 1\n",)]
        assert conn.execute("SELECT count(*) FROM machines").fetchone() == (1,)


def _documented_queries() -> list[str]:
    """The SQL examples of docs/audit.md's "SQL views" section."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    section = doc.split("\n## SQL views\n", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```sql\n")[1:]]
    return [q.strip() for block in blocks for q in block.split(";") if q.strip()]


def test_the_documented_examples_answer_on_a_log(log: tuple[Path, list[Event]]) -> None:
    path, events = log
    queries = _documented_queries()
    assert len(queries) == 4
    with sqlite3.connect(path) as conn:
        answers = [conn.execute(q).fetchall() for q in queries]
    failures, refused, creates, up = answers
    # the log's events are from today: the week's hook failures are all of them
    assert {(r[1], r[3], r[5]) for r in failures} == {
        ("a", "/hooks/teardown", "warned"),
        ("b", "/hooks/mount", "failed"),
    }
    assert sorted(refused) == [
        (1000, "socket", "pause", None, 1),
        (1000, "socket", "start", "running", 1),
    ]
    (day,) = creates
    assert day[1] == sum(1 for e in events if e.trigger == "create" and e.outcome == "ok")
    assert up == []  # a is deleted, b never came up
    # the README's sqlite3 example is one of them
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r'^sqlite3 \S+ "([^"]+)"$', readme, flags=re.M)
    assert example in queries
