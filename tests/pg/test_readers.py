"""audit, history and --verify over a node's SQLite log and the cluster's
PostgreSQL database alike; tampering found on both sides, with its position."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest

from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.ship import Shipper
from engine.status import Actor

from .cli import runlog

psycopg = pytest.importorskip("psycopg")

REPO = Path(__file__).resolve().parents[2]
DIGEST = "d" * 64
ALICE = Actor(1000, 10, "cli", "alice", 1000, {"slurm_job": "501", "slurm_step": "0"})
BOB = Actor(1001, 11, "socket", "bob", 1001, {"podman_name": "web", "podman_id": "ab12"})


def life(store: SQLiteStore, cid: str, actor: Actor, root: str) -> None:
    for trigger, source, dest in (
        ("create", None, "created"),
        ("start", "created", "running"),
        ("kill", "running", "stopped"),
        ("delete", "stopped", "deleted"),
    ):
        store.append(NewEvent(cid, trigger, source, dest, "ok", actor, DIGEST, root=root))


def jsonl(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def logs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "n1.db", tmp_path / "n2.db"
    with SQLiteStore(str(a)) as store:
        life(store, "job1", ALICE, "/run/runlog")
        life(store, "job1", BOB, "/run/user/1001/runlog")  # the id again: another life
    with SQLiteStore(str(b)) as store:
        life(store, "job1", ALICE, "/run/runlog")
        store.append(NewEvent("job2", "create", None, "created", "ok", BOB, DIGEST))
    return a, b


@pytest.fixture
def cluster(pg_url: str, logs: tuple[Path, Path]) -> str:
    Shipper(pg_url, "n1", [str(logs[0])]).ship_once()
    Shipper(pg_url, "n2", [str(logs[1])]).ship_once()
    return pg_url


def test_audit_filters_on_both_backends(logs: tuple[Path, Path], cluster: str) -> None:
    here = socket.gethostname()
    node_log = str(logs[0])
    for db, nodes in ((node_log, {here}), (cluster, {"n1", "n2"})):
        every = jsonl(runlog("--db", db, "audit", "--format", "jsonl"))
        assert len(every) == (8 if db == node_log else 13)
        by_alice = jsonl(runlog("--db", db, "audit", "--user", "alice", "--format", "jsonl"))
        assert by_alice and {e["actor"]["user"] for e in by_alice} == {"alice"}  # type: ignore[index]
        job = jsonl(runlog("--db", db, "audit", "--job", "501", "--format", "jsonl"))
        assert [e["actor"]["context"]["slurm_job"] for e in job] == ["501"] * len(job)  # type: ignore[index]
        assert len(job) == len(by_alice)
        for node in nodes:
            assert jsonl(runlog("--db", db, "audit", "--node", node, "--format", "jsonl"))
        assert jsonl(runlog("--db", db, "audit", "--node", "elsewhere", "--format", "jsonl")) == []
    central = jsonl(runlog("--db", cluster, "audit", "--node", "n2", "--format", "jsonl"))
    assert {e["node"] for e in central} == {"n2"} and len(central) == 5
    summary = runlog("--db", cluster, "audit", "--summary", "--format", "table")
    assert summary.returncode == 0 and "delete" in summary.stdout


def test_history_shows_the_latest_life_and_all_of_them(
    logs: tuple[Path, Path], cluster: str
) -> None:
    latest = runlog("--db", str(logs[0]), "history", "job1")
    assert latest.returncode == 0, latest.stderr
    assert "life 2 of 2" in latest.stdout and "/run/user/1001/runlog" in latest.stdout
    assert "life 1" not in latest.stdout
    every = runlog("--db", str(logs[0]), "history", "job1", "--all")
    assert "life 1 of 2" in every.stdout and "life 2 of 2" in every.stdout
    lives = runlog("--db", cluster, "history", "job1", "--all")
    assert lives.returncode == 0, lives.stderr
    assert lives.stdout.count("life ") == 3 and "on n2" in lives.stdout


def tamper(kind: str, conn: object, table: str, key: str, position: int) -> None:
    execute = conn.execute  # type: ignore[attr-defined]
    mine = "node = 'n1' AND " if table == "cluster_events" else ""
    where = f"{mine}{key} = {position}"
    if kind == "edited":
        execute(f"UPDATE {table} SET trigger = 'pause' WHERE {where}")
    elif kind == "deleted":
        execute(f"DELETE FROM {table} WHERE {where}")
    else:  # inserted: a copy of the event before it, slipped in
        execute(f"UPDATE {table} SET {key} = {key} + 1000 WHERE {mine}{key} >= {position}")
        cols = "container_id, seq, time_ns, trigger, outcome, actor_transport, payload, "
        cols += "machine_digest, prev_hash, hash"
        extra = "node, log, " if table == "cluster_events" else ""
        execute(
            f"INSERT INTO {table} ({extra}{key}, {cols}) SELECT {extra}{position}, "
            f"container_id, seq + 100, time_ns, trigger, outcome, actor_transport, payload, "
            f"machine_digest, prev_hash, hash FROM {table} WHERE {mine}{key} = {position - 1}"
        )


@pytest.mark.parametrize("kind", ["edited", "deleted", "inserted"])
def test_verify_names_the_first_broken_link_on_both_sides(
    logs: tuple[Path, Path], cluster: str, kind: str
) -> None:
    node_log = str(logs[0])
    assert runlog("--db", node_log, "audit", "--verify").returncode == 0
    fine = runlog("--db", cluster, "audit", "--verify")
    assert fine.returncode == 0 and fine.stdout.count("chain intact") == 2
    with sqlite3.connect(node_log) as conn:
        tamper(kind, conn, "events", "id", 5)
    with psycopg.connect(cluster) as conn:
        tamper(kind, conn, "cluster_events", "log_id", 5)
    for db, label in ((node_log, f"event log {node_log}"), (cluster, "n1:")):
        done = runlog("--db", db, "audit", "--verify")
        assert done.returncode == 1, done.stdout
        broken = [line for line in done.stdout.splitlines() if "broken" in line]
        assert len(broken) == 1 and broken[0].startswith(label)
        at = 6 if kind == "deleted" else 5
        assert f"chain broken at event {at}:" in broken[0]
        assert "4 events before it verified" in broken[0]


def test_replay_all_on_the_cluster_replays_each_node_and_log(cluster: str) -> None:
    done = runlog("--db", cluster, "replay", "--all", "--format", "jsonl")
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    (total,) = [r for r in lines if r["kind"] == "total"]
    assert (total["histories"], total["events"]) == (3, 13)
    names = sorted(str(r["container_id"]).split(":")[0] for r in lines if r["kind"] == "history")
    assert names == ["job1@n1", "job1@n2", "job2@n2"]
    # These lives go from kill straight to stopped: the machine says the
    # exit does that, so replay reports them (exit 1), as on a node's log.
    assert done.returncode == 1 and total["diverge"] == 2
    # --id folds each node's and log's history of the id on its own.
    one = runlog("--db", cluster, "replay", "--id", "job1")
    heads = [line for line in one.stdout.splitlines() if line.startswith("job1@")]
    folded = sorted(line.split(":")[0] for line in heads)
    assert folded == ["job1@n1", "job1@n2"], one.stdout
    assert "Traceback" not in one.stderr
