"""``runlog audit --verify``: walk each log's hash chain, name the first broken link.

A node's log is one chain (from its start, or from the anchor a prune
left); a cluster database holds one chain per node and log, each checked
from its own anchor. An edited event no longer matches its hash; a removed
or inserted one breaks the next event's ``prev_hash``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.eventlog import chain
from engine.eventlog.schema import CHAINED

__all__ = ["ChainCheck", "verify_sqlite"]

_CHAINED = ", ".join(f'"{c}"' for c in CHAINED)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """One chain's verdict: what it is, how many events verified, the break."""

    label: str
    verified: int
    broken: chain.Break | None
    pruned: int = 0  # events a prune removed before the anchor

    def line(self) -> str:
        pruned = f" (after {self.pruned} pruned, from its anchor)" if self.pruned else ""
        if self.broken is None:
            return f"{self.label}: chain intact, {self.verified} events verified{pruned}\n"
        return (
            f"{self.label}: chain broken at event {self.broken.position}: {self.broken.problem}; "
            f"{self.verified} events before it verified{pruned}\n"
        )


def rows_of(cursor: Any) -> Iterator[tuple[int, tuple[Any, ...], str | None, str | None]]:
    """``(id, chained values, prev_hash, hash)`` from rows of id, CHAINED, prev_hash, hash."""
    for row in cursor:
        yield int(row[0]), tuple(row[1:-2]), row[-2], row[-1]


def verify_sqlite(conn: sqlite3.Connection, location: str) -> ChainCheck:
    anchor = conn.execute(
        "SELECT last_id, hash, pruned FROM chain_anchors WHERE node = '' AND log = ''"
    ).fetchone()
    after, start, pruned = (0, chain.GENESIS, 0) if anchor is None else anchor
    cursor = conn.execute(
        f"SELECT id, {_CHAINED}, prev_hash, hash FROM events WHERE id > ? ORDER BY id", (after,)
    )
    cursor.arraysize = 4096
    count, _, broken = chain.verify_rows(rows_of(cursor), start, after)
    return ChainCheck(f"event log {location}", count, broken, int(pruned))
