"""Many processes appending to one database file: nothing lost, nothing doubled."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from engine.eventlog.sqlite import SQLiteStore

WRITER = """
import sys
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.status import Actor

path, me, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
actor = Actor.current("cli")
with SQLiteStore(path) as store:
    for i in range(count):
        # Half to a container every writer shares (seq contention), half to
        # the writer's own.
        cid = "shared" if i % 2 else f"own-{me}"
        ev = NewEvent(cid, "kill", "running", None, "ok", actor, "d" * 64, {"w": me, "i": i})
        store.append(ev)
"""


@pytest.mark.slow
def test_eight_processes_times_500_appends(db_path: Path) -> None:
    writers, count = 8, 500
    SQLiteStore(str(db_path)).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), str(w), str(count)])
        for w in range(writers)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * writers

    with SQLiteStore(str(db_path)) as store:
        events = store.events()
        rows = {r.id: r for r in store.containers()}
    assert len(events) == writers * count
    # Every (writer, i) exactly once.
    assert len({(e.payload["w"], e.payload["i"]) for e in events}) == writers * count
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in events:
        seqs[e.container_id].append(e.seq)
    for cid, got in seqs.items():
        assert sorted(got) == list(range(1, len(got) + 1)), f"{cid}: seq has gaps or doubles"
        assert rows[cid].seq == len(got)
    assert len(seqs["shared"]) == writers * count // 2
