"""Durability where it matters: the log the runtime opens syncs every
transition's commit; only queries (state, wait) may ride on the next one."""

from __future__ import annotations

import re
from pathlib import Path

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.eventlog import open_store
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(0, 1, "cli")
FULL = 2  # PRAGMA synchronous's number for FULL


def test_the_store_open_store_opens_is_synchronous_full(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.db"))
    try:
        assert isinstance(store, SQLiteStore)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_every_transition_is_a_synced_commit(tmp_path: Path) -> None:
    """A tracing store: every statement the connection runs, in order; the
    synchronous setting in force at each COMMIT says whether it was synced."""
    store = open_store(str(tmp_path / "events.db"))
    assert isinstance(store, SQLiteStore)
    (level,) = store._conn.execute("PRAGMA synchronous").fetchone()
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    world = FakeWorld()
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
    for trigger in ("create", "start", "pause", "resume"):
        service.request("c", trigger, ACTOR)
        service.record_query("c", "state", ACTOR, {})
    service.request("c", "kill", ACTOR, {"signal": 9})
    service.request("c", "delete", ACTOR)
    store.close()

    mode = ("OFF", "NORMAL", "FULL", "EXTRA")[level]
    inserted: str | None = None
    commits: list[tuple[str, str]] = []  # (what the transaction inserted, mode)
    for text in statements:
        if m := re.match(r"PRAGMA synchronous=(\w+)", text):
            mode = m.group(1).upper()
        elif text.startswith("INSERT INTO events"):
            inserted = "query" if '"query":true' in text else "transition"
        elif text == "COMMIT" and inserted is not None:
            commits.append((inserted, mode))
            inserted = None
    transitions = [m for kind, m in commits if kind == "transition"]
    assert len(transitions) == 7  # create start pause resume kill exit delete
    assert set(transitions) == {"FULL"}
    assert [m for kind, m in commits if kind == "query"] == ["NORMAL"] * 4
