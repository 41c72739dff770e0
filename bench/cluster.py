"""The cluster's log in PostgreSQL: ship throughput, and queries on a large table.

1. ``runlog ship`` of a generated node log (``--ship-events``, default
   1,000,000 events; bench/audit.py's generator, hash chain and all) into an
   empty database: events/s, end to end (read, verify, COPY, upsert).
2. ``--events`` (default 10,000,000) events of ``--containers`` (100,000)
   containers on ``--nodes`` (10) nodes over 30 days, written straight into
   ``cluster_events`` by the server (generate_series; hashes are not checked
   by these queries), then the median times of: one container's history, the
   current state of every container, a one-day summary (runlog's own
   readers, engine.audit.cluster).

PostgreSQL: ``--to URL``, or a throwaway postgresql-15 cluster this script
starts (as the tests do: tests/pgcluster.py) and removes. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
from audit import _median_ms as median_ms  # noqa: E402  (bench/)
from audit import generate  # noqa: E402
from tables import table  # noqa: E402

from engine.audit.cluster import ClusterReader  # noqa: E402
from engine.audit.filters import Filters  # noqa: E402
from engine.eventlog import migrate  # noqa: E402
from engine.ship import Shipper  # noqa: E402

DAY = 86_400 * 10**9

FILL = """
INSERT INTO cluster_events (node, log, log_id, container_id, seq, time_ns, "trigger", source,
    dest, outcome, actor_uid, actor_pid, actor_transport, payload, machine_digest, actor_user,
    actor_loginuid, actor_context, job, root, prev_hash, hash, actions, duration_ms,
    hook_failures)
SELECT 'node-' || (c %% %(nodes)s), '/var/lib/runlog/events.db', g,
    'job-' || c, s, %(start)s + g::bigint * %(step)s,
    (ARRAY['create','start','pause','resume','kill','exit','delete','kill'])[1 + s %% 8],
    'running', CASE WHEN s %% 8 = 6 THEN 'deleted' ELSE 'running' END,
    CASE WHEN g %% 50 = 0 THEN 'rejected' ELSE 'ok' END,
    1000 + c %% 50, 4242, 'cli', '{"actions":[{"action":"spawn","ms":1.5}]}', %(digest)s,
    'user' || (c %% 50), 1000 + c %% 50,
    '{"slurm_job":"' || c || '"}', c::text, '/run/runlog', md5(g::text), md5((g + 1)::text),
    1, (g %% 1000) / 10.0, CASE WHEN g %% 997 = 0 THEN 1 END
FROM (SELECT g, (g - 1) %% %(containers)s AS c, 1 + (g - 1) / %(containers)s AS s
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) AS x
"""

HEADS = """
INSERT INTO cluster_containers (node, log, id, state, seq, created_ns, updated_ns, root)
SELECT node, log, container_id, max(dest), max(seq), min(time_ns), max(time_ns), '/run/runlog'
FROM cluster_events GROUP BY node, log, container_id
"""


def ship_throughput(url: str, events: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="runlog-bench-") as tmp:
        log = Path(tmp) / "events.db"
        generate(log, events, max(events // 100, 10), 30)
        migrate.upgrade(url)  # the schema is not what is timed
        started = time.perf_counter()
        shipped = Shipper(url, "bench-node", [str(log)]).ship_once()
        took = time.perf_counter() - started
    return shipped.events / took, shipped.events


def fill(url: str, events: int, containers: int, nodes: int) -> tuple[int, float]:
    start = time.time_ns() - 30 * DAY
    params = {
        "nodes": nodes,
        "containers": containers,
        "start": start,
        "step": 30 * DAY // events,
        "digest": "d" * 64,
    }
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE cluster_events, cluster_containers")
        chunk = 1_000_000
        for lo in range(1, events + 1, chunk):
            conn.execute(FILL, {**params, "lo": lo, "hi": min(lo + chunk - 1, events)})
        conn.execute(HEADS)
        conn.execute("VACUUM ANALYZE cluster_events")
        conn.execute("VACUUM ANALYZE cluster_containers")
    return start, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--to", help="a PostgreSQL URL (default: a throwaway cluster)")
    parser.add_argument("--ship-events", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=10)
    args = parser.parse_args()
    cluster = None
    url = args.to
    if url is None:
        from tests.pgcluster import Cluster

        cluster = Cluster()
        cluster.init()
        cluster.start()
        url = cluster.createdb("bench")
    try:
        rows = []
        if args.ship_events:
            rate, n = ship_throughput(url, args.ship_events)
            rows.append((f"ship {n:,} events", f"{rate:,.0f} events/s", ">= 20,000 events/s"))
        if args.events:
            start, took = fill(url, args.events, args.containers, args.nodes)
            rows.append((f"load {args.events:,} events (server-side)", f"{took:.0f} s", ""))
            reader = ClusterReader(url)
            try:
                cid = f"job-{args.containers // 2}"
                history = median_ms(lambda: reader.history(cid), 7)
                rows.append(("one container's history", f"{history:.1f} ms", "< 5 ms"))
                states = median_ms(reader.current_states, 7)
                n = len(reader.current_states())
                rows.append((f"current state of {n:,} containers", f"{states:.0f} ms", "< 200 ms"))
                day = Filters(since_ns=start + 10 * DAY, until_ns=start + 11 * DAY)
                summary = median_ms(lambda: reader.summarize(day, 10), 3)
                rows.append(("one-day summary", f"{summary:.0f} ms", "< 500 ms"))
            finally:
                reader.close()
        table("the cluster's log in PostgreSQL", ("what", "measured (median)", "target"), rows)
    finally:
        if cluster is not None:
            cluster.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
