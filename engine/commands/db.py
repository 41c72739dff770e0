"""``runlog db upgrade|current``: the event log's schema revision."""

from __future__ import annotations

import os
import sys

from engine.errors import SchemaError, UsageError
from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.eventlog import migrate, open_store

    verb = args[0]
    head = migrate.head()
    if verb == "upgrade":
        # Opening a store creates a new database at the head revision and
        # upgrades an older one; a newer or foreign one is refused.
        open_store(settings.db).close()
        sys.stdout.write(f"event log {settings.db}: at revision {head} (head)\n")
        return 0
    if verb != "current":
        raise UsageError(f"runlog db: unknown action {verb!r} (upgrade or current)")
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
