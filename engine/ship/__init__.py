"""``runlog ship``: a node's event logs into the cluster's PostgreSQL.

Each event goes to ``cluster_events`` keyed by (node, log, id in the log):
a batch sent twice adds nothing, and where to resume is what the server
holds (its highest id for the log), so a shipper killed at any point loses
and duplicates nothing. A batch is one transaction: the events (COPY into
a temporary table, then INSERT ... ON CONFLICT DO NOTHING) and the
containers' states they change (``cluster_containers``).

Before sending, the shipper verifies the log's hash chain from the last
event the server holds (whose hash must be the node's too: a rewritten
history is refused) to the end; a broken chain is refused, loudly, and
nothing of that log is sent. It reads the SQLite log as any reader does
(WAL: writers never wait for it) and never writes to it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunlogError
from engine.eventlog import chain
from engine.eventlog.schema import CHAINED, CHANNEL

__all__ = [
    "CHANNEL",
    "NODE_TABLES_LOG",
    "ServerDown",
    "ShipError",
    "Shipped",
    "Shipper",
    "move_node_tables",
    "pg_conninfo",
]

BATCH = 5000

_SHIPPED = (
    "node",
    "log",
    "log_id",
    *CHAINED,
    "prev_hash",
    "hash",
    "actions",
    "duration_ms",
    "hook_failures",
)
_CHAINED = ", ".join(f'"{c}"' for c in CHAINED)
_SELECT = f"SELECT id, {_CHAINED}, prev_hash, hash FROM events WHERE id > ? ORDER BY id LIMIT ?"
_COLUMNS = ", ".join(f'"{c}"' for c in _SHIPPED)


class ShipError(RunlogError):
    """A log cannot be shipped as it is (a broken chain, a rewritten history)."""


class ServerDown(RunlogError):
    """The cluster's database cannot be reached now."""


def pg_conninfo(url: str) -> str:
    """A libpq URL for ``url`` (SQLAlchemy's driver suffix removed)."""
    for scheme in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme) :]
    if not url.startswith("postgresql://"):
        raise RunlogError(f"runlog ship --to {url}: not a PostgreSQL URL (postgresql://...)")
    return url


@dataclass
class Shipped:
    """What a run sent: events, their bytes, and how long it took."""

    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    behind: dict[str, int] = field(default_factory=dict)  # log -> events not yet sent

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def _local(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise ShipError(f"event log {path}: does not exist")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _anchor(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute(
        "SELECT last_id, hash FROM chain_anchors WHERE node = '' AND log = ''"
    ).fetchone()
    return (0, chain.GENESIS) if row is None else (int(row[0]), str(row[1]))


class Shipper:
    """Ships logs of one node to one server; ``ship_once`` sends what is new."""

    def __init__(
        self,
        url: str,
        node: str,
        logs: Sequence[str],
        *,
        batch: int = BATCH,
        progress: Callable[[Shipped], None] | None = None,
    ) -> None:
        from engine.eventlog.sa import driver_url

        driver_url(pg_conninfo(url))  # a missing psycopg: one line naming the extra
        self.url = url
        self.node = node
        self.logs = [str(Path(p).resolve()) for p in logs]
        self.batch = batch
        self.progress = progress
        self._schema_ready = False

    def add(self, log: str) -> bool:
        """Ship ``log`` too from now on; False if it is shipped already."""
        path = str(Path(log).resolve())
        if path in self.logs:
            return False
        self.logs.append(path)
        return True

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(pg_conninfo(self.url), connect_timeout=5)
        except psycopg.OperationalError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ServerDown(f"cannot reach {_redacted(self.url)}: {first}") from err
        if not self._schema_ready:
            from engine.eventlog import migrate

            conn.close()
            if migrate.current(self.url) != migrate.head():
                migrate.upgrade(self.url)
            self._schema_ready = True
            conn = psycopg.connect(pg_conninfo(self.url), connect_timeout=5)
        return conn

    def ship_once(self, shipped: Shipped | None = None) -> Shipped:
        """Send every log's new events; raise ServerDown or ShipError."""
        import psycopg

        shipped = shipped or Shipped()
        started = time.monotonic()
        try:
            with self._connect() as pg:
                for log in self.logs:
                    self._ship_log(pg, log, shipped)
        except psycopg.OperationalError as err:
            raise ServerDown(f"lost {_redacted(self.url)} while shipping: {err}") from err
        finally:
            shipped.seconds += time.monotonic() - started
        return shipped

    def _server_head(self, pg: Any, log: str) -> tuple[int, str | None]:
        """The last event of ``log`` the server holds, or where pruning cut it."""
        row = pg.execute(
            "SELECT log_id, hash FROM cluster_events WHERE node = %s AND log = %s "
            "ORDER BY log_id DESC LIMIT 1",
            (self.node, log),
        ).fetchone()
        if row is None:
            row = pg.execute(
                "SELECT last_id, hash FROM chain_anchors WHERE node = %s AND log = %s",
                (self.node, log),
            ).fetchone()
        return (0, None) if row is None else (int(row[0]), row[1])

    def _ship_log(self, pg: Any, log: str, shipped: Shipped) -> None:
        local = _local(log)
        try:
            self._machines(pg, local)
            after, last = self._start(pg, local, log)
            while True:
                rows = local.execute(_SELECT, (after, self.batch)).fetchall()
                if not rows:
                    break
                walk = ((r[0], r[1:-2], r[-2], r[-1]) for r in rows)
                size = [0]
                count, last_hash, broken = chain.verify_rows(walk, last, after, size)
                if broken is not None:
                    raise ShipError(
                        f"event log {log}: hash chain broken at event {broken.position}: "
                        f"{broken.problem}; refusing to ship it (events up to "
                        f"{after + count if count else after} are on the server)"
                    )
                shipped.events += self._send(pg, log, rows)
                shipped.bytes += size[0]
                after, last = int(rows[-1][0]), last_hash
                if self.progress is not None:
                    self.progress(shipped)
            (newest,) = local.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
            shipped.behind[log] = int(newest) - after
        finally:
            local.close()

    def _machines(self, pg: Any, local: sqlite3.Connection) -> None:
        """The machine definitions the log's events name, so that the
        cluster's histories replay through the machines they ran under."""
        rows = local.execute("SELECT digest, text, path, archived_ns FROM machines").fetchall()
        if not rows:
            return
        with pg.transaction(), pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO machines (digest, text, path, archived_ns) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )

    def _start(self, pg: Any, local: sqlite3.Connection, log: str) -> tuple[int, str]:
        """Where to resume: after the server's last event of this log, whose
        hash the node's must equal; or at the log's start (or prune anchor)."""
        head_id, head_hash = self._server_head(pg, log)
        if head_id == 0:
            anchor_id, anchor_hash = _anchor(local)
            if anchor_id:
                # The node pruned before this log was first shipped: the
                # server's chain starts at the node's anchor.
                row = local.execute(
                    "SELECT pruned, first_ns, last_ns, pruned_ns FROM chain_anchors "
                    "WHERE node = '' AND log = ''"
                ).fetchone()
                with pg.transaction():
                    pg.execute(
                        "INSERT INTO chain_anchors (node, log, last_id, hash, pruned, first_ns, "
                        "last_ns, pruned_ns) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (self.node, log, anchor_id, anchor_hash, *row),
                    )
            return anchor_id, anchor_hash
        row = local.execute("SELECT hash FROM events WHERE id = ?", (head_id,)).fetchone()
        if row is None:
            anchor_id, anchor_hash = _anchor(local)
            if anchor_id == head_id and anchor_hash == head_hash:
                return head_id, anchor_hash
            if anchor_id > head_id:
                raise ShipError(
                    f"event log {log}: events {head_id + 1} to {anchor_id} were pruned "
                    "before they were shipped: refusing to ship a log with a gap"
                )
            raise ShipError(
                f"event log {log}: event {head_id}, the last the server holds, is not in "
                "the log; it was removed or the log replaced: refusing to ship it"
            )
        if row[0] != head_hash:
            raise ShipError(
                f"event log {log}: event {head_id} differs from the copy on the server "
                "(the log was altered after it was shipped): refusing to ship it"
            )
        return head_id, str(head_hash)

    def _send(self, pg: Any, log: str, rows: list[tuple[Any, ...]]) -> int:
        """One batch in one transaction; the number of events that were new.

        COPY straight into the table: resuming from the server's head, no
        event of the batch is there yet. Should one be (another shipper of
        the same log), the batch goes again through a temporary table,
        INSERT ... ON CONFLICT DO NOTHING.
        """
        import psycopg

        heads: dict[str, list[Any]] = {}
        for row in rows:
            _fold_head(heads, dict(zip(("id", *CHAINED), row[:-2], strict=True)))
        try:
            with pg.transaction():
                self._copy(pg, "cluster_events", log, rows)
                self._heads(pg, log, heads)
                self._notify(pg)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        with pg.transaction():
            pg.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS ship_batch "
                "(LIKE cluster_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            self._copy(pg, "ship_batch", log, rows)
            result = pg.execute(
                f"INSERT INTO cluster_events ({_COLUMNS}) SELECT {_COLUMNS} FROM ship_batch "
                "ON CONFLICT DO NOTHING"
            )
            self._heads(pg, log, heads)
            self._notify(pg)
        return max(int(result.rowcount), 0)

    def _notify(self, pg: Any) -> None:
        """Wake ``runlog events --follow`` readers of the cluster's database,
        at commit (LISTEN/NOTIFY: they do not poll)."""
        pg.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.node))

    def _copy(self, pg: Any, table: str, log: str, rows: list[tuple[Any, ...]]) -> None:
        from engine.audit.summary import transition_timing

        outcome, payload = 1 + CHAINED.index("outcome"), 1 + CHAINED.index("payload")
        with pg.cursor().copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as copy:
            node = self.node
            for row in rows:
                copy.write_row((node, log, *row, *transition_timing(row[outcome], row[payload])))

    def _heads(self, pg: Any, log: str, heads: dict[str, list[Any]]) -> None:
        """The containers' states after the batch: one statement for all."""
        values = [(self.node, log, cid, *head) for cid, head in heads.items()]
        with pg.cursor() as cur:
            cur.execute(
                "INSERT INTO cluster_containers "
                "(node, log, id, state, seq, created_ns, updated_ns, root) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::int[], %s::bigint[], %s::bigint[], %s::text[]) "
                "ON CONFLICT (node, log, id) DO UPDATE SET "
                "state = coalesce(excluded.state, cluster_containers.state), "
                "seq = excluded.seq, updated_ns = excluded.updated_ns, "
                "root = coalesce(excluded.root, cluster_containers.root) "
                "WHERE excluded.seq > cluster_containers.seq",
                [list(column) for column in zip(*values, strict=True)] if values else [[]] * 8,
            )


#: The log the events an older runlog wrote to PostgreSQL's node-style
#: ``events`` table are moved to, in the cluster's tables (one chain: that
#: table's).
NODE_TABLES_LOG = "events"


def move_node_tables(url: str, node: str) -> tuple[int, chain.Break | None]:
    """Move the events an older runlog wrote to the cluster database's
    node-style ``events`` table (a node with ``--db postgresql://...``)
    into ``cluster_events``, as the log :data:`NODE_TABLES_LOG` of
    ``node``, each keeping its id (as ``log_id``) and hashes, so their chain
    verifies there as it did; ``containers``' rows become
    ``cluster_containers``' as a shipped batch makes them. One transaction,
    the old tables locked against writers meanwhile; a second run moves
    what was written since, continuing the chain. Returns how many moved,
    and the first broken link of their chain if any (moved all the same:
    ``audit --verify`` names it there)."""
    shipper = Shipper(url, node, [])
    log = NODE_TABLES_LOG
    moved, broken = 0, None
    with shipper._connect() as pg, pg.transaction():
        pg.execute("LOCK TABLE events, containers IN EXCLUSIVE MODE")
        after, last = shipper._server_head(pg, log)
        if after == 0:
            anchor = pg.execute(
                "DELETE FROM chain_anchors WHERE node = '' AND log = '' "
                "RETURNING last_id, hash, pruned, first_ns, last_ns, pruned_ns"
            ).fetchone()
            if anchor is not None:  # pruned there: the chain starts at its anchor
                pg.execute(
                    "INSERT INTO chain_anchors (node, log, last_id, hash, pruned, first_ns, "
                    "last_ns, pruned_ns) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (node, log, *anchor),
                )
                after, last = int(anchor[0]), str(anchor[1])
        last = last or chain.GENESIS
        while True:
            rows = pg.execute(
                f"SELECT id, {_CHAINED}, prev_hash, hash FROM events WHERE id > %s "
                "ORDER BY id LIMIT %s",
                (after, shipper.batch),
            ).fetchall()
            if not rows:
                break
            if broken is None:
                walk = ((r[0], r[1:-2], r[-2], r[-1]) for r in rows)
                _, last, broken = chain.verify_rows(walk, last, after)
            moved += shipper._send(pg, log, rows)
            after = int(rows[-1][0])
        pg.execute("DELETE FROM events WHERE id <= %s", (after,))
        pg.execute("DELETE FROM containers")
    return moved, broken


def _fold_head(heads: dict[str, list[Any]], event: dict[str, Any]) -> None:
    """A container's [state, seq, created_ns, updated_ns, root] after ``event``."""
    moved = event["dest"] if event["outcome"] == "ok" and event["dest"] is not None else None
    head = heads.get(event["container_id"])
    if head is None:
        heads[event["container_id"]] = [
            moved,
            event["seq"],
            event["time_ns"],
            event["time_ns"],
            event["root"],
        ]
        return
    if moved is not None:
        head[0] = moved
    head[1], head[3] = event["seq"], event["time_ns"]
    head[4] = event["root"] or head[4]


def _redacted(url: str) -> str:
    from engine.eventlog.sa import redacted

    return redacted(url)
