"""A node writing straight to PostgreSQL (``--db postgresql://...``) and nodes
that ship: the cluster's readers show both, as one log each."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import orjson
import pytest

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog.record import NewEvent
from engine.eventlog.sa import DIRECT_LOG, SAStore
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.ship import Shipper
from engine.status import Actor

from .cli import runlog

psycopg = pytest.importorskip("psycopg")

ALICE = Actor(1000, 10, "cli", "alice", 1000, {"slurm_job": "501"})


def _story(store: SQLiteStore | SAStore, story: list[tuple[str, str]]) -> None:
    service = Service(store, Lifecycle(load(default_path()), REGISTRY), FakeWorld().drivers)
    for cid, trigger in story:
        try:
            service.request(cid, trigger, ALICE, {})
        except RunlogError:
            pass  # rejected: recorded all the same


def _jsonl(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_a_node_writing_straight_to_postgresql_is_seen_by_the_cluster_readers(
    pg_url: str, tmp_path: Path
) -> None:
    shipped = tmp_path / "n1.db"
    with SQLiteStore(str(shipped), synchronous="OFF") as store:
        _story(store, [("job1", "create"), ("job1", "start")])
    Shipper(pg_url, "n1", [str(shipped)]).ship_once()
    with SAStore(pg_url, node="n3") as direct:
        _story(direct, [("job1", "create"), ("job3", "create"), ("job3", "start")])
        _story(direct, [("job3", "start")])  # rejected: already running
        assert direct.container("job3") is not None
        assert [e.seq for e in direct.history("job3")] == [1, 2, 3]
    # The node's own view and the cluster's are one: every event shows.
    every = _jsonl(runlog("--db", pg_url, "audit", "--format", "jsonl"))
    assert sorted((e["node"], e["log"]) for e in every) == sorted(
        [("n1", str(shipped.resolve()))] * 2 + [("n3", DIRECT_LOG)] * 4
    )
    n3 = _jsonl(runlog("--db", pg_url, "audit", "--node", "n3", "--format", "jsonl"))
    assert [(e["container_id"], e["trigger"], e["outcome"]) for e in n3] == [
        ("job1", "create", "ok"),
        ("job3", "create", "ok"),
        ("job3", "start", "ok"),
        ("job3", "start", "rejected"),
    ]
    # history: job1 lived on two nodes; job3's life is the direct node's.
    lives = runlog("--db", pg_url, "history", "--all", "job1")
    assert lives.returncode == 0 and f"on n3, log {DIRECT_LOG}" in lives.stdout
    job3 = _jsonl(runlog("--db", pg_url, "history", "--format", "jsonl", "job3"))
    assert [e["seq"] for e in job3] == [1, 2, 3] and {e["node"] for e in job3} == {"n3"}
    # replay and the chain of the direct log, as of any shipped one.
    replayed = _jsonl(runlog("--db", pg_url, "replay", "--all", "--format", "jsonl"))
    names = sorted(str(r["container_id"]) for r in replayed if r["kind"] == "history")
    assert names == sorted(
        [f"job1@n1:{shipped.resolve()}", f"job1@n3:{DIRECT_LOG}", f"job3@n3:{DIRECT_LOG}"]
    )
    assert all(r["agrees"] for r in replayed if r["kind"] == "history")
    verified = runlog("--db", pg_url, "audit", "--verify")
    assert verified.returncode == 0
    assert f"n3:{DIRECT_LOG}: chain intact, 4 events verified" in verified.stdout
    summary = _jsonl(runlog("--db", pg_url, "audit", "--summary", "--format", "jsonl"))
    states = {r["state"]: r["containers"] for r in summary if r["section"] == "state"}
    assert states == {"created": 1, "running": 2}
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    # An edit of the direct log's events is found where it is.
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE cluster_events SET actor_uid = 0 WHERE node = 'n3' AND log_id = 2")
    broken = runlog("--db", pg_url, "audit", "--verify")
    assert broken.returncode == 1 and f"n3:{DIRECT_LOG}: chain broken at event 2" in broken.stdout


def test_the_cli_with_a_postgresql_db_writes_this_nodes_direct_log(pg_url: str) -> None:
    """`runlog --db URL` records a refusal (no such container) in the node's
    direct log, and reads it back through the cluster's reader."""
    done = runlog("--db", pg_url, "kill", "nosuch", "KILL")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    seen = _jsonl(runlog("--db", pg_url, "audit", "--format", "jsonl"))
    assert [(e["node"], e["log"], e["container_id"]) for e in seen] == [
        (socket.gethostname(), DIRECT_LOG, "nosuch")
    ]
    appended = NewEvent("x", "create", None, "created", "ok", ALICE, "d" * 64)
    with SAStore(pg_url) as store:
        assert store.append(appended).id == 2  # the log's next id
