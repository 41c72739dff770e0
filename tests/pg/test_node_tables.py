"""Events an older runlog wrote to the cluster database's node-style
``events`` table (a node with ``--db postgresql://...``) are moved into the
cluster's tables by ``runlog db upgrade``, their chain intact."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine.eventlog import migrate
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor

from .cli import runlog

psycopg = pytest.importorskip("psycopg")

DIGEST = "d" * 64
ALICE = Actor(1000, 10, "cli", "alice", 1000, {"slurm_job": "501"})
#: The events table's columns at revision 0002, before the hash chain.
OLD = (
    "id, container_id, seq, time_ns, trigger, source, dest, outcome, actor_uid, actor_pid, "
    "actor_transport, payload, machine_digest"
)


def lives(path: Path, ids: list[str]) -> list[tuple[object, ...]]:
    """Real events (a lifecycle per id, a hook's run and a refusal among
    them), as rows of the 0002 ``events`` table."""
    with SQLiteStore(str(path), synchronous="OFF") as store:
        for cid in ids:
            for trigger, source, dest, outcome, payload in (
                ("create", None, "created", "ok", {"actions": [{"name": "spawn", "ms": 3.5}]}),
                ("start", "created", "running", "ok", {"actions": [{"name": "go", "ms": 1.0}]}),
                ("pause", "running", None, "rejected", {"error": "not paused"}),
                ("kill", "running", "stopped", "ok", {}),
            ):
                event = NewEvent(cid, trigger, source, dest, outcome, ALICE, DIGEST, payload)
                store.append(event)
        rows = store.events()
    return [
        (
            e.id, e.container_id, e.seq, e.time_ns, e.trigger, e.source, e.dest, e.outcome,
            e.actor.uid, e.actor.pid, e.actor.transport, orjson.dumps(e.payload).decode(),
            e.machine_digest,
        )
        for e in rows
    ]  # fmt: skip


def write_old(url: str, rows: list[tuple[object, ...]]) -> None:
    """As an older runlog wrote them: events and their containers' states."""
    with psycopg.connect(url) as pg:
        with pg.cursor() as cur:
            cur.executemany(f"INSERT INTO events ({OLD}) VALUES ({', '.join(['%s'] * 13)})", rows)
        for cid in sorted({str(r[1]) for r in rows}):
            mine = [r for r in rows if r[1] == cid]
            pg.execute(
                "INSERT INTO containers (id, state, seq, created_ns, updated_ns, machine_digest) "
                "VALUES (%s, 'stopped', %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "seq = excluded.seq, updated_ns = excluded.updated_ns",
                (cid, mine[-1][2], mine[0][3], mine[-1][3], DIGEST),
            )
        pg.execute("SELECT setval('events_id_seq', (SELECT max(id) FROM events))")


def counts(url: str) -> tuple[int, int, list[int]]:
    with psycopg.connect(url) as pg:
        (old,) = pg.execute("SELECT count(*) FROM events").fetchone()
        (states,) = pg.execute("SELECT count(*) FROM containers").fetchone()
        moved = pg.execute(
            "SELECT log_id FROM cluster_events WHERE node = 'old1' AND log = 'events' ORDER BY 1"
        ).fetchall()
    return int(old), int(states), [int(i) for (i,) in moved]


def test_db_upgrade_moves_an_older_runlogs_events_into_the_cluster_tables(
    pg_url: str, tmp_path: Path
) -> None:
    migrate.upgrade(pg_url, "0002")
    rows = lives(tmp_path / "n.db", ["job1", "job2"])
    write_old(pg_url, rows)
    migrate.upgrade(pg_url)
    unread = runlog("--db", pg_url, "audit")
    assert "events an older runlog wrote to the node-style events table" in unread.stderr
    assert "runlog db upgrade moves them" in unread.stderr
    done = runlog("--db", pg_url, "db", "upgrade", "--node", "old1")
    assert done.returncode == 0, done.stderr
    assert "moved 8 events of the node-style tables into the cluster's" in done.stdout
    assert "as node old1, log events" in done.stdout
    assert counts(pg_url) == (0, 0, [int(r[0]) for r in rows])  # type: ignore[call-overload]
    check = runlog("--db", pg_url, "audit", "--verify")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "node-style" not in check.stderr
    assert "old1:events: chain intact, 8 events verified" in check.stdout, check.stdout
    history = runlog("--db", pg_url, "history", "job2", "--node", "old1")
    assert history.returncode == 0, history.stderr
    assert "create" in history.stdout and "rejected" in history.stdout
    summary = runlog("--db", pg_url, "audit", "--summary", "--format", "jsonl")
    assert summary.returncode == 0, summary.stderr
    with psycopg.connect(pg_url) as pg:
        states = pg.execute(
            "SELECT id, state, seq FROM cluster_containers WHERE node = 'old1' ORDER BY id"
        ).fetchall()
        timing = pg.execute(
            "SELECT actions, duration_ms FROM cluster_events WHERE node = 'old1' "
            "AND trigger = 'create' ORDER BY log_id"
        ).fetchall()
    assert states == [("job1", "stopped", 4), ("job2", "stopped", 4)]
    assert timing == [(1, 3.5), (1, 3.5)]
    again = runlog("--db", pg_url, "db", "upgrade", "--node", "old1")
    assert again.returncode == 0 and "moved" not in again.stdout


def test_events_written_to_the_old_table_after_a_move_continue_its_chain(
    pg_url: str, tmp_path: Path
) -> None:
    migrate.upgrade(pg_url, "0002")
    rows = lives(tmp_path / "n.db", ["job1", "job2", "job3"])
    write_old(pg_url, rows[:4])
    assert runlog("--db", pg_url, "db", "upgrade", "--node", "old1").returncode == 0
    # A node still on the older runlog at the head revision writes on,
    # chained to the table's last event (now moved).
    from engine.eventlog import chain

    with psycopg.connect(pg_url) as pg:
        (last,) = pg.execute(
            "SELECT hash FROM cluster_events WHERE node = 'old1' ORDER BY log_id DESC LIMIT 1"
        ).fetchone()
        for row in rows[4:]:
            values = (*row[1:], None, None, None, None, None)
            digest = chain.link(last, values)
            pg.execute(
                f"INSERT INTO events ({OLD}, actor_user, actor_loginuid, actor_context, job, "
                f"root, prev_hash, hash) VALUES ({', '.join(['%s'] * 20)})",
                (*row, None, None, None, None, None, last, digest),
            )
            last = digest
    done = runlog("--db", pg_url, "db", "upgrade", "--node", "old1")
    assert "moved 8 events" in done.stdout, done.stdout + done.stderr
    assert counts(pg_url)[2] == [int(r[0]) for r in rows]  # type: ignore[call-overload]
    check = runlog("--db", pg_url, "audit", "--verify")
    assert "old1:events: chain intact, 12 events verified" in check.stdout, check.stdout


def test_a_broken_chain_is_moved_and_said(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url, "0002")
    write_old(pg_url, lives(tmp_path / "n.db", ["job1"]))
    migrate.upgrade(pg_url)  # chains them
    with psycopg.connect(pg_url) as pg:
        pg.execute("UPDATE events SET trigger = 'resume' WHERE id = 3")
    done = runlog("--db", pg_url, "db", "upgrade", "--node", "old1")
    assert done.returncode == 0 and "moved 4 events" in done.stdout
    assert "their hash chain is broken at event 3" in done.stderr
    check = runlog("--db", pg_url, "audit", "--verify")
    assert check.returncode == 1 and "chain broken at event 3" in check.stdout
