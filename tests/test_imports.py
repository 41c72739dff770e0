"""The scheduler's path stays light: what `import engine.cli` loads, measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "alembic", "watchdog", "rich", "orjson", "yaml", "transitions", "argparse")


def _imported(module: str) -> set[str]:
    """What importing ``module`` loads, run as the entry stub runs: ``-I -S``,
    the checkout and the venv's site-packages put on sys.path by hand."""
    paths = [str(Path(__file__).resolve().parent.parent)]
    paths += [p for p in sys.path if p.endswith("site-packages")]
    code = f"import sys; sys.path[0:0] = {paths!r}; import {module}"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
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


# `runlog create` imports the monitor's code before it forks the monitor, so
# every import is on its critical path; these cost milliseconds each
# (typing 2, pathlib with urllib and ipaddress 3, hashlib's OpenSSL 2,
# dataclasses' generated methods ~0.4 per class, inspect's ast and dis 3 -
# transitions imports inspect, engine.machine.runtime defers it) and the
# path does without.
NOT_ON_CREATE = ("typing", "pathlib", "hashlib", "_hashlib", "json", "dataclasses", "ast", "dis")


def test_the_create_path_does_without_costly_modules() -> None:
    loaded = _imported("engine.runtime.monitor")
    assert {"engine.runtime.monitor", "transitions", "engine.oci.model"} <= loaded
    costly = sorted(m for m in loaded if m in NOT_ON_CREATE)
    assert costly == [], f"runlog create imports {costly}"


def test_that_measurement_would_see_typing() -> None:
    assert "typing" in _imported("engine.audit.query")


def test_inspect_loads_when_first_used() -> None:
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "assert 'ast' not in sys.modules; "
        "assert core.inspect.isfunction(engine.machine.runtime._inspect_on_first_use); "
        "import inspect; assert sys.modules['inspect'] is inspect; "
        "assert core.inspect.signature is inspect.signature; "
        "print(inspect.isclass(int), 'ast' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "True True\n", "")
