"""runlog db prune: old events go, an anchor stays, what remains verifies;
on a node's log and on the cluster's database, with shipping across it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.audit.times import utc_iso
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.ship import ShipError, Shipper
from engine.status import Actor

from .cli import runlog

DAY = 86_400 * 10**9
T0 = 1_780_000_000 * 10**9
ACTOR = Actor(0, 1, "cli")


def add(path: Path, days: range) -> None:
    with SQLiteStore(str(path), synchronous="OFF") as store:
        for day in days:
            for cid in ("a", "b"):
                store.append(
                    NewEvent(
                        cid, "kill", "running", None, "ok", ACTOR, "d" * 64, time_ns=T0 + day * DAY
                    )
                )


def test_a_pruned_node_log_still_verifies_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "events.db"
    add(log, range(10))
    done = runlog("--db", str(log), "db", "prune", "--before", utc_iso(T0 + 4 * DAY))
    assert done.returncode == 0, done.stderr
    assert "8 events before" in done.stdout and "anchored at event 8" in done.stdout
    check = runlog("--db", str(log), "audit", "--verify")
    assert check.returncode == 0, check.stdout
    assert "12 events verified (after 8 pruned" in check.stdout
    summary = runlog("--db", str(log), "audit", "--summary", "--format", "table")
    assert "pruned: 8 events" in summary.stdout
    recent = runlog(
        "--db", str(log), "audit", "--summary", "--since", utc_iso(T0 + 6 * DAY), "-f", "table"
    )
    assert "pruned" not in recent.stdout
    add(log, range(10, 12))  # the chain goes on from what is left
    assert runlog("--db", str(log), "audit", "--verify").returncode == 0
    done = runlog("--db", str(log), "db", "prune", "--before", utc_iso(T0 + 20 * DAY))
    assert "15 events before" in done.stdout  # all but the newest: ids never repeat
    add(log, range(20, 21))
    check = runlog("--db", str(log), "audit", "--verify")
    assert check.returncode == 0 and "3 events verified (after 23 pruned" in check.stdout
    with sqlite3.connect(log) as conn:
        assert [i for (i,) in conn.execute("SELECT id FROM events")] == [24, 25, 26]


def test_ship_and_prune_on_the_cluster(pg_url: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    log = tmp_path / "events.db"
    add(log, range(10))
    runlog("--db", str(log), "db", "prune", "--before", utc_iso(T0 + 2 * DAY))
    Shipper(pg_url, "n1", [str(log)]).ship_once()  # first shipped after a prune: anchored
    check = runlog("--db", pg_url, "audit", "--verify")
    assert check.returncode == 0 and "16 events verified (after 4 pruned" in check.stdout
    done = runlog("--db", pg_url, "db", "prune", "--before", utc_iso(T0 + 20 * DAY))
    assert done.returncode == 0 and "16 events before" in done.stdout
    add(log, range(10, 12))
    assert Shipper(pg_url, "n1", [str(log)]).ship_once().events == 4  # resumes at the anchor
    check = runlog("--db", pg_url, "audit", "--verify")
    assert check.returncode == 0 and "4 events verified (after 20 pruned" in check.stdout
    summary = runlog("--db", pg_url, "audit", "--summary", "-f", "table")
    assert "pruned: 20 events of n1:" in summary.stdout


def test_events_pruned_before_they_were_shipped_are_a_gap(pg_url: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    log = tmp_path / "events.db"
    add(log, range(4))
    Shipper(pg_url, "n1", [str(log)]).ship_once()
    add(log, range(4, 8))
    runlog("--db", str(log), "db", "prune", "--before", utc_iso(T0 + 6 * DAY))
    with pytest.raises(ShipError, match="pruned before they were shipped"):
        Shipper(pg_url, "n1", [str(log)]).ship_once()
