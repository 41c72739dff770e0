"""A config asking for an AppArmor profile is refused at create, as root."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest


@pytest.mark.root
@pytest.mark.slow
def test_create_refuses_an_apparmor_profile_and_leaves_nothing(runlog: Any, bundle: Any) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["apparmorProfile"] = "docker-default"

    b = bundle(["true"], edit)
    out = runlog("create", "t-aa", "-b", str(b))
    assert out.returncode == 1
    assert out.stderr.strip().startswith(f"{b}/config.json: process.apparmorProfile")
    assert not (runlog.root / "t-aa").exists()
    with sqlite3.connect(runlog.db) as conn:
        rows = conn.execute(
            "SELECT \"trigger\", outcome FROM events WHERE container_id = 't-aa'"
        ).fetchall()
    assert rows == [("create", "rejected")]
