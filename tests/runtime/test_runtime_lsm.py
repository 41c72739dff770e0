"""A config asking for an AppArmor profile is refused at create, as root."""

from __future__ import annotations

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
    assert runlog.events("t-aa") == [("create", None, "rejected")]
