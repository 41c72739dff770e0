"""What the owner of a log can do to it: alter it, then compute every hash
again, so that its own chain verifies. ``python -m tests.tamper LOG KIND
POSITION`` does it as whoever runs it (a test runs it as the log's owner).

KIND: ``edited`` (event POSITION made to look root's), ``deleted`` (event
POSITION removed), ``inserted`` (a forged event put in at POSITION, those
after it moved up one), ``truncated`` (events from POSITION on removed).
"""

from __future__ import annotations

import sqlite3
import sys

from engine.eventlog import chain
from engine.eventlog.schema import CHAINED

_COLUMNS = ", ".join(f'"{c}"' for c in CHAINED)


def tamper(log: str, kind: str, position: int) -> None:
    conn = sqlite3.connect(log, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if kind == "edited":
            conn.execute(
                "UPDATE events SET actor_uid = 0, actor_user = 'root' WHERE id = ?", (position,)
            )
        elif kind == "deleted":
            conn.execute("DELETE FROM events WHERE id = ?", (position,))
        elif kind == "truncated":
            conn.execute("DELETE FROM events WHERE id >= ?", (position,))
        elif kind == "inserted":
            conn.execute("UPDATE events SET id = -id WHERE id >= ?", (position,))
            conn.execute("UPDATE events SET id = 1 - id WHERE id < 0")
            forged = _COLUMNS.replace('"container_id"', "'forged'").replace('"seq"', "1")
            conn.execute(
                f"INSERT INTO events (id, {_COLUMNS}, prev_hash, hash) "
                f"SELECT ?, {forged}, prev_hash, hash FROM events WHERE id = ?",
                (position, position - 1),
            )
        else:
            raise ValueError(kind)
        prev = chain.GENESIS
        anchor = conn.execute(
            "SELECT last_id, hash FROM chain_anchors WHERE node = '' AND log = ''"
        ).fetchone()
        after = 0 if anchor is None else int(anchor[0])
        if anchor is not None:
            prev = str(anchor[1])
        rows = conn.execute(
            f"SELECT id, {_COLUMNS} FROM events WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
        for row in rows:
            digest = chain.link(prev, row[1:])
            conn.execute(
                "UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row[0])
            )
            prev = digest
        conn.execute("COMMIT")
    finally:
        conn.close()


if __name__ == "__main__":
    tamper(sys.argv[1], sys.argv[2], int(sys.argv[3]))
