"""One contract, every event store: SQLite file, SQLite in memory, in-memory,
and the SQLAlchemy store (on an SQLite URL)."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import ConcurrencyError
from engine.eventlog.chain import GENESIS, link
from engine.eventlog.memory import MemoryStore
from engine.eventlog.record import Event, NewEvent
from engine.eventlog.sa import SAStore
from engine.eventlog.sqlite import SQLiteStore
from engine.eventlog.store import EventStore
from engine.jsonfast import dumps
from engine.status import Actor

DIGEST = "ab" * 32
ACTOR = Actor(0, 4242, "cli")
WHEN = 1_700_000_000_123_456_789  # ns: needs 64 bits


def new(
    cid: str,
    trigger: str = "create",
    source: str | None = "creating",
    dest: str | None = "created",
    outcome: str = "ok",
    payload: dict[str, object] | None = None,
    time_ns: int | None = None,
) -> NewEvent:
    return NewEvent(cid, trigger, source, dest, outcome, ACTOR, DIGEST, payload, time_ns)


def NewEvent_of(event: Event) -> NewEvent:
    """The event as its writer handed it over, to recompute its hash."""
    return NewEvent(
        event.container_id,
        event.trigger,
        event.source,
        event.dest,
        event.outcome,
        event.actor,
        event.machine_digest,
        event.payload,
        event.time_ns,
        event.root,
    )


class StoreContract:
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        raise NotImplementedError

    def test_seq_is_gapless_per_container_and_ids_totally_ordered(self, store: EventStore) -> None:
        got = [store.append(new(cid)) for cid in ["a", "b", "a", "a", "b"]]
        assert [(e.container_id, e.seq) for e in got] == [
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("a", 3),
            ("b", 2),
        ]
        ids = [e.id for e in got]
        assert ids == sorted(ids) and len(set(ids)) == 5

    def test_history_round_trips_every_field(self, store: EventStore) -> None:
        payload = {"pid": 17, "hooks": [{"exit": 3, "stderr": "é\n\u2603"}], "ok": True, "x": None}
        appended = store.append(
            new(
                "c1",
                "kill",
                "running",
                None,
                "rejected",
                payload,
                time_ns=WHEN,
            )
        )
        (read,) = store.history("c1")
        assert read == appended
        assert read.payload == payload
        assert read.time_ns == WHEN
        assert read.actor == ACTOR
        assert read.machine_digest == DIGEST
        assert (read.trigger, read.source, read.dest, read.outcome) == (
            "kill",
            "running",
            None,
            "rejected",
        )

    def test_history_after_seq_and_unknown_container(self, store: EventStore) -> None:
        for _ in range(4):
            store.append(new("c"))
        assert [e.seq for e in store.history("c", after_seq=2)] == [3, 4]
        assert store.history("nobody") == []

    def test_events_in_global_order_with_limit(self, store: EventStore) -> None:
        appended = [store.append(new(cid)) for cid in "abcab"]
        assert [e.id for e in store.events()] == [e.id for e in appended]
        after = store.events(after_id=appended[1].id, limit=2)
        assert [e.id for e in after] == [appended[2].id, appended[3].id]

    def test_expected_seq_detects_a_concurrent_writer(self, store: EventStore) -> None:
        store.append(new("c"), expected_seq=0)
        store.append(new("c"), expected_seq=1)
        with pytest.raises(ConcurrencyError) as info:
            store.append(new("c"), expected_seq=1)
        assert (info.value.expected_seq, info.value.actual_seq) == (1, 2)
        assert [e.seq for e in store.history("c")] == [1, 2]
        row = store.container("c")
        assert row is not None and row.seq == 2

    def test_projection_follows_ok_events_only(self, store: EventStore) -> None:
        store.append(new("c", "create", "creating", "created", "ok", time_ns=10))
        assert store.container("c").state == "created"  # type: ignore[union-attr]
        store.append(new("c", "pause", "created", None, "rejected", time_ns=20))
        store.append(new("c", "start", "created", None, "failed", time_ns=30))
        row = store.container("c")
        assert row is not None
        assert (row.state, row.seq, row.created_ns, row.updated_ns) == ("created", 3, 10, 30)
        store.append(new("c", "start", "created", "running", "ok", time_ns=40))
        assert store.container("c").state == "running"  # type: ignore[union-attr]

    def test_rejected_request_for_unknown_id_leaves_no_container(self, store: EventStore) -> None:
        store.append(new("ghost", "start", None, None, "rejected"))
        row = store.container("ghost")
        assert row is not None and row.state is None and row.seq == 1
        assert store.container("other") is None

    def test_containers_sorted_by_id(self, store: EventStore) -> None:
        for cid in ["zeta", "alpha", "mid"]:
            store.append(new(cid))
        assert [r.id for r in store.containers()] == ["alpha", "mid", "zeta"]

    def test_stored_payload_is_a_copy(self, store: EventStore) -> None:
        payload: dict[str, object] = {"n": 1}
        store.append(new("c", payload=payload))
        payload["n"] = 2
        assert store.history("c")[0].payload == {"n": 1}

    def test_each_event_carries_the_hash_of_the_one_before(self, store: EventStore) -> None:
        got = [store.append(new(cid, payload={"n": n})) for n, cid in enumerate("abab")]
        assert got[0].prev_hash == GENESIS
        assert [e.prev_hash for e in got[1:]] == [e.hash for e in got[:-1]]
        read = store.events()
        assert [e.hash for e in read] == [e.hash for e in got]
        assert len({e.hash for e in read}) == 4
        for event in read:
            assert event.hash == link(
                event.prev_hash or "", NewEvent_of(event).chained(event.seq, dumps(event.payload))
            )

    def test_identity_and_life_round_trip(self, store: EventStore) -> None:
        actor = Actor(1000, 77, "socket", "alice", 1000, {"slurm_job": "42", "podman_id": "ff"})
        store.append(NewEvent("c", "create", None, "created", "ok", actor, DIGEST, root="/r"))
        (read,) = store.history("c")
        assert read.actor == actor and read.actor.job == "42"
        assert read.root == "/r"

    def test_an_event_not_waited_for_is_kept_all_the_same(self, store: EventStore) -> None:
        store.append(new("c"))
        store.append(new("c", "state", "created", "created"), durable=False)
        assert [(e.seq, e.trigger) for e in store.history("c")] == [(1, "create"), (2, "state")]


class TestSQLiteFile(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        with SQLiteStore(str(tmp_path / "events.db")) as s:
            yield s

    def test_a_query_commits_without_a_sync_and_full_comes_back(self, tmp_path: Path) -> None:
        with SQLiteStore(str(tmp_path / "q.db")) as store:
            said: list[str] = []
            store._conn.set_trace_callback(said.append)
            store.append(new("c"))
            store.append(new("c", "state", "created", "created"), durable=False)
            store.append(new("c", "start", "created", "running"))
            store._conn.set_trace_callback(None)
            lazy = said.index("PRAGMA synchronous=NORMAL")
            assert said.count("PRAGMA synchronous=NORMAL") == 1
            assert said[lazy + 1] == "BEGIN IMMEDIATE"
            assert said[lazy + 1 :].index("PRAGMA synchronous=FULL") > said[lazy + 1 :].index(
                "COMMIT"
            )
            assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert [e.trigger for e in store.history("c")] == ["create", "state", "start"]


class TestSQLiteMemory(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        with SQLiteStore(":memory:") as s:
            yield s


class TestMemory(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        with MemoryStore() as s:
            yield s


class TestPostgreSQL(StoreContract):
    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[EventStore]:
        with SAStore(pg_url) as s:
            yield s


class TestSQLAlchemy(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        with SAStore(f"sqlite:///{tmp_path / 'events.db'}") as s:
            yield s


def _archive_cases(store: EventStore) -> None:
    """Every store keeps machine texts by digest, once."""
    assert store.machine_text("d1") is None
    store.archive_machine("d1", "version: 1\n", "/etc/runlog/a.yaml")
    store.archive_machine("d1", "something else\n", "/elsewhere.yaml")  # first one stays
    store.archive_machine("d2", "version: 1\n# v2\n")
    assert store.machine_text("d1") == "version: 1\n"
    assert store.machine_text("d2") == "version: 1\n# v2\n"


def test_machine_archive_in_every_store(tmp_path: Path) -> None:
    stores: list[EventStore] = [
        SQLiteStore(str(tmp_path / "a.db")),
        SQLiteStore(":memory:"),
        MemoryStore(),
        SAStore(f"sqlite:///{tmp_path / 'b.db'}"),
    ]
    for store in stores:
        with store:
            _archive_cases(store)


def _in_the_database_file(path: Path) -> int:
    """Events in the database file itself, its write-ahead log left aside."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:  # not even the table yet
            return 0


def test_a_checkpoint_moves_the_write_ahead_log_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteStore(str(db))
    try:
        for cid in ("a", "b", "a"):
            store.append(new(cid, "start", "created", "running"))
        assert _in_the_database_file(db) < 3  # in the log, not yet in the file
        store.checkpoint()
        assert _in_the_database_file(db) == 3
        assert [e.seq for e in store.history("a")] == [1, 2]
    finally:
        store.close()


def _log_restarts(db: Path) -> int:
    """The write-ahead log header's checkpoint sequence number: how often
    the log has started over (sqlite's WAL format, bytes 12-15)."""
    return int.from_bytes(Path(f"{db}-wal").read_bytes()[12:16], "big")


def test_a_checkpoint_starts_the_log_over_so_the_next_commit_does_not(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteStore(str(db))
    try:
        store.append(new("a", "create", None, "created"))
        before = _log_restarts(db)
        store.checkpoint()
        assert _log_restarts(db) == before + 1
        # One write, of one page: the header's user_version. The wal-index
        # header's mxFrame (sqlite's WAL format: -shm bytes 16-19, native
        # order) counts the log's frames.
        frames = int.from_bytes(Path(f"{db}-shm").read_bytes()[16:20], sys.byteorder)
        assert frames == 1
        store.append(new("a", "start", "created", "running"))
        assert _log_restarts(db) == before + 1  # this commit wrote on, from frame 1
        assert [(e.seq, e.dest) for e in store.history("a")] == [(1, "created"), (2, "running")]
        other = sqlite3.connect(str(db))
        try:  # the header as it was
            assert other.execute("PRAGMA user_version").fetchone()[0] == 0
        finally:
            other.close()
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    finally:
        store.close()


def test_a_checkpoint_does_not_wait_for_a_writer_to_start_the_log_over(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteStore(str(db), busy_timeout=10.0)
    writer = sqlite3.connect(str(db), isolation_level=None, timeout=0)
    try:
        store.append(new("a", "create", None, "created"))
        before = _log_restarts(db)
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock
        started = time.monotonic()
        store.checkpoint()  # copies the log, leaves the restart to the writer
        assert time.monotonic() - started < 5  # not the busy timeout's 10 s
        assert _log_restarts(db) == before
        writer.execute("COMMIT")
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        store.append(new("a", "start", "created", "running"))
        assert [e.seq for e in store.history("a")] == [1, 2]
    finally:
        writer.close()
        store.close()


def test_a_checkpoint_a_reader_holds_back_leaves_the_log_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteStore(str(db))
    reader = sqlite3.connect(str(db), isolation_level=None)
    try:
        store.append(new("a", "create", None, "created"))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
        store.append(new("a", "start", "created", "running"))
        before = _log_restarts(db)
        store.checkpoint()
        assert _log_restarts(db) == before  # not all copied: no restart
        reader.execute("COMMIT")
        assert [e.seq for e in store.history("a")] == [1, 2]
    finally:
        reader.close()
        store.close()
