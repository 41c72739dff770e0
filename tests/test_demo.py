"""make demo's main job, end to end on a temporary database."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import demo
from engine.bundles import keep_default_cgroup_parent
from engine.eventlog.sqlite import SQLiteStore

# Both demos take demo-1 through the same story.
DEMO_1 = [
    ("create", "ok"),
    ("start", "ok"),
    ("pause", "ok"),
    ("pause", "rejected"),
    ("resume", "ok"),
    ("kill", "ok"),
    ("exit", "ok"),
    ("delete", "ok"),
]


def test_fake_demo_runs_the_lifecycle_and_prints_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    db = tmp_path / "events.db"
    assert demo.main(["--fake", "--db", str(db), "--root", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "$ runlog history demo-1" in out
    with SQLiteStore(str(db)) as store:
        one = [(e.trigger, e.outcome) for e in store.history("demo-1")]
        two = [(e.trigger, e.outcome) for e in store.history("demo-2")]
    assert one == DEMO_1
    assert two == [("create", "failed"), ("start", "rejected")]
    assert "quota exceeded for /scratch (undone: process.spawn_init, cgroup.create)" in out


@pytest.mark.root
@pytest.mark.slow
def test_real_demo_runs_a_container(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root")
    db = tmp_path / "events.db"
    # The demo uses runlog's default cgroup parent, /runlog, and leaves it
    # as it was.
    parents = [str(p) for p in Path("/sys/fs/cgroup").glob("*/runlog")]
    with keep_default_cgroup_parent():
        assert demo.main(["--db", str(db), "--root", str(tmp_path / "run")]) == 0
        assert sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/runlog")) == sorted(parents)
    out = capsys.readouterr().out
    assert "| demo-1: got TERM, exiting 3" in out
    assert '"exitCode": 3' in out
    with SQLiteStore(str(db)) as store:
        one = [(e.trigger, e.outcome) for e in store.history("demo-1")]
        two = [(e.trigger, e.outcome) for e in store.history("demo-2")]
    # The real one also asks `runlog state` twice: queries, not events.
    assert one == DEMO_1
    assert two == [("create", "failed")]
    assert os.listdir(tmp_path / "run") == []
