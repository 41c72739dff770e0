"""Fixture files: export, read back, replay without a database, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.cli import main
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.replay.errors import FixtureError
from engine.replay.fixtures import SUFFIX, fixture_name, read_fixture, read_fixtures

REPO_MACHINE = Path(default_path()).read_text()


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """RUNLOG_MACHINE and RUNLOG_DB of the caller's play no part."""


@pytest.fixture
def exported(recorded_log: Any, tmp_path: Path, capsys: Any) -> Path:
    out = tmp_path / "fixtures"
    assert main(["--db", str(recorded_log.path), "replay", "--export", str(out)]) == 0
    n = len(recorded_log.events)
    assert capsys.readouterr().out == f"exported 3 histories ({n} events) to {out}\n"
    return out


def test_export_and_read_back_round_trip(recorded_log: Any, exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "db-1" + SUFFIX,
        "ghost" + SUFFIX,
        "web-1" + SUFFIX,
    ]
    digest = load(default_path()).digest
    with SQLiteStore(str(recorded_log.path)) as store:
        for fixture in read_fixtures(exported):
            assert list(fixture.events) == store.history(fixture.container_id)  # every field
            assert fixture.machine_digest == digest
            assert fixture.machines == {digest: REPO_MACHINE}


def test_fixture_lines_have_sorted_keys(exported: Path) -> None:
    header, *events = (exported / ("web-1" + SUFFIX)).read_bytes().splitlines()
    for line in (header, *events):
        record = orjson.loads(line)
        assert list(record) == sorted(record)
    assert orjson.loads(header)["fixture"] == "runlog-history"
    assert len(events) == 13


def test_fixtures_replay_without_the_database(
    recorded_log: Any, exported: Path, capsys: Any
) -> None:
    recorded_log.path.unlink()
    assert main(["replay", "--fixtures", str(exported)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"replayed {len(recorded_log.events)} events of 3 histories")
    assert out.endswith("3 agree, 0 diverge\n")


def test_fixtures_through_a_changed_machine(exported: Path, tmp_path: Path, capsys: Any) -> None:
    machine = tmp_path / "m.yaml"
    machine.write_text(
        REPO_MACHINE.replace("source: paused, dest: running", "source: paused, dest: paused")
    )
    assert main(["replay", "--fixtures", str(exported), "--machine", str(machine)]) == 1
    out = capsys.readouterr().out
    assert "diverges  web-1  (1 of 13 events)" in out
    assert (
        "seq 5" in out
        and "resume (paused → running, ok): the machine goes to paused, not running" in out
    )


def test_a_fixture_without_its_machine_text_uses_the_current_machine(
    exported: Path, capsys: Any
) -> None:
    path = exported / ("db-1" + SUFFIX)
    header, *rest = path.read_bytes().splitlines()
    record = orjson.loads(header)
    record["machines"] = dict.fromkeys(record["machines"])
    other = b"\n".join([orjson.dumps(record), *rest]) + b"\n"
    for name in ("web-1", "ghost"):
        (exported / (name + SUFFIX)).unlink()
    path.write_bytes(other)
    assert main(["replay", "--fixtures", str(exported)]) == 0
    captured = capsys.readouterr()
    # the current machine is the recorded one here: found by its digest, no note
    assert captured.err == ""


def write(tmp_path: Path, name: str, lines: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def good_lines(exported: Path) -> list[bytes]:
    return (exported / ("db-1" + SUFFIX)).read_bytes().splitlines()


def test_a_line_that_is_not_json_is_named(
    good_lines: list[bytes], tmp_path: Path, capsys: Any
) -> None:
    broken = [*good_lines[:2], b'{"seq": 3, "trigger": ', *good_lines[3:]]
    folder = tmp_path / "bad"
    folder.mkdir()
    path = write(folder, "db-1" + SUFFIX, broken)
    with pytest.raises(FixtureError, match=rf"^{path}:3: not valid JSON: "):
        read_fixture(path)
    assert main(["replay", "--fixtures", str(folder)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:3: not valid JSON")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("trigger"), r":2: missing key 'trigger'"),
        (lambda r: r.update(seq="1"), r":2: seq: expected an integer, found a string"),
        (lambda r: r.update(seq=True), r":2: seq: expected an integer, found a boolean"),
        (
            lambda r: r.update(outcome="maybe"),
            r":2: outcome: 'maybe' is not one of ok, rejected, failed",
        ),
        (
            lambda r: r.update(container_id="other"),
            r":2: an event of container 'other' in the history of 'db-1'",
        ),
        (lambda r: r["actor"].pop("transport"), r":2: missing key 'transport'"),
        (lambda r: r.update(payload=[]), r":2: payload: expected an object, found an array"),
    ],
)
def test_bad_event_lines(good_lines: list[bytes], tmp_path: Path, edit: Any, message: str) -> None:
    record = orjson.loads(good_lines[1])
    edit(record)
    path = write(tmp_path, "x.jsonl", [good_lines[0], orjson.dumps(record), *good_lines[2:]])
    with pytest.raises(FixtureError, match=message):
        read_fixture(path)


def test_bad_headers_and_files(good_lines: list[bytes], tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match=r"x.jsonl:1: not a runlog history: the first line"):
        read_fixture(write(tmp_path, "x.jsonl", good_lines[1:]))
    header = orjson.loads(good_lines[0])
    header["version"] = 7
    with pytest.raises(FixtureError, match=r"y.jsonl:1: fixture version 7 \(this runlog reads 1\)"):
        read_fixture(write(tmp_path, "y.jsonl", [orjson.dumps(header), *good_lines[1:]]))
    with pytest.raises(FixtureError, match=r"z.jsonl:1: expected a JSON object, found an array"):
        read_fixture(write(tmp_path, "z.jsonl", [b"[1, 2]"]))
    with pytest.raises(FixtureError, match=r"h.jsonl: a header but no events"):
        read_fixture(write(tmp_path, "h.jsonl", good_lines[:1]))
    (tmp_path / "e.jsonl").write_bytes(b"\n")
    with pytest.raises(FixtureError, match=r"e.jsonl: empty"):
        read_fixture(tmp_path / "e.jsonl")
    with pytest.raises(FixtureError, match=r"missing.jsonl: cannot read"):
        read_fixture(tmp_path / "missing.jsonl")


def test_a_directory_without_fixtures(tmp_path: Path, capsys: Any) -> None:
    assert main(["replay", "--fixtures", str(tmp_path)]) == 1
    assert "holds no fixture files (*.jsonl)" in capsys.readouterr().err
    assert main(["replay", "--fixtures", str(tmp_path / "nope")]) == 1
    assert "nope: is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cid", "name"),
    [
        ("web-1", "web-1" + SUFFIX),
        ("a.b_c+d", "a.b_c+d" + SUFFIX),
        ("../etc/passwd", None),
        (".hidden", None),
        ("ünï/côde", None),
    ],
)
def test_fixture_names_are_safe(cid: str, name: str | None) -> None:
    got = fixture_name(cid)
    if name is not None:
        assert got == name
    else:
        assert "/" not in got and not got.startswith(".") and got.endswith(SUFFIX)
        assert got != fixture_name(cid + "x")  # the hash keeps ids apart
