"""Finding the machine a digest names: override, archive, current file, fallback."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.audit import logdb
from engine.cli import main
from engine.machine.definition import MachineDefinition, default_path, load
from engine.replay.machines import MachineCatalog, archived_in, machine_text, remember

REPO_MACHINE = Path(default_path()).read_text()


@pytest.fixture(autouse=True)
def _env(clean_env: None) -> None:
    """RUNLOG_MACHINE of the caller's plays no part."""


def machine(tmp_path: Path, name: str, text: str) -> MachineDefinition:
    path = tmp_path / name
    path.write_text(text)
    return load(path)


def test_resolution_order(tmp_path: Path) -> None:
    recorded = load(default_path())
    other = machine(tmp_path, "other.yaml", REPO_MACHINE + "# another file, another digest\n")
    archived = {recorded.digest: REPO_MACHINE}

    by_archive = MachineCatalog(archived=archived, current=lambda: other)
    assert by_archive(recorded.digest).definition.digest == recorded.digest
    assert by_archive.sources == {recorded.digest: "archived"} and by_archive.notes == []

    by_current = MachineCatalog(current=lambda: recorded)
    assert by_current(recorded.digest).definition is recorded
    assert by_current.sources == {recorded.digest: "current"}

    fallback = MachineCatalog(current=lambda: other)
    assert fallback(recorded.digest).definition is other
    assert fallback.sources == {recorded.digest: "fallback"}
    (note,) = fallback.notes
    assert note.startswith(f"machine {recorded.digest[:12]} is not archived here")

    override = MachineCatalog(override=other, archived=archived, current=lambda: recorded)
    assert override(recorded.digest).definition is other
    assert override.sources == {recorded.digest: "override"}


def test_an_archived_text_that_is_not_its_digest_is_not_trusted(tmp_path: Path) -> None:
    recorded = load(default_path())
    catalog = MachineCatalog(
        archived={recorded.digest: REPO_MACHINE + "# edited\n"}, current=lambda: recorded
    )
    assert catalog(recorded.digest).definition is recorded
    assert catalog.notes == [
        f"the archived text of machine {recorded.digest[:12]} has another digest"
    ]


def test_each_machine_is_compiled_once(tmp_path: Path) -> None:
    compiled: list[str] = []
    recorded = load(default_path())

    def compile_(definition: MachineDefinition) -> Any:
        compiled.append(definition.digest)
        from engine.replay.table import TransitionTable

        return TransitionTable.compile(definition)

    catalog = MachineCatalog(current=lambda: recorded, compile=compile_)
    for digest in (recorded.digest, recorded.digest, "f" * 64, "e" * 64):
        catalog(digest)
    assert compiled == [recorded.digest]  # the fallbacks share the current machine's table


def test_machine_text_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    definition = machine(tmp_path, "m.yaml", REPO_MACHINE)
    assert machine_text(definition) == REPO_MACHINE
    (tmp_path / "m.yaml").write_text(REPO_MACHINE + "# changed\n")
    assert machine_text(definition) is None
    (tmp_path / "m.yaml").unlink()
    assert machine_text(definition) is None


def _forget_machines(path: Path) -> None:
    """A log written before machines were archived at append time."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM machines")


def test_remember_writes_once_and_keeps_the_connection_read_only(
    recorded_log: Any, tmp_path: Path
) -> None:
    definition = load(default_path())
    _forget_machines(recorded_log.path)
    conn = logdb.open_log(str(recorded_log.path))
    try:
        assert archived_in(conn)(definition.digest) is None
        assert remember(conn, definition) and remember(conn, definition)
        assert archived_in(conn)(definition.digest) == REPO_MACHINE
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM machines")
        gone = machine(tmp_path, "gone.yaml", REPO_MACHINE + "# x\n")
        (tmp_path / "gone.yaml").unlink()
        assert not remember(conn, gone)
    finally:
        conn.close()


def test_export_says_when_a_machine_is_not_archived(
    recorded_log: Any, tmp_path: Path, capsys: Any
) -> None:
    _forget_machines(recorded_log.path)
    other = tmp_path / "other.yaml"
    other.write_text(REPO_MACHINE + "# the site's, not the recorded one\n")
    out = tmp_path / "fx"
    argv = ["--db", str(recorded_log.path), "--machine", str(other), "replay", "--export", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    digest = load(default_path()).digest
    assert f"note: machine {digest[:12]} is not archived" in err
    header = orjson.loads((out / "web-1.history.jsonl").read_bytes().splitlines()[0])
    assert header["machines"] == {digest: None}
