"""engine.oci.spec: `runc spec` and `runc features`, and the spec as a config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from engine.jsonfast import loads
from engine.oci import spec as oci_spec
from engine.oci.config import CAPABILITIES, HOOK_POINTS, load_bundle, parse
from engine.oci.gojson import render
from engine.oci.mounts import KNOWN_MOUNT_OPTIONS
from engine.oci.spec import ANNOTATION_VERSION, default_spec, features
from engine.oci.version import OCI_VERSION, RUNLOG_VERSION

DATA = Path(__file__).parent / "data"


def test_default_spec_is_what_runc_spec_writes() -> None:
    # runc writes json.MarshalIndent(spec, "", "\t") with no trailing newline.
    expected = (DATA / "runc-spec.json").read_text()
    assert render(default_spec(cgroupns=False), "\t") == expected


def test_cgroup_namespace_on_a_cgroup2_host() -> None:
    namespaces = default_spec(cgroupns=True)["linux"]["namespaces"]
    assert [ns["type"] for ns in namespaces] == ["pid", "network", "ipc", "uts", "mount", "cgroup"]


def test_cgroup_namespace_follows_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oci_spec, "is_cgroup2_unified", lambda: True)
    assert {"type": "cgroup"} in default_spec()["linux"]["namespaces"]
    monkeypatch.setattr(oci_spec, "is_cgroup2_unified", lambda: False)
    assert {"type": "cgroup"} not in default_spec()["linux"]["namespaces"]


def test_rootless_spec_is_runcs_to_rootless() -> None:
    spec = default_spec(True, cgroupns=False, host_uid=1000, host_gid=1001)
    linux = spec["linux"]
    assert list(linux) == [
        "uidMappings",
        "gidMappings",
        "namespaces",
        "maskedPaths",
        "readonlyPaths",
    ]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "user"]
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/sys"] == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    assert mounts["/dev/pts"]["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ]
    assert "options" not in mounts["/proc"]
    assert [m["destination"] for m in spec["mounts"]] == [
        m["destination"] for m in default_spec()["mounts"]
    ]


def test_rootless_spec_maps_the_caller_by_default() -> None:
    linux = default_spec(rootless=True)["linux"]
    assert linux["uidMappings"][0]["hostID"] == os.geteuid()
    assert linux["gidMappings"][0]["hostID"] == os.getegid()


def test_default_spec_is_a_fresh_document_each_time() -> None:
    first = default_spec(cgroupns=False)
    first["process"]["args"].append("-c")
    first["linux"]["maskedPaths"].clear()
    assert default_spec(cgroupns=False)["process"]["args"] == ["sh"]
    assert default_spec(cgroupns=False)["linux"]["maskedPaths"]


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("cgroupns", [False, True])
def test_default_spec_is_a_valid_config(rootless: bool, cgroupns: bool, tmp_path: Path) -> None:
    spec = default_spec(rootless, cgroupns=cgroupns, host_uid=1000, host_gid=1000)
    # Through the text runc would write and back, as `runlog spec` then `runlog create` do.
    (tmp_path / "config.json").write_text(render(spec, "\t"))
    config = load_bundle(str(tmp_path))
    assert loads(render(spec, "\t")) == spec
    assert config.oci_version == OCI_VERSION
    assert config.root.path == str(tmp_path / "rootfs") and config.root.readonly
    process = config.process
    assert process.args == ("sh",) and process.cwd == "/" and process.terminal
    assert process.env_path() == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert process.capabilities is not None
    assert process.capabilities.bounding == ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert process.capabilities.ambient == ()
    assert [(r.type, r.soft, r.hard) for r in process.rlimits] == [("RLIMIT_NOFILE", 1024, 1024)]
    assert process.no_new_privileges
    assert config.hostname == "runc"
    assert [m.destination for m in config.mounts][:2] == ["/proc", "/dev"]
    linux = config.linux
    assert (linux.namespace("cgroup") is not None) == cgroupns
    assert (linux.namespace("user") is not None) == rootless
    assert (linux.namespace("network") is None) == rootless
    assert (linux.resources is None) == rootless
    assert "/proc/kcore" in linux.masked_paths
    assert "/proc/sys" in linux.readonly_paths


def test_default_spec_parses_without_a_file() -> None:
    config = parse(default_spec(cgroupns=False), "/b/config.json")
    assert config.root.path == "/b/rootfs"


def test_features_document() -> None:
    doc: dict[str, Any] = features()
    assert list(doc) == [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
        "annotations",
    ]
    assert doc["ociVersionMin"] == "1.0.0"
    assert doc["ociVersionMax"] == OCI_VERSION
    assert (
        doc["hooks"]
        == list(HOOK_POINTS)
        == [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ]
    )
    assert doc["mountOptions"] == list(KNOWN_MOUNT_OPTIONS)
    linux = doc["linux"]
    assert linux["namespaces"] == [
        "cgroup",
        "ipc",
        "mount",
        "network",
        "pid",
        "time",
        "user",
        "uts",
    ]
    assert linux["capabilities"] == list(CAPABILITIES)
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False}
    assert list(linux["seccomp"]) == [
        "enabled",
        "actions",
        "operators",
        "archs",
        "knownFlags",
        "supportedFlags",
    ]
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_NOTIFY" not in linux["seccomp"]["actions"]
    assert linux["apparmor"] == {"enabled": False}
    assert linux["selinux"] == {"enabled": False}
    assert doc["annotations"][ANNOTATION_VERSION] == RUNLOG_VERSION
    # runc 1.1's others, under runlog's names where they are runc's
    assert set(doc["annotations"]) == {
        ANNOTATION_VERSION,
        "io.github.seccomp.libseccomp.version",
        "org.runlog.checkpoint.enabled",
        "org.runlog.commit",
    }
    assert RUNLOG_VERSION == "0.1.0"
    text = render(doc, "    ")
    assert text.startswith('{\n    "ociVersionMin": "1.0.0",\n    "ociVersionMax": ')
    assert loads(text) == doc


def test_every_advertised_option_is_understood() -> None:
    # What features() promises, the config parser and mount parser accept.
    from engine.oci.mounts import parse_mount_options

    for option in KNOWN_MOUNT_OPTIONS:
        spec = parse_mount_options([option])
        assert option == "defaults" or spec.data == "", option
