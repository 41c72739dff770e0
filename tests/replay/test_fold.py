"""Folding histories: the state at the end or at a point, and each kind of divergence."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.audit.times import local_iso, utc_iso
from engine.cli import main
from engine.eventlog.record import Event
from engine.machine.definition import default_path, load
from engine.replay.fold import replay, rows_of
from engine.replay.machines import MachineCatalog
from engine.replay.table import LifecycleStepper, TransitionTable

MACHINE = load(default_path())
D = MACHINE.digest


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """The machine and log of a test are the ones it names."""


def catalog() -> MachineCatalog:
    return MachineCatalog(current=lambda: MACHINE)


def projection(events: list[Event]) -> str | None:
    """The state a store's projection gives after ``events``: the last ok dest."""
    state = None
    for e in events:
        if e.outcome == "ok" and e.dest is not None:
            state = e.dest
    return state


def test_each_history_folds_to_the_projection(recorded_log: Any) -> None:
    result = replay(rows_of(recorded_log.events), catalog())
    assert result.agrees and result.events == len(recorded_log.events)
    by_id: dict[str, list[Event]] = {}
    for e in recorded_log.events:
        by_id.setdefault(e.container_id, []).append(e)
    assert set(result.histories) == set(by_id) == {"web-1", "db-1", "ghost"}
    for cid, events in by_id.items():
        h = result.histories[cid]
        assert (h.state, h.seq, h.events) == (projection(events), events[-1].seq, len(events))
    assert [result.histories[c].present for c in ("web-1", "db-1", "ghost")] == [False, True, False]


def test_every_prefix_folds_to_its_point_in_time(recorded_log: Any) -> None:
    web = [e for e in recorded_log.events if e.container_id == "web-1"]
    states = []
    for k in range(1, len(web) + 1):
        result = replay(rows_of(web[:k]), catalog())
        assert result.agrees
        states.append(result.histories["web-1"].state)
        assert states[-1] == projection(web[:k])
    assert states[:9] == [
        "created", "running", "paused", "paused", "running", "running", "stopped", "deleted",
        "deleted",
    ]  # fmt: skip


def test_fast_and_slow_paths_agree(recorded_log: Any) -> None:
    rows = rows_of(recorded_log.events)
    fast = replay(rows, MachineCatalog(current=lambda: MACHINE))
    slow = replay(rows, MachineCatalog(current=lambda: MACHINE, compile=LifecycleStepper))
    assert {c: (h.state, h.seq) for c, h in fast.histories.items()} == {
        c: (h.state, h.seq) for c, h in slow.histories.items()
    }


def row(seq: int, trigger: str, source: str | None, dest: str | None, outcome: str = "ok") -> Any:
    return ("c", seq, 1000 + seq, trigger, source, dest, outcome, D)


LIFE = [
    row(1, "create", None, "created"),
    row(2, "start", "created", "running"),
    row(3, "pause", "running", "paused"),
]


@pytest.mark.parametrize(
    ("bad", "kind", "would", "text"),
    [
        (row(4, "start", "paused", "running"), "rejects", None, "rejects start in state paused"),
        (
            row(4, "resume", "paused", "stopped"),
            "reaches",
            "running",
            "goes to running, not stopped",
        ),
        (row(4, "resume", "paused", None, "rejected"), "accepts", "running", "now accepts resume"),
        (row(4, "start", "paused", None, "failed"), "rejects", None, "would not have run"),
        (row(4, "resume", "running", "running"), "source", None, "leaves the container in paused"),
        (row(5, "resume", "paused", "running"), "seq", None, "seq 5 follows seq 3"),
    ],
)
def test_each_kind_of_divergence_is_located(
    bad: Any, kind: str, would: str | None, text: str
) -> None:
    # Then an event that agrees with the recorded state after the bad one.
    after = bad[5] if bad[6] == "ok" else bad[4]
    if after == "stopped":
        follow = row(bad[1] + 1, "delete", "stopped", "deleted")
    else:
        follow = row(bad[1] + 1, "kill", after, after)
    result = replay([*LIFE, bad, follow], catalog())
    history = result.histories["c"]
    first = history.divergences[0]
    assert (first.container_id, first.seq, first.kind, first.would) == ("c", bad[1], kind, would)
    assert text in first.message()
    assert first.machine_digest == D
    # replay went on from the recorded state: the event after it agrees
    assert all(d.seq == bad[1] for d in history.divergences)


def test_a_deleted_container_is_gone_and_may_be_created_again() -> None:
    rows = [
        *LIFE,
        row(4, "kill", "paused", "paused"),
        row(5, "exit", "paused", "stopped"),
        row(6, "delete", "stopped", "deleted"),
        row(7, "pause", None, None, "rejected"),
        row(8, "create", None, "created"),
    ]
    result = replay(rows, catalog())
    assert result.agrees
    assert (result.histories["c"].state, result.histories["c"].present) == ("created", True)
    gone = replay(rows[:7], catalog()).histories["c"]
    assert (gone.state, gone.present) == ("deleted", False)


def test_progress_is_reported(recorded_log: Any) -> None:
    seen: list[int] = []
    replay(rows_of(recorded_log.events), catalog(), progress=seen.append, every=5)
    n = len(recorded_log.events)
    assert seen == [*range(5, n + 1, 5), n]


def test_cli_fold_at_the_end_and_at_points(recorded_log: Any, capsys: Any) -> None:
    db = str(recorded_log.path)
    web = [e for e in recorded_log.events if e.container_id == "web-1"]
    assert main(["--db", db, "replay", "--id", "web-1"]) == 0
    out = capsys.readouterr().out
    assert out == f"web-1: deleted at seq 13, {local_iso(web[-1].time_ns)} (delete)\n"
    assert main(["--db", db, "replay", "--id", "web-1", "--until", "4"]) == 0
    assert (
        capsys.readouterr().out == f"web-1: paused at seq 4, {local_iso(web[3].time_ns)} (pause)\n"
    )
    # Events are a minute apart: half a minute after seq 5 (resume), it is running.
    point = local_iso(web[4].time_ns + 30_000_000_000)
    assert main(["--db", db, "replay", "--id", "web-1", "--until", point]) == 0
    assert capsys.readouterr().out.startswith("web-1: running at seq 5, ")
    before = local_iso(web[0].time_ns - 30_000_000_000)
    assert main(["--db", db, "replay", "--id", "web-1", "--until", before]) == 0
    assert capsys.readouterr().out == f"web-1: did not exist yet at {before}\n"


def test_cli_fold_until_an_exact_time_and_jsonl(recorded_log: Any, capsys: Any) -> None:
    db = str(recorded_log.path)
    db1 = [e for e in recorded_log.events if e.container_id == "db-1"]
    argv = ["--db", db, "replay", "--id", "db-1", "--until", utc_iso(db1[2].time_ns), "-f", "jsonl"]
    assert main(argv) == 0
    record = orjson.loads(capsys.readouterr().out)
    assert (record["container_id"], record["seq"], record["state"]) == ("db-1", 3, "running")
    assert (record["trigger"], record["present"], record["divergences"]) == ("start", True, [])
    assert record["time_ns"] == db1[2].time_ns


def test_cli_fold_until_a_duration_ago(recorded_log: Any, capsys: Any) -> None:
    # The log's clock stands in January 2021, long before the real now:
    # an hour ago is after all of its events.
    argv = ["--db", str(recorded_log.path), "replay", "--id", "db-1", "--until", "1h"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("db-1: paused at seq 4, ")


def test_cli_fold_of_several_ids(recorded_log: Any, capsys: Any) -> None:
    argv = ["--db", str(recorded_log.path), "replay", "--id", "ghost", "--id", "db-1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" at ")[0] for line in lines] == ["ghost: never created", "db-1: paused"]


def test_cli_fold_of_an_unknown_container(recorded_log: Any, capsys: Any) -> None:
    assert main(["--db", str(recorded_log.path), "replay", "--id", "web-9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("container web-9: no such container in the event log ")


def test_table_is_what_the_catalog_compiles_by_default() -> None:
    assert isinstance(catalog()(D), TransitionTable)
