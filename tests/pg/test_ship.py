"""`runlog ship`: node logs into one PostgreSQL database, exactly once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.ship import ServerDown, ShipError, Shipper
from engine.status import Actor

from .cli import runlog

psycopg = pytest.importorskip("psycopg")

REPO = Path(__file__).resolve().parents[2]


def fill(path: Path, count: int, prefix: str = "c", synchronous: str = "OFF") -> None:
    actor = Actor(1000, 7, "cli", "alice", 1000, {"slurm_job": "77"})
    with SQLiteStore(str(path), synchronous=synchronous) as store:
        for i in range(count):
            store.append(
                NewEvent(
                    f"{prefix}{i % 5}", "kill", "running", None, "ok", actor, "d" * 64, {"i": i}
                )
            )


def central(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT node, log, log_id FROM cluster_events ORDER BY 1, 2, 3")
        return [(str(n), str(lg), int(i)) for n, lg, i in rows]


def local_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [int(i) for (i,) in conn.execute("SELECT id FROM events ORDER BY id")]


def test_two_nodes_into_one_database_then_nothing_twice(pg_url: str, tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(a, 30)
    fill(b, 20)
    done = runlog("ship", "--to", pg_url, "--log", str(a), "--node", "n1")
    assert done.returncode == 0, done.stderr
    assert "shipped 30 events" in done.stdout and "0 events behind" in done.stdout
    assert Shipper(pg_url, "n2", [str(b)]).ship_once().events == 20
    assert Shipper(pg_url, "n1", [str(a)]).ship_once().events == 0  # a re-run adds nothing
    rows = central(pg_url)
    assert [r[2] for r in rows if r[0] == "n1"] == local_ids(a)
    assert [r[2] for r in rows if r[0] == "n2"] == local_ids(b)
    with psycopg.connect(pg_url) as conn:
        heads = conn.execute("SELECT node, count(*) FROM cluster_containers GROUP BY 1 ORDER BY 1")
        assert heads.fetchall() == [("n1", 5), ("n2", 5)]
    fill(a, 3)
    assert Shipper(pg_url, "n1", [str(a)]).ship_once().events == 3


def test_a_broken_chain_is_refused_and_nothing_of_it_sent(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "a.db"
    fill(log, 10)
    with sqlite3.connect(log) as conn:
        conn.execute("UPDATE events SET payload = '{\"i\":99}' WHERE id = 4")
    with pytest.raises(ShipError, match="broken at event 4"):
        Shipper(pg_url, "n1", [str(log)]).ship_once()
    done = runlog("ship", "--to", pg_url, "--log", str(log), "--node", "n1")
    assert done.returncode == 1 and "event 4" in done.stderr and "Traceback" not in done.stderr
    assert central(pg_url) == []


def test_a_log_altered_after_shipping_is_refused(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "a.db"
    fill(log, 10)
    Shipper(pg_url, "n1", [str(log)]).ship_once()
    with sqlite3.connect(log) as conn:  # rewritten, chain and all, from event 1
        conn.execute("DELETE FROM events")
    fill(log, 12)
    with pytest.raises(ShipError, match="differs from the copy on the server"):
        Shipper(pg_url, "n1", [str(log)]).ship_once()


SHIP = """
import sys
sys.path.insert(0, sys.argv[1])
from engine.ship import Shipper
Shipper(sys.argv[2], "n1", [sys.argv[3]], batch=int(sys.argv[4])).ship_once()
"""


def test_sigkill_at_random_points_loses_and_duplicates_nothing(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "a.db"
    fill(log, 20_000)
    rng = random.Random(17)
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", SHIP, str(REPO), pg_url, str(log), "500"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    Shipper(pg_url, "n1", [str(log)]).ship_once()
    assert [r[2] for r in central(pg_url)] == local_ids(log)


def test_server_down_then_up_catches_up(pg_url: str, pg_cluster: object, tmp_path: Path) -> None:
    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    log = tmp_path / "a.db"
    fill(log, 50)
    Shipper(pg_url, "n1", [str(log)]).ship_once()
    pg_cluster.stop()
    try:
        fill(log, 25)  # the node keeps working
        with pytest.raises(ServerDown):
            Shipper(pg_url, "n1", [str(log)]).ship_once()
        done = runlog("ship", "--to", pg_url, "--log", str(log), "--node", "n1")
        assert done.returncode == 1 and "cannot reach" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        pg_cluster.start()
    assert Shipper(pg_url, "n1", [str(log)]).ship_once().events == 25
    assert [r[2] for r in central(pg_url)] == local_ids(log)


def test_server_stopped_mid_ship_then_started_it_catches_up(
    pg_url: str, pg_cluster: object, tmp_path: Path
) -> None:
    """The server stops while a ship is in the middle of a batch (held
    there by a lock on the containers' states): the ship says so, exit 1,
    no traceback; the next ship sends the rest, each event once."""
    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    log = tmp_path / "a.db"
    fill(log, 3_000)
    assert runlog("--db", pg_url, "db", "upgrade").returncode == 0  # the schema
    holder = psycopg.connect(pg_url)
    proc = None
    try:
        holder.execute("LOCK TABLE cluster_containers IN EXCLUSIVE MODE")  # one batch's worth
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--log", str(log)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not _waiting_for_a_lock(pg_url):
            assert time.monotonic() < deadline, "the ship never reached its first batch"
            time.sleep(0.05)
        pg_cluster.stop()
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            pg_cluster.start()
    finally:
        holder.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "while shipping" in err, err
    assert "Traceback" not in err
    assert central(pg_url) == []  # the batch was not committed: none of it is there
    done = runlog("ship", "--to", pg_url, "--log", str(log), "--node", "n1")
    assert done.returncode == 0 and "shipped 3000 events" in done.stdout, done.stdout
    assert [r[2] for r in central(pg_url)] == local_ids(log)


def _waiting_for_a_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO cluster_containers%'"
        ).fetchone()
    return found is not None


def test_follow_ships_new_events_as_they_come(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "a.db"
    fill(log, 5, synchronous="FULL")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--log", str(log), "--follow"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(central(pg_url) if _ready(pg_url) else []) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        fill(log, 7, synchronous="FULL")
        while len(central(pg_url)) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [r[2] for r in central(pg_url)] == local_ids(log)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "shipped 12 events" in out, err


def _ready(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('cluster_events')").fetchone() != (None,)


def test_two_shippers_of_one_log_at_once_send_it_once(pg_url: str, tmp_path: Path) -> None:
    import threading

    log = tmp_path / "a.db"
    fill(log, 6000)
    Shipper(pg_url, "n1", [str(log)]).ship_once()  # the schema, before they race
    fill(log, 6000)
    shippers = [Shipper(pg_url, "n1", [str(log)], batch=500) for _ in range(2)]
    counts: list[int] = []
    errors: list[BaseException] = []

    def run(shipper: Shipper) -> None:
        try:
            counts.append(shipper.ship_once().events)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(s,)) for s in shippers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == 6000
    assert [r[2] for r in central(pg_url)] == local_ids(log)


def test_events_follow_on_the_cluster_wakes_on_each_shipped_batch(
    pg_url: str, tmp_path: Path
) -> None:
    import orjson

    log = tmp_path / "a.db"
    actor = Actor(0, 1, "cli")

    def record(*steps: tuple[str, str | None, str]) -> None:
        with SQLiteStore(str(log)) as store:
            for trigger, source, dest in steps:
                store.append(NewEvent("web", trigger, source, dest, "ok", actor, "d" * 64))

    record(("create", None, "created"), ("start", "created", "running"))
    Shipper(pg_url, "n1", [str(log)]).ship_once()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "--db", pg_url, "events", "--follow", "web"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = [orjson.loads(proc.stdout.readline()) for _ in range(2)]
        assert [e["trigger"] for e in seen] == ["create", "start"]
        assert seen[0]["node"] == "n1"
        record(("kill", "running", "stopped"))
        Shipper(pg_url, "n1", [str(log)]).ship_once()
        assert orjson.loads(proc.stdout.readline())["trigger"] == "kill"
        record(("delete", "stopped", "deleted"))
        Shipper(pg_url, "n1", [str(log)]).ship_once()
        assert orjson.loads(proc.stdout.readline())["trigger"] == "delete"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_follow_rides_out_a_server_stop_and_catches_up(
    pg_url: str, pg_cluster: object, tmp_path: Path
) -> None:
    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    log = tmp_path / "a.db"
    fill(log, 5, synchronous="FULL")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--log", str(log), "--follow"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (_ready(pg_url) and len(central(pg_url)) == 5):
            assert time.monotonic() < deadline, "the first events never arrived"
            time.sleep(0.1)
        pg_cluster.stop()
        try:
            fill(log, 20, synchronous="FULL")  # the node goes on; the shipper retries
            time.sleep(1.5)
        finally:
            pg_cluster.start()
        fill(log, 1, synchronous="FULL")
        while len(central(pg_url)) < 26:
            assert time.monotonic() < deadline, "the shipper did not catch up"
            time.sleep(0.2)
        assert [r[2] for r in central(pg_url)] == local_ids(log)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "retrying" in err and "Traceback" not in err
    assert "shipped 26 events" in out


def test_ship_finds_every_users_log_the_site_config_names(pg_url: str, tmp_path: Path) -> None:
    """No --log: root's log and each user's log the site configuration's
    {user} pattern names, each under its own identity (its path)."""
    logs = tmp_path / "logs"
    config = tmp_path / "runlog.toml"
    config.write_text(f'db = "{logs}/{{user}}/events.db"\n')
    paths = {name: logs / name / "events.db" for name in ("root", "alice", "bob")}
    for n, (name, path) in enumerate(paths.items()):
        path.parent.mkdir(parents=True)
        fill(path, 3 + n, prefix=name)
    (logs / "carol").mkdir()  # a user with no log yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["RUNLOG_CONFIG"] = str(config)

    def ship() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--node", "n1"]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)

    done = ship()
    assert done.returncode == 0, done.stderr
    assert "shipped 12 events" in done.stdout
    rows = central(pg_url)
    per_log = {log: [i for _, lg, i in rows if lg == log] for log in {r[1] for r in rows}}
    assert per_log == {str(p.resolve()): local_ids(p) for p in paths.values()}
    fill(paths["bob"], 2, prefix="bob")
    again = ship()
    assert again.returncode == 0 and "shipped 2 events" in again.stdout, again.stdout
    assert len(central(pg_url)) == 14


def test_follow_ships_a_users_log_from_when_it_appears(pg_url: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    config = tmp_path / "runlog.toml"
    config.write_text(f'db = "{logs}/{{user}}/events.db"\n')
    (logs / "root").mkdir(parents=True)
    fill(logs / "root" / "events.db", 4, prefix="r", synchronous="FULL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["RUNLOG_CONFIG"] = str(config)
    argv = [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--node", "n1", "--follow"]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while len(central(pg_url) if _ready(pg_url) else []) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        dave = logs / "dave" / "events.db"
        dave.parent.mkdir()
        fill(dave, 3, prefix="d", synchronous="FULL")  # a new user's first log
        while len(central(pg_url)) < 7 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [r[2] for r in central(pg_url) if r[1] == str(dave.resolve())] == local_ids(dave)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "shipped 7 events" in out, err


def test_a_shipper_mid_batch_never_holds_up_an_append(pg_url: str, tmp_path: Path) -> None:
    """While a batch goes to the server, the node appends without waiting: an
    append that may not wait for the log's lock (wait=False) goes through."""
    log = tmp_path / "a.db"
    fill(log, 40)
    shipper = Shipper(pg_url, "n1", [str(log)], batch=10)
    send = shipper._send
    took: list[float] = []

    def appending_meanwhile(pg: object, name: str, rows: list[tuple[object, ...]]) -> int:
        from engine.eventlog import open_store

        if len(took) == 4:  # the shipper follows the log's end: stop adding to it
            return send(pg, name, rows)
        started = time.monotonic()
        with open_store(str(log), wait=False) as store:
            store.append(
                NewEvent("busy", "kill", "running", None, "ok", Actor(0, 1, "cli"), "d" * 64)
            )
        took.append(time.monotonic() - started)
        return send(pg, name, rows)

    shipper._send = appending_meanwhile  # type: ignore[method-assign]
    shipper.ship_once()
    assert len(took) == 4 and max(took) < 1.0, took
    assert [r[2] for r in central(pg_url)] == local_ids(log)  # those too, all of them


def test_ship_shows_its_progress_on_a_terminal(pg_url: str, tmp_path: Path) -> None:
    import pty

    log = tmp_path / "a.db"
    fill(log, 12_000)
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engine", "ship", "--to", pg_url, "--log", str(log)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            check=False,
            timeout=120,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert done.returncode == 0
    assert b"\rshipped 5000 events" in seen and b"\rshipped 12000 events" in seen, seen
    assert done.stdout.startswith("shipped 12000 events (")
    assert "events/s; lag: 0 events behind" in done.stdout


def test_ship_of_a_node_writing_straight_to_the_database_says_so(pg_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    argv = [sys.executable, "-m", "engine", "--db", pg_url, "ship", "--to", pg_url]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith("runlog ship: no log to send: --db ")
    assert "is a database (its events are there already)" in done.stderr
