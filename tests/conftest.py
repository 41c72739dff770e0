"""Shared fixtures: every test gets its own root and database under tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RUNLOG_* variable of the caller's leaks into a test."""
    for key in list(os.environ):
        if key.startswith("RUNLOG_"):
            monkeypatch.delenv(key)
