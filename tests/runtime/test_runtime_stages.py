"""Which way the init is made (engine.runtime.init.stages.direct_flags): cloned
straight into its new namespaces, or through the intermediate process where it must be."""

from __future__ import annotations

from typing import Any

import pytest

from engine.linux.syscalls import CLONE_FLAGS
from engine.oci.config import parse
from engine.oci.spec import default_spec
from engine.runtime.init.stages import direct_flags


def _config(namespaces: list[dict[str, Any]]) -> Any:
    spec = default_spec()
    spec["linux"]["namespaces"] = namespaces
    # What needs a uts or a mount namespace, which some here lack.
    spec.pop("hostname", None)
    spec["linux"]["maskedPaths"] = spec["linux"]["readonlyPaths"] = []
    if any(ns["type"] == "user" for ns in namespaces):
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return parse(spec, "config.json", bundle="/b")


def _new(*kinds: str) -> list[dict[str, Any]]:
    return [{"type": kind} for kind in kinds]


def test_new_namespaces_are_clone_flags_but_the_cgroup_one() -> None:
    flags = direct_flags(_config(_new("pid", "network", "ipc", "uts", "mount", "cgroup")))
    expected = 0
    for kind in ("pid", "network", "ipc", "uts", "mount"):
        expected |= CLONE_FLAGS[kind]
    assert flags == expected
    assert direct_flags(_config([])) == 0  # no namespace at all: a plain clone


def test_a_new_user_namespace_is_a_clone_flag_too() -> None:
    # Mapped from outside by the monitor before the init goes on (init_direct).
    flags = direct_flags(_config(_new("pid", "mount", "user", "cgroup")))
    assert flags == CLONE_FLAGS["pid"] | CLONE_FLAGS["mount"] | CLONE_FLAGS["user"]


@pytest.mark.parametrize(
    "namespaces",
    [
        _new("mount", "time"),
        [*_new("pid", "mount"), {"type": "network", "path": "/proc/1/ns/net"}],
        [*_new("mount"), {"type": "pid", "path": "/proc/1/ns/pid"}],
    ],
    ids=["time", "network-path", "pid-path"],
)
def test_the_intermediate_serves_a_time_namespace_and_every_join(
    namespaces: list[dict[str, Any]],
) -> None:
    assert direct_flags(_config(namespaces)) is None
