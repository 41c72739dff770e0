"""The hot path: what `runlog kill` and `runlog state` pay to import this layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Modules whose import cost the scheduler's calls must not pay (docs/design.md,
# "The hot path, and why").
HEAVY = {"signal", "dataclasses", "re", "json", "datetime", "inspect", "typing", "orjson"}


def _loaded_after(statement: str) -> set[str]:
    code = (
        "import sys; before = set(sys.modules); "
        f"{statement}; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "statement",
    [
        "from engine.oci.signals import parse_signal",
        "from engine.oci.state import oci_state",
        "from engine.oci.gojson import render",
        "from engine.oci.version import OCI_VERSION",
        "from engine.oci.names import CAPABILITIES",
    ],
)
def test_hot_path_modules_stay_light(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert "engine.oci.config" not in loaded
    assert not loaded & HEAVY, loaded & HEAVY


def test_config_loads_nothing_heavy() -> None:
    # The records are engine.frozen's, not dataclasses (and so no re or
    # inspect); the JSON is read with the C scanner, not the json package.
    loaded = _loaded_after("import engine.oci.config")
    assert not loaded & HEAVY, loaded & HEAVY
    assert "engine.oci.spec" not in loaded


def test_spec_and_features_need_no_config_parser() -> None:
    loaded = _loaded_after("from engine.oci.spec import default_spec, features")
    assert "engine.oci.config" not in loaded
    assert "engine.oci.model" not in loaded
