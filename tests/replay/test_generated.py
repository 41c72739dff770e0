"""A small log from the bench's generator: replay, audit and export agree on it."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine.audit import logdb, query
from engine.audit.filters import Filters
from engine.audit.summary import summarize
from engine.cli import main

BENCH = Path(__file__).resolve().parents[2] / "bench" / "audit.py"


def bench() -> ModuleType:
    found = sys.modules.get("runlog_bench_audit")
    if found is None:
        spec = importlib.util.spec_from_file_location("runlog_bench_audit", BENCH)
        assert spec is not None and spec.loader is not None
        found = importlib.util.module_from_spec(spec)
        sys.modules["runlog_bench_audit"] = found
        spec.loader.exec_module(found)
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "events.db"
    assert bench().generate(path, 3000, 30, days=3.0, seed=7) == (3000, 30)
    return path


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """The default machine, whatever the caller's environment says."""


def test_every_generated_history_replays(generated: Path, capsys: Any) -> None:
    assert main(["--db", str(generated), "replay", "--all"]) == 0
    assert "replayed 3,000 events of 30 histories" in capsys.readouterr().out


def test_the_projection_the_generator_wrote_is_what_replay_finds(
    generated: Path, capsys: Any
) -> None:
    assert main(["--db", str(generated), "replay", "--all", "-f", "jsonl"]) == 0
    import orjson

    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    replayed = {r["container_id"]: r["state"] for r in records if r["kind"] == "history"}
    conn = logdb.open_log(str(generated))
    try:
        stored = {row.id: row.state for row in query.current_states(conn)}
    finally:
        conn.close()
    assert replayed == stored
    assert Counter(stored.values())["deleted"] == 30  # every walk ends deleted


def test_summary_and_audit_count_the_same_events(generated: Path) -> None:
    conn = logdb.open_log(str(generated))
    try:
        events = query.select_events(conn, Filters())
        summary = summarize(conn, Filters())
    finally:
        conn.close()
    assert len(events) == summary.events == 3000
    by_outcome = Counter(e.outcome for e in events)
    assert sum(t.rejected for t in summary.triggers) == by_outcome["rejected"] > 0
    assert sum(t.failed for t in summary.triggers) == by_outcome["failed"]
    assert sum(h.failed for h in summary.hook_failures) == by_outcome["failed"]


def test_export_of_the_generated_log_replays_as_fixtures(
    generated: Path, tmp_path: Path, capsys: Any
) -> None:
    assert main(["--db", str(generated), "replay", "--export", str(tmp_path / "fx")]) == 0
    assert len(list((tmp_path / "fx").iterdir())) == 30
    capsys.readouterr()
    assert main(["replay", "--fixtures", str(tmp_path / "fx")]) == 0
    assert "30 agree, 0 diverge" in capsys.readouterr().out
