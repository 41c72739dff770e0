"""An installed runlog carries its default machine and its migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runlog's wheel, built once for this module."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("runlog-*.whl")
    return built


@pytest.mark.slow
def test_wheel_ships_the_machine_and_the_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped = zf.read("engine/statemachine.yaml")
    assert shipped == (REPO / "statemachine.yaml").read_bytes()
    assert "engine/_migrations/env.py" in names
    revisions = {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}
    assert {f"engine/_migrations/versions/{r}" for r in revisions} <= names
    # The command is a script of its own (scripts/runlog), not an entry point.
    assert any(n.endswith(".data/scripts/runlog") for n in names)


@pytest.mark.slow
def test_installed_runlog_finds_its_machine_and_migrations(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    # -S: no .pth files, so the source checkout's editable install is not on
    # the path; only the installed copy and the third-party packages are.
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import engine; from engine.machine.definition import default_path;"
        "from engine.eventlog.migrate import migrations_dir, revisions;"
        "print(engine.__file__); print(default_path()); print(migrations_dir());"
        "print(','.join(revisions()))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", script, str(target), deps],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.splitlines()
    assert all(line.startswith(str(target)) for line in out[:3]), out
    assert out[3].split(",")[0] == "0001"
