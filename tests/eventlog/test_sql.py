"""The hot path's SQL is compiled from the schema; the committed module must be current."""

from __future__ import annotations

from pathlib import Path

from engine.eventlog import gensql, sql


def test_generated_module_is_current() -> None:
    committed = Path(sql.__file__).read_text()
    assert committed == gensql.render(), "engine/eventlog/sql.py is stale: run `make sql`"


def test_row_layout_matches_the_tables() -> None:
    from engine.eventlog.schema import containers, events

    assert tuple(c.name for c in events.columns) == sql.EVENT_COLUMNS
    assert tuple(c.name for c in containers.columns) == sql.CONTAINER_COLUMNS
