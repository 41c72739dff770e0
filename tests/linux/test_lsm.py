"""engine.linux.lsm: a config asking for AppArmor or SELinux is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import UnsupportedError
from engine.linux import lsm
from engine.oci.config import load_bundle
from engine.oci.spec import default_spec


def _config(tmp_path: Path, process: dict[str, Any], linux: dict[str, Any]) -> Any:
    spec = default_spec()
    spec["process"].update(process)
    spec["linux"].update(linux)
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(spec))
    return load_bundle(str(tmp_path))


def test_no_label_no_refusal(tmp_path: Path) -> None:
    lsm.refuse_labels(_config(tmp_path, {}, {}), apparmor=True, selinux=True)


@pytest.mark.parametrize(
    ("process", "linux", "enabled", "message"),
    [
        (
            {"apparmorProfile": "docker-default"},
            {},
            False,
            "process.apparmorProfile 'docker-default': AppArmor is not enabled on this host",
        ),
        (
            {"apparmorProfile": "docker-default"},
            {},
            True,
            "process.apparmorProfile 'docker-default': runlog does not apply AppArmor profiles",
        ),
        (
            {"selinuxLabel": "system_u:system_r:container_t:s0"},
            {},
            False,
            "process.selinuxLabel 'system_u:system_r:container_t:s0': selinux label is "
            "specified in config, but selinux is disabled or not supported",
        ),
        (
            {},
            {"mountLabel": "system_u:object_r:container_file_t:s0"},
            True,
            "linux.mountLabel 'system_u:object_r:container_file_t:s0': "
            "runlog does not apply SELinux labels",
        ),
    ],
)
def test_a_label_is_refused_with_the_field_and_why(
    tmp_path: Path, process: dict[str, Any], linux: dict[str, Any], enabled: bool, message: str
) -> None:
    config = _config(tmp_path, process, linux)
    with pytest.raises(UnsupportedError) as caught:
        lsm.refuse_labels(config, apparmor=enabled, selinux=enabled)
    assert str(caught.value) == f"{tmp_path}/config.json: {message}"


def test_what_the_host_has_is_read_from_sys(tmp_path: Path) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text("Y\n")
    assert lsm.apparmor_enabled(str(enabled))
    enabled.write_text("N\n")
    assert not lsm.apparmor_enabled(str(enabled))
    assert not lsm.apparmor_enabled(str(tmp_path / "missing"))
    assert not lsm.selinux_enabled(str(tmp_path))
    (tmp_path / "enforce").write_text("1")
    assert lsm.selinux_enabled(str(tmp_path))
