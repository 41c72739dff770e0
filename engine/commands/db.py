"""``runlog db upgrade|current``: the event log's schema revision (on the
cluster's PostgreSQL, upgrade also moves the events an older runlog wrote
to its node-style tables into the cluster's: engine.ship.move_node_tables);
``runlog db prune --before DATE``: remove older events, keeping a chain anchor."""

from __future__ import annotations

import os
import sys

from engine.errors import SchemaError, UsageError
from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.eventlog import migrate, open_store

    verb = args[0]
    if verb == "prune":
        return _prune(settings, flags)
    head = migrate.head()
    if verb == "upgrade":
        # Opening a store creates a new database at the head revision and
        # upgrades an older one; a newer or foreign one is refused.
        open_store(settings.db, group=settings.log_group).close()
        sys.stdout.write(f"event log {_shown(settings.db)}: at revision {head} (head)\n")
        from engine.audit.cluster import is_cluster_url

        if is_cluster_url(settings.db):
            _move_node_tables(settings.db, flags)
        return 0
    if verb != "current":
        raise UsageError(f"runlog db: unknown action {verb!r} (upgrade, current or prune)")
    url = migrate.url_for(settings.db)
    if url.startswith("sqlite:///") and not os.path.exists(settings.db):
        raise SchemaError(settings.db, "does not exist (runlog db upgrade creates it)")
    from sqlalchemy.exc import DatabaseError

    try:
        current = migrate.current(url)
    except DatabaseError as err:
        raise SchemaError(settings.db, f"cannot be read: {err.orig}") from err
    if current is None:
        sys.stdout.write(f"event log {settings.db}: no runlog schema\n")
        return 1
    known = migrate.revisions()
    if current == head:
        note = "head"
    elif current in known:
        note = f"older than head {head}; runlog db upgrade"
    else:
        note = f"newer than this runlog knows (head {head})"
    sys.stdout.write(f"event log {settings.db}: at revision {current} ({note})\n")
    return 0 if current in known else 1


def _shown(db: str) -> str:
    from engine.eventlog.schema import redacted

    return redacted(db)


def _move_node_tables(url: str, flags: dict[str, object]) -> None:
    """Events an older runlog wrote to the node-style tables of the
    cluster's database: into the cluster's, as this node's log ``events``."""
    import socket

    from engine.ship import NODE_TABLES_LOG, move_node_tables

    node = str(flags.get("node") or socket.gethostname())
    moved, broken = move_node_tables(url, node)
    if moved:
        sys.stdout.write(
            f"moved {moved} events of the node-style tables into the cluster's, "
            f"as node {node}, log {NODE_TABLES_LOG}\n"
        )
    if broken is not None:
        sys.stderr.write(
            f"runlog db upgrade: note: their hash chain is broken at event {broken.position}: "
            f"{broken.problem} (runlog audit --verify names it on the cluster's database)\n"
        )


def _prune(settings: Settings, flags: dict[str, object]) -> int:
    import time

    from engine.audit.cluster import is_cluster_url
    from engine.audit.times import parse_time, utc_iso
    from engine.eventlog import open_store
    from engine.eventlog.prune import prune_cluster, prune_sqlite

    text = flags.get("before")
    if not text:
        raise UsageError("runlog db prune: --before DATE is required (ISO 8601, or an age: 90d)")
    before = parse_time(str(text), time.time_ns(), flag="--before")
    if is_cluster_url(settings.db):
        from engine.eventlog.sa import make_engine

        engine = make_engine(settings.db)
        try:
            with engine.begin() as conn:
                done = prune_cluster(conn, before)
        finally:
            engine.dispose()
    else:
        if not os.path.exists(settings.db):
            raise SchemaError(settings.db, "does not exist")
        open_store(
            settings.db, group=settings.log_group
        ).close()  # at the head revision, or refused
        done = [prune_sqlite(settings.db, before)]
    for pruned in done:
        sys.stdout.write(
            f"{pruned.label}: {pruned.removed} events before {utc_iso(before)} removed"
            + (f"; chain anchored at event {pruned.last_id}\n" if pruned.removed else "\n")
        )
    return 0
