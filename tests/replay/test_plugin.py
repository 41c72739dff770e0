"""The pytest plugin: a fixtures directory becomes one test per history.

Each test runs pytest in a subprocess, as a site would run its own suite
with the plugin loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.machine.definition import default_path

REPO = Path(__file__).resolve().parents[2]
REPO_MACHINE = Path(default_path()).read_text()


@pytest.fixture
def site(recorded_log: Any, tmp_path: Path, capsys: Any) -> Path:
    """A site's test tree: histories exported from its log, a pytest.ini."""
    root = tmp_path / "site"
    assert (
        main(["--db", str(recorded_log.path), "replay", "--export", str(root / "histories")]) == 0
    )
    capsys.readouterr()
    (root / "pytest.ini").write_text("[pytest]\n")
    changed = REPO_MACHINE.replace("source: running, dest: paused", "source: created, dest: paused")
    (root / "changed.yaml").write_text(changed)
    return root


def pytest_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "engine.replay.pytest_plugin",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def test_each_history_is_a_test_and_passes_with_its_machine(site: Path) -> None:
    proc = pytest_in(site, "-v", "histories")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for cid in ("db-1", "ghost", "web-1"):
        assert f"histories/{cid}.history.jsonl::{cid} PASSED" in proc.stdout
    assert "3 passed" in proc.stdout


def test_a_changed_machine_fails_the_histories_it_breaks(site: Path) -> None:
    proc = pytest_in(site, "histories", "--runlog-machine", "changed.yaml")
    assert proc.returncode == 1
    assert "2 failed, 1 passed" in proc.stdout
    assert (
        "history of web-1 (web-1.history.jsonl) diverges when replayed through changed.yaml"
        in proc.stdout
    )
    assert (
        "seq 3: pause (running → paused, ok): the machine rejects pause in state running"
        in proc.stdout
    )


def test_the_machine_can_come_from_the_ini_file(site: Path) -> None:
    (site / "pytest.ini").write_text("[pytest]\nrunlog_machine = changed.yaml\n")
    proc = pytest_in(site, "histories")
    assert proc.returncode == 1
    assert "2 failed, 1 passed" in proc.stdout
    assert f"through {site / 'changed.yaml'}" in proc.stdout


def test_a_broken_fixture_is_a_collection_error_naming_file_and_line(site: Path) -> None:
    path = site / "histories" / "ghost.history.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\nnot json\n")
    proc = pytest_in(site, "histories")
    assert proc.returncode != 0
    assert "ERROR collecting histories/ghost.history.jsonl" in proc.stdout
    assert f"{path}:2: not valid JSON" in proc.stdout


def test_the_projects_own_histories_are_collected() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/replay/histories",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = sorted(line for line in proc.stdout.splitlines() if "::" in line)
    assert collected == [
        "tests/replay/histories/db-1.history.jsonl::db-1",
        "tests/replay/histories/ghost.history.jsonl::ghost",
        "tests/replay/histories/web-1.history.jsonl::web-1",
    ]
