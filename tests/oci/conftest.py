"""Fixtures for the OCI layer: a small valid config and a bundle on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def doc() -> dict[str, Any]:
    """The smallest configuration runlog accepts, freshly built per test."""
    return {
        "ociVersion": "1.2.1",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
    }


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[[object], Path]:
    """Write ``config.json`` (a document, or raw text/bytes) into a new bundle."""

    def make(content: object) -> Path:
        bundle = tmp_path / "bundle"
        bundle.mkdir(exist_ok=True)
        target = bundle / "config.json"
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content)
        else:
            target.write_text(json.dumps(content, indent=2))
        return bundle

    return make
