"""engine.linux.lsm: a config asking for AppArmor is refused; one asking
for SELinux labels is refused where SELinux is enabled and the labels are
ignored, with a warning, where it is not."""

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


SELINUX = "system_u:system_r:container_t:s0"
MOUNT = "system_u:object_r:container_file_t:s0"


@pytest.fixture
def selinux_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the detection looks for selinuxfs: empty (SELinux off) until
    a test writes ``enforce``."""
    directory = tmp_path / "selinuxfs"
    directory.mkdir()
    monkeypatch.setattr(lsm, "SELINUX_FS", str(directory))
    return directory


@pytest.mark.parametrize(
    ("process", "linux", "message"),
    [
        ({"selinuxLabel": SELINUX}, {}, f"process.selinuxLabel {SELINUX!r}: runlog does not apply"),
        ({}, {"mountLabel": MOUNT}, f"linux.mountLabel {MOUNT!r}: runlog does not apply"),
        ({"selinuxLabel": "container_t"}, {}, "'container_t': invalid SELinux label"),
        ({}, {"mountLabel": "a::c"}, "'a::c': invalid SELinux label"),
    ],
)
def test_with_selinux_enabled_a_label_is_refused(
    tmp_path: Path,
    selinux_fs: Path,
    process: dict[str, Any],
    linux: dict[str, Any],
    message: str,
) -> None:
    (selinux_fs / "enforce").write_text("1")
    config = _config(tmp_path, process, linux)
    with pytest.raises(UnsupportedError, match=message):
        lsm.refuse_labels(config)
    assert lsm.ignored_labels(config) is None


def test_without_selinux_the_labels_are_ignored_with_a_warning(
    tmp_path: Path, selinux_fs: Path
) -> None:
    config = _config(tmp_path, {"selinuxLabel": SELINUX}, {"mountLabel": MOUNT})
    lsm.refuse_labels(config)
    assert lsm.ignored_labels(config) == (
        f"process.selinuxLabel {SELINUX!r}, linux.mountLabel {MOUNT!r} ignored: "
        "SELinux is not enabled on this host"
    )
    assert lsm.ignored_labels(_config(tmp_path, {}, {})) is None


@pytest.mark.parametrize(
    ("label", "valid"),
    [
        (SELINUX, True),
        ("system_u:system_r:container_t:s0:c1,c2", True),
        ("u:r:t", True),
        ("u:r", False),
        (":r:t", False),
        ("container_t", False),
    ],
)
def test_the_form_of_a_label(label: str, valid: bool) -> None:
    assert lsm.valid_label(label) is valid


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
