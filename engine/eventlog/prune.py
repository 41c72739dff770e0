"""Retention: remove a log's old events, keeping a chain anchor.

``runlog db prune --before DATE`` removes every event before the first one
recorded at or after DATE (a node's log keeps its newest event: its ids
must never repeat), in one transaction, and writes the anchor
(``chain_anchors``): the id and hash of the last event removed, how many
were removed in all, and the span they covered. The first event left has
that hash as its ``prev_hash``, so what remains still verifies, and
``runlog audit --summary`` says what was pruned. On a node's log the
anchor's node and log are empty; on the cluster's database each node and
log is pruned, and anchored, on its own.

The containers' current states stay: they are what the events said.
Events not yet shipped are not kept for the shipper: ship first.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from engine.eventlog.schema import chain_anchors, cluster_events

__all__ = ["Pruned", "prune_cluster", "prune_sqlite"]


@dataclass(frozen=True, slots=True)
class Pruned:
    label: str
    removed: int
    last_id: int  # 0: nothing removed


def prune_sqlite(path: str, before_ns: int) -> Pruned:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (first_kept,) = conn.execute(
                "SELECT min(id) FROM events WHERE time_ns >= ?", (before_ns,)
            ).fetchone()
            (top,) = conn.execute("SELECT max(id) FROM events").fetchone()
            # The newest event always stays: SQLite gives a new row the
            # highest id plus one, and ids must never repeat.
            cut = int(top or 0) - 1 if first_kept is None else int(first_kept) - 1
            row = conn.execute(
                "SELECT count(*), min(time_ns), max(id) FROM events WHERE id <= ?", (cut,)
            ).fetchone()
            removed, first_ns, last_id = int(row[0]), row[1], row[2]
            if removed == 0:
                conn.execute("ROLLBACK")
                return Pruned(f"event log {path}", 0, 0)
            last_hash, last_ns = conn.execute(
                "SELECT hash, time_ns FROM events WHERE id = ?", (last_id,)
            ).fetchone()
            old = conn.execute(
                "SELECT pruned, first_ns FROM chain_anchors WHERE node = '' AND log = ''"
            ).fetchone()
            values = (last_id, last_hash, removed, first_ns, last_ns, time.time_ns())
            if old is None:
                conn.execute(
                    "INSERT INTO chain_anchors "
                    "(node, log, last_id, hash, pruned, first_ns, last_ns, pruned_ns) "
                    "VALUES ('', '', ?, ?, ?, ?, ?, ?)",
                    values,
                )
            else:
                conn.execute(
                    "UPDATE chain_anchors SET last_id = ?, hash = ?, pruned = pruned + ?, "
                    "first_ns = min(first_ns, ?), last_ns = ?, pruned_ns = ? "
                    "WHERE node = '' AND log = ''",
                    values,
                )
            conn.execute("DELETE FROM events WHERE id <= ?", (cut,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Pruned(f"event log {path}", removed, int(last_id))
    finally:
        conn.close()


def prune_cluster(conn: Connection, before_ns: int) -> list[Pruned]:
    """Prune every (node, log) of the cluster's database; the caller commits."""
    e, a = cluster_events, chain_anchors
    done: list[Pruned] = []
    logs = conn.execute(select(e.c.node, e.c.log).distinct().order_by(e.c.node, e.c.log)).all()
    for node, log in logs:
        mine = (e.c.node == node, e.c.log == log)
        first_kept = conn.execute(
            select(func.min(e.c.log_id)).where(*mine, e.c.time_ns >= before_ns)
        ).scalar()
        if first_kept is None:
            cut = int(conn.execute(select(func.max(e.c.log_id)).where(*mine)).scalar() or 0)
        else:
            cut = int(first_kept) - 1
        removed, first_ns, last_id = conn.execute(
            select(func.count(), func.min(e.c.time_ns), func.max(e.c.log_id)).where(
                *mine, e.c.log_id <= cut
            )
        ).one()
        label = f"{node}:{log}"
        if not removed:
            done.append(Pruned(label, 0, 0))
            continue
        last_hash, last_ns = conn.execute(
            select(e.c.hash, e.c.time_ns).where(*mine, e.c.log_id == last_id)
        ).one()
        old = conn.execute(
            select(a.c.pruned, a.c.first_ns).where(a.c.node == node, a.c.log == log)
        ).first()
        now = time.time_ns()
        if old is None:
            conn.execute(
                insert(a).values(
                    node=node,
                    log=log,
                    last_id=last_id,
                    hash=last_hash,
                    pruned=removed,
                    first_ns=first_ns,
                    last_ns=last_ns,
                    pruned_ns=now,
                )
            )
        else:
            conn.execute(
                update(a)
                .where(a.c.node == node, a.c.log == log)
                .values(
                    last_id=last_id,
                    hash=last_hash,
                    pruned=old[0] + removed,
                    first_ns=min(old[1], first_ns),
                    last_ns=last_ns,
                    pruned_ns=now,
                )
            )
        conn.execute(delete(e).where(*mine, e.c.log_id <= cut))
        done.append(Pruned(label, int(removed), int(last_id)))
    return done
