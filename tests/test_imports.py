"""The scheduler's path stays light: what `import engine.cli` loads, measured."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "watchdog", "rich", "orjson", "yaml", "transitions", "argparse")


def _imported(module: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}


@pytest.mark.parametrize("module", ["engine.cli", "engine.eventlog.sqlite"])
def test_hot_path_imports_nothing_heavy(module: str) -> None:
    loaded = _imported(module)
    assert module in loaded  # the measurement saw the import at all
    heavy = {m for m in loaded if m.split(".")[0] in HEAVY}
    assert heavy == set(), f"{module} imports {sorted(heavy)}"


def test_the_measurement_would_see_a_heavy_import() -> None:
    assert "sqlalchemy" in _imported("engine.eventlog.schema")
