"""As root: a config asking for an AppArmor profile is refused at create;
SELinux labels on a host without SELinux are ignored, with a warning."""

from __future__ import annotations

from typing import Any

import pytest

from engine.linux import lsm


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


@pytest.mark.root
@pytest.mark.slow
def test_selinux_labels_are_ignored_with_a_warning_where_selinux_is_off(
    runlog: Any, bundle: Any
) -> None:
    if lsm.selinux_enabled():
        pytest.skip("SELinux is enabled on this host: the labels are refused there")
    label = "system_u:object_r:container_file_t:s0"

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["mountLabel"] = label
        spec["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"

    out = runlog("run", "t-label", "-b", str(bundle(["sh", "-c", "echo ran"], edit)))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ran\n"
    spawn = [
        a["result"]
        for a in runlog.payload("t-label", "create")["actions"]
        if a["action"] == "process.spawn_init"
    ]
    assert spawn[0]["warning"] == (
        "process.selinuxLabel 'system_u:system_r:container_t:s0', "
        f"linux.mountLabel {label!r} ignored: SELinux is not enabled on this host"
    )
