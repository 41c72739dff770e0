"""engine.oci.config: reading config.json, every refusal naming its field."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import RunlogError
from engine.frozen import FrozenInstanceError
from engine.oci.config import (
    CAPABILITIES,
    HOOK_POINTS,
    NAMESPACES,
    RLIMITS,
    ConsoleSize,
    Hook,
    Process,
    Rlimit,
    load_bundle,
    parse,
)
from engine.oci.errors import ConfigError
from engine.oci.mounts import MS_BIND, MS_RDONLY, MS_REC

SOURCE = "/bundles/b1/config.json"

Doc = dict[str, Any]


def _set(path: str, value: object) -> Callable[[Doc], None]:
    """A mutation setting the dotted ``path`` (created as needed) to ``value``."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _namespaces(*types: str) -> Callable[[Doc], None]:
    return _set("linux.namespaces", [{"type": t} for t in types])


def _both(*mutations: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for mutation in mutations:
            mutation(doc)

    return mutate


NOFILE = {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
USER_NS = _namespaces("pid", "mount", "uts", "user")
MAPPED = _both(
    USER_NS,
    _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
    _set("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
)

# (mutation, field, words the problem must contain)
INVALID: list[tuple[Callable[[Doc], None], str, str]] = [
    (_delete("ociVersion"), "ociVersion", "must be specified"),
    (_set("ociVersion", 1), "ociVersion", "expected a string, got number"),
    (_set("ociVersion", "2.0.0"), "ociVersion", "unsupported version '2.0.0'"),
    (_delete("root"), "root", "must be specified"),
    (_set("root", None), "root", "must be specified"),
    (_set("root", "rootfs"), "root", "expected an object, got string"),
    (_set("root", {}), "root.path", "must be specified"),
    (_set("root.path", ""), "root.path", "must not be empty"),
    (_set("root.readonly", "yes"), "root.readonly", "expected true or false, got string"),
    (_delete("process"), "process", "must be specified"),
    (_set("process", []), "process", "expected an object, got array"),
    (_delete("process.args"), "process.args", "must not be empty"),
    (_set("process.args", []), "process.args", "must not be empty"),
    (_set("process.args", "sh"), "process.args", "expected an array, got string"),
    (_set("process.args", [""]), "process.args[0]", "must not be empty"),
    (_set("process.args", ["sh", 1]), "process.args[1]", "expected a string, got number"),
    (_delete("process.cwd"), "process.cwd", "must be specified"),
    (_set("process.cwd", ""), "process.cwd", "must be specified"),
    (_set("process.cwd", "tmp"), "process.cwd", "must be an absolute path, got 'tmp'"),
    (_set("process.terminal", "true"), "process.terminal", "expected true or false, got string"),
    (_set("process.consoleSize", {"height": -1}), "process.consoleSize.height", "out of range"),
    (_set("process.user", {"uid": -1}), "process.user.uid", "-1 is out of range"),
    (_set("process.user", {"uid": 2**32}), "process.user.uid", "out of range"),
    (_set("process.user", {"gid": 1.5}), "process.user.gid", "expected an integer, got number"),
    (_set("process.user", {"uid": True}), "process.user.uid", "expected an integer, got boolean"),
    (_set("process.user", {"umask": "022"}), "process.user.umask", "expected an integer"),
    (
        _set("process.user", {"additionalGids": [1, "2"]}),
        "process.user.additionalGids[1]",
        "expected an integer, got string",
    ),
    (_set("process.env", ["TERM"]), "process.env[0]", "'TERM' is not NAME=VALUE"),
    (_set("process.env", ["A=1", "=x"]), "process.env[1]", "the variable name is empty"),
    (_set("process.env", ["A=\0"]), "process.env[0]", "contains a NUL byte"),
    (_set("process.env", [None]), "process.env[0]", "expected a string, got null"),
    (_set("process.capabilities", "all"), "process.capabilities", "expected an object"),
    (
        _set("process.capabilities", {"bounding": ["CAP_FOO"]}),
        "process.capabilities.bounding[0]",
        "unknown capability 'CAP_FOO'",
    ),
    (
        _set("process.capabilities", {"effective": ["CAP_KILL", "KILL"]}),
        "process.capabilities.effective[1]",
        "'KILL' must be written 'CAP_KILL'",
    ),
    (
        _set("process.capabilities", {"ambient": ["cap_net_raw"]}),
        "process.capabilities.ambient[0]",
        "'cap_net_raw' must be written 'CAP_NET_RAW'",
    ),
    (
        _set("process.capabilities", {"inheritable": ["CAP_SYS_ADMIN", "SYS_FOO"]}),
        "process.capabilities.inheritable[1]",
        "unknown capability 'SYS_FOO'",
    ),
    (_set("process.rlimits", [5]), "process.rlimits[0]", "expected an object, got number"),
    (_set("process.rlimits", [{"soft": 1}]), "process.rlimits[0].type", "must be specified"),
    (
        _set("process.rlimits", [NOFILE, {"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
        "process.rlimits[1].type",
        "unknown rlimit type 'RLIMIT_FOO'",
    ),
    (
        _set("process.rlimits", [{"type": "nofile", "soft": 1, "hard": 1}]),
        "process.rlimits[0].type",
        "unknown rlimit type 'nofile'",
    ),
    (
        _set("process.rlimits", [NOFILE, {"type": "RLIMIT_CORE"}, NOFILE]),
        "process.rlimits[2].type",
        "duplicate rlimit type RLIMIT_NOFILE (first at process.rlimits[0])",
    ),
    (
        _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
        "process.rlimits[0].soft",
        "soft limit 2048 is above the hard limit 1024",
    ),
    (
        _set("process.rlimits", [{"type": "RLIMIT_CPU", "soft": 1, "hard": 2**64}]),
        "process.rlimits[0].hard",
        "out of range",
    ),
    (_set("process.oomScoreAdj", 1001), "process.oomScoreAdj", "1001 is out of range"),
    (_set("process.oomScoreAdj", -1001), "process.oomScoreAdj", "out of range"),
    (_set("process.apparmorProfile", 5), "process.apparmorProfile", "expected a string"),
    (_set("process.selinuxLabel", []), "process.selinuxLabel", "expected a string, got array"),
    (_set("process.noNewPrivileges", 1), "process.noNewPrivileges", "expected true or false"),
    (_set("hostname", 5), "hostname", "expected a string, got number"),
    (_set("mounts", {}), "mounts", "expected an array, got object"),
    (_set("mounts", [{}]), "mounts[0].destination", "must be specified"),
    (
        _set("mounts", [{"destination": "/proc"}, {"destination": "proc"}]),
        "mounts[1].destination",
        "must be an absolute path, got 'proc'",
    ),
    (_set("mounts", [{"destination": 7}]), "mounts[0].destination", "expected a string"),
    (
        _set("mounts", [{"destination": "/x", "options": ["ro", 1]}]),
        "mounts[0].options[1]",
        "expected a string",
    ),
    (
        _set("mounts", [{"destination": "/x", "source": "a\0b"}]),
        "mounts[0].source",
        "contains a NUL byte",
    ),
    (
        _set("mounts", [{"destination": "/x", "type": "tmp\0fs"}]),
        "mounts[0].type",
        "contains a NUL byte",
    ),
    (
        _set("mounts", [{"destination": "/x", "uidMappings": [{"hostID": 1}]}]),
        "mounts[0].uidMappings[0].size",
        "must be at least 1",
    ),
    (_set("hooks", "x"), "hooks", "expected an object, got string"),
    (_set("hooks", {"prestart": {}}), "hooks.prestart", "expected an array, got object"),
    (
        _set("hooks", {"createContainer": [{}]}),
        "hooks.createContainer[0].path",
        "must be specified",
    ),
    (
        _set("hooks", {"prestart": [{"path": "hook.sh"}]}),
        "hooks.prestart[0].path",
        "must be an absolute path, got 'hook.sh'",
    ),
    (
        _set("hooks", {"poststop": [{"path": "/bin/true"}, {"path": "/bin/true", "timeout": 0}]}),
        "hooks.poststop[1].timeout",
        "must be greater than zero, got 0",
    ),
    (
        _set("hooks", {"createRuntime": [{"path": "/bin/true", "timeout": -5}]}),
        "hooks.createRuntime[0].timeout",
        "must be greater than zero, got -5",
    ),
    (
        _set("hooks", {"poststart": [{"path": "/bin/true", "timeout": "5"}]}),
        "hooks.poststart[0].timeout",
        "expected an integer, got string",
    ),
    (
        _set("hooks", {"startContainer": [{"path": "/bin/x", "args": [1]}]}),
        "hooks.startContainer[0].args[0]",
        "expected a string",
    ),
    (
        _set("hooks", {"startContainer": [{"path": "/bin/x", "env": "A=1"}]}),
        "hooks.startContainer[0].env",
        "expected an array",
    ),
    (_set("annotations", []), "annotations", "expected an object, got array"),
    (_set("annotations", {"": "x"}), "annotations", "keys must not be empty"),
    (_set("annotations", {"org.example.n": 1}), "annotations.org.example.n", "expected a string"),
    (_set("linux", "x"), "linux", "expected an object, got string"),
    (_set("linux.namespaces", "pid"), "linux.namespaces", "expected an array"),
    (_set("linux.namespaces", [{}]), "linux.namespaces[0].type", "must be specified"),
    (_namespaces("pid", "mnt"), "linux.namespaces[1].type", "unknown namespace type 'mnt'"),
    (
        _namespaces("pid", "mount", "uts", "pid"),
        "linux.namespaces[3].type",
        "duplicate namespace type 'pid'",
    ),
    (
        _set("linux.namespaces", [{"type": "network", "path": "var/run/netns/x"}]),
        "linux.namespaces[0].path",
        "must be an absolute path",
    ),
    (
        _set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "linux.uidMappings",
        "no user namespace",
    ),
    (
        _set("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "linux.gidMappings",
        "no user namespace",
    ),
    (USER_NS, "linux.uidMappings", "a new user namespace needs mappings"),
    (
        _both(USER_NS, _set("linux.uidMappings", [{"hostID": 1000, "size": 1}])),
        "linux.gidMappings",
        "a new user namespace needs mappings",
    ),
    (
        _both(MAPPED, _set("linux.uidMappings", [{"hostID": -1, "size": 1}])),
        "linux.uidMappings[0].hostID",
        "out of range",
    ),
    (
        _both(MAPPED, _set("linux.gidMappings", [{"hostID": 0, "size": 0}])),
        "linux.gidMappings[0].size",
        "must be at least 1",
    ),
    (
        _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
        "linux.sysctl.net.ipv4.ip_forward",
        "string",
    ),
    (_set("linux.sysctl", ["x"]), "linux.sysctl", "expected an object"),
    (_set("linux.rootfsPropagation", "bogus"), "linux.rootfsPropagation", "unknown propagation"),
    (_set("linux.resources", []), "linux.resources", "expected an object, got array"),
    (_set("linux.seccomp", "default"), "linux.seccomp", "expected an object, got string"),
    (_set("linux.cgroupsPath", 3), "linux.cgroupsPath", "expected a string"),
    (_set("linux.mountLabel", False), "linux.mountLabel", "expected a string, got boolean"),
    (_set("linux.devices", [{"type": "c"}]), "linux.devices[0].path", "must be specified"),
    (
        _set("linux.devices", [{"path": "dev/fuse", "type": "c"}]),
        "linux.devices[0].path",
        "must be an absolute path",
    ),
    (
        _set("linux.devices", [{"path": "/dev/fuse", "type": "z"}]),
        "linux.devices[0].type",
        "must be one of c, u, b, p; got 'z'",
    ),
    (_set("linux.devices", [{"path": "/dev/fuse"}]), "linux.devices[0].type", "must be one of"),
    (
        _set("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": "10"}]),
        "linux.devices[0].major",
        "expected an integer",
    ),
    (_set("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]", "absolute path"),
    (_set("linux.readonlyPaths", ["/proc/sys", 1]), "linux.readonlyPaths[1]", "expected a string"),
    (
        _both(_namespaces("pid", "mount"), _set("hostname", "box")),
        "hostname",
        "cannot set the hostname without a private uts namespace",
    ),
    (
        _both(_namespaces("pid", "mount"), _set("domainname", "example.org")),
        "domainname",
        "without a private uts namespace",
    ),
    (
        _both(_namespaces("pid", "uts"), _set("linux.maskedPaths", ["/proc/kcore"])),
        "linux.maskedPaths",
        "needs a private mount namespace",
    ),
    (
        _both(_namespaces("pid", "uts"), _set("linux.readonlyPaths", ["/proc/sys"])),
        "linux.readonlyPaths",
        "needs a private mount namespace",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "words"), INVALID, ids=[c[1] for c in INVALID])
def test_invalid_config_names_the_field(
    doc: Doc, mutate: Callable[[Doc], None], field: str, words: str
) -> None:
    mutate(doc)
    with pytest.raises(ConfigError) as caught:
        parse(doc, SOURCE)
    err = caught.value
    assert err.path == SOURCE
    assert err.field == field
    assert words in err.problem
    assert str(err) == f"{SOURCE}: {field}: {err.problem}"
    assert "\n" not in str(err)
    assert isinstance(err, RunlogError)
    assert err.exit_code == 1


def test_the_document_must_be_an_object() -> None:
    with pytest.raises(ConfigError) as caught:
        parse([], SOURCE)
    assert caught.value.field is None
    assert str(caught.value) == f"{SOURCE}: expected a JSON object, got array"


def test_minimal_config(doc: Doc) -> None:
    config = parse(doc, SOURCE)
    assert config.path == SOURCE
    assert config.bundle == "/bundles/b1"
    assert config.oci_version == "1.2.1"
    assert config.root.path == "/bundles/b1/rootfs"
    assert config.root.readonly is False
    process = config.process
    assert process.args == ("sh",)
    assert process.cwd == "/"
    assert process.terminal is False
    assert process.user.uid == 0 and process.user.gid == 0
    assert process.user.umask is None
    assert process.capabilities is None
    assert process.rlimits == ()
    assert process.env == ()
    assert config.hostname is None
    assert config.mounts == ()
    assert config.hooks.prestart == ()
    assert dict(config.annotations) == {}
    assert [ns.type for ns in config.linux.namespaces] == ["pid", "mount", "uts"]
    assert config.linux.resources is None
    assert config.linux.seccomp is None


@pytest.mark.parametrize(
    ("root", "bundle", "expected"),
    [
        ("rootfs", "/bundles/b1", "/bundles/b1/rootfs"),
        ("./rootfs/", "/bundles/b1", "/bundles/b1/rootfs"),
        ("../images/rootfs", "/bundles/b1", "/bundles/images/rootfs"),
        ("/srv/images/alpine", "/bundles/b1", "/srv/images/alpine"),
        ("rootfs", "relative/bundle", os.path.join(os.getcwd(), "relative/bundle/rootfs")),
    ],
)
def test_root_path_is_resolved_against_the_bundle(
    doc: Doc, root: str, bundle: str, expected: str
) -> None:
    doc["root"] = {"path": root, "readonly": True}
    config = parse(doc, SOURCE, bundle=bundle)
    assert config.root.path == expected
    assert config.root.readonly is True
    assert os.path.isabs(config.bundle)


@pytest.mark.parametrize(
    ("env", "path"),
    [
        (["PATH=/usr/bin:/bin", "TERM=xterm"], "/usr/bin:/bin"),
        (["PATH=/first", "HOME=/root", "PATH=/last"], "/last"),
        (["PATH=/first", "PATH="], ""),
        (["PATHX=/not", "MYPATH=/no", "TERM=xterm"], None),
        ([], None),
    ],
)
def test_env_path_takes_the_last_path_entry(doc: Doc, env: list[str], path: str | None) -> None:
    doc["process"]["env"] = env
    assert parse(doc, SOURCE).process.env_path() == path


def test_environ_keeps_the_last_entry_of_each_name() -> None:
    process = Process(args=("sh",), cwd="/", env=("A=1", "B=2", "A=3", "C=", "B=4"))
    assert process.environ() == ("A=3", "C=", "B=4")
    assert process.env_path() is None


def test_null_counts_as_absent(doc: Doc) -> None:
    doc.update({"hostname": None, "mounts": None, "hooks": None, "annotations": None})
    doc["process"].update({"env": None, "user": None, "capabilities": None, "terminal": None})
    doc["linux"].update({"resources": None, "maskedPaths": None, "rootfsPropagation": None})
    config = parse(doc, SOURCE)
    assert config.hostname is None
    assert config.process.env == ()
    assert config.process.user.uid == 0
    assert config.process.capabilities is None
    assert config.linux.masked_paths == ()


def test_unknown_keys_are_ignored(doc: Doc) -> None:
    doc["vm"] = {"hypervisor": {"path": "/usr/bin/qemu"}}
    doc["somethingNew"] = [1, 2, 3]
    doc["process"]["scheduler"] = {"policy": "SCHED_OTHER"}
    doc["process"]["user"] = {"uid": 1000, "username": "ignored"}
    doc["linux"]["intelRdt"] = {"closID": "x"}
    doc["hooks"] = {"preStart": "not a hook point runlog knows"}
    config = parse(doc, SOURCE)
    assert config.process.user.uid == 1000
    assert config.hooks.prestart == ()


def test_a_full_config(doc: Doc) -> None:
    doc.update(
        {
            "hostname": "box",
            "domainname": "example.org",
            "annotations": {"org.example.b": "2", "org.example.a": "1"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {
                    "destination": "/data",
                    "type": "bind",
                    "source": "/srv/data",
                    "options": ["rbind", "ro", "rprivate"],
                },
            ],
            "hooks": {
                "createRuntime": [
                    {"path": "/usr/bin/net-setup", "args": ["net-setup", "up"], "timeout": 5}
                ],
                "poststop": [{"path": "/usr/bin/cleanup", "env": ["X=1"]}],
            },
        }
    )
    doc["process"].update(
        {
            "terminal": True,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1000, "gid": 100, "umask": 0o22, "additionalGids": [5, 6]},
            "env": ["PATH=/bin", "TERM=xterm"],
            "capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL", "CAP_CHOWN"]},
            "rlimits": [NOFILE, {"type": "RLIMIT_CORE", "soft": 0, "hard": 2**64 - 1}],
            "noNewPrivileges": True,
            "oomScoreAdj": -500,
            "apparmorProfile": "runlog-default",
            "selinuxLabel": "",
        }
    )
    doc["linux"].update(
        {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "uts"},
                {"type": "network", "path": "/var/run/netns/n1"},
                {"type": "user"},
            ],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "resources": {"memory": {"limit": 1 << 30}, "pids": {"limit": 64}},
            "cgroupsPath": "/runlog/b1",
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "rootfsPropagation": "rslave",
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
            "mountLabel": "system_u:object_r:container_file_t:s0",
        }
    )
    config = parse(doc, SOURCE)
    assert (config.hostname, config.domainname) == ("box", "example.org")
    assert dict(config.annotations) == {"org.example.b": "2", "org.example.a": "1"}
    proc = config.process
    assert proc.terminal is True
    assert proc.console_size == ConsoleSize(height=24, width=80)
    assert (proc.user.uid, proc.user.gid, proc.user.umask) == (1000, 100, 0o22)
    assert proc.user.additional_gids == (5, 6)
    assert proc.capabilities is not None
    assert proc.capabilities.bounding == ("CAP_KILL",)
    assert proc.capabilities.permitted == ("CAP_KILL", "CAP_CHOWN")
    assert proc.capabilities.ambient == ()
    assert proc.rlimits[1] == Rlimit(type="RLIMIT_CORE", soft=0, hard=2**64 - 1)
    assert proc.no_new_privileges is True
    assert proc.oom_score_adj == -500
    assert proc.apparmor_profile == "runlog-default"
    assert proc.selinux_label is None  # empty string: unset, as for runc
    data = config.mounts[1]
    assert (data.destination, data.type, data.source) == ("/data", "bind", "/srv/data")
    assert data.options == ("rbind", "ro", "rprivate")
    assert data.spec().flags == MS_BIND | MS_REC | MS_RDONLY
    assert config.mounts[0].options == ()
    assert config.hooks.create_runtime == (
        Hook(path="/usr/bin/net-setup", args=("net-setup", "up"), timeout=5),
    )
    assert config.hooks.at("poststop") == (Hook(path="/usr/bin/cleanup", env=("X=1",)),)
    linux = config.linux
    network = linux.namespace("network")
    assert network is not None and network.path == "/var/run/netns/n1"
    assert linux.namespace("cgroup") is None
    assert linux.uid_mappings[0].host_id == 100000 and linux.uid_mappings[0].size == 65536
    assert dict(linux.sysctl) == {"net.ipv4.ip_forward": "1"}
    assert linux.resources is not None and linux.resources["pids"] == {"limit": 64}
    assert linux.cgroups_path == "/runlog/b1"
    assert linux.devices[0].major == 10 and linux.devices[0].minor == 229
    assert linux.devices[0].file_mode is None
    assert linux.masked_paths == ("/proc/kcore",)
    assert linux.readonly_paths == ("/proc/sys",)
    assert linux.rootfs_propagation == "rslave"
    assert linux.seccomp is not None and linux.seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    assert linux.mount_label == "system_u:object_r:container_file_t:s0"


def test_joining_a_user_namespace_needs_no_mappings(doc: Doc) -> None:
    doc["linux"]["namespaces"].append({"type": "user", "path": "/proc/42/ns/user"})
    user = parse(doc, SOURCE).linux.namespace("user")
    assert user is not None and user.path == "/proc/42/ns/user"


def test_values_are_frozen(doc: Doc) -> None:
    config = parse(doc, SOURCE)
    with pytest.raises(FrozenInstanceError):
        config.hostname = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.annotations["x"] = "y"  # type: ignore[index]


def test_hooks_at_knows_the_six_points(doc: Doc) -> None:
    doc["hooks"] = {point: [{"path": f"/hooks/{point}"}] for point in HOOK_POINTS}
    hooks = parse(doc, SOURCE).hooks
    for point in HOOK_POINTS:
        assert hooks.at(point) == (Hook(path=f"/hooks/{point}"),)
    with pytest.raises(ValueError, match="not a hook point"):
        hooks.at("create_runtime")


def test_tables_match_the_kernel_numbers() -> None:
    for name, number in RLIMITS.items():
        # Python's resource module lacks RLIMIT_LOCKS (10 in <asm-generic/resource.h>).
        assert getattr(resource, name, 10) == number
        assert Rlimit(type=name, soft=0, hard=0).resource == number
    assert len(CAPABILITIES) == 41 == len(set(CAPABILITIES))
    assert CAPABILITIES.index("CAP_SYS_ADMIN") == 21
    assert CAPABILITIES[-1] == "CAP_CHECKPOINT_RESTORE"
    clone = {ns: getattr(os, f"CLONE_NEW{suffix}", None) for ns, suffix in _CLONE_NAMES.items()}
    for ns, flag in clone.items():
        if flag is not None:  # os has them from Python 3.12
            assert NAMESPACES[ns] == flag
    assert NAMESPACES["pid"] == 0x20000000 and NAMESPACES["time"] == 0x80


_CLONE_NAMES = {
    "cgroup": "CGROUP",
    "ipc": "IPC",
    "mount": "NS",
    "network": "NET",
    "pid": "PID",
    "time": "TIME",
    "user": "USER",
    "uts": "UTS",
}


# load_bundle: the file on disk.


def test_load_bundle(make_bundle: Callable[[object], Path], doc: Doc) -> None:
    bundle = make_bundle(doc)
    config = load_bundle(str(bundle))
    assert config.path == str(bundle / "config.json")
    assert config.bundle == str(bundle)
    assert config.root.path == str(bundle / "rootfs")


def test_load_bundle_relative_path(
    make_bundle: Callable[[object], Path], doc: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(doc)
    monkeypatch.chdir(bundle.parent)
    config = load_bundle("bundle")
    assert config.bundle == str(bundle)
    assert config.root.path == str(bundle / "rootfs")


def test_missing_bundle(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        load_bundle(str(missing))
    err = caught.value
    assert err.path == str(missing / "config.json")
    assert err.field is None
    assert str(err) == f"{missing}/config.json: bundle directory {missing} does not exist"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_bundle(str(tmp_path))
    assert (
        str(caught.value) == f"{tmp_path}/config.json: no such file: the bundle has no config.json"
    )


def test_unreadable_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError, match=r"config\.json: cannot read: Is a directory$"):
        load_bundle(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "line", "col", "problem"),
    [
        (
            '{\n  "ociVersion": "1.2.1",\n  "root": {"path": "rootfs"}\n  "process": {}\n}',
            4,
            3,
            "invalid JSON: Expecting ',' delimiter",
        ),
        ("", 1, 1, "invalid JSON: Expecting value"),
        ('{"ociVersion": "1.2.1"} {}', 1, 25, "invalid JSON: Extra data"),
        ('{\n\t"a": tru\n}', 2, 7, "invalid JSON: Expecting value"),
        (b'{\n "a": "caf\xe9"\n}', 2, 11, "not UTF-8 text"),
    ],
)
def test_malformed_json_gives_line_and_column(
    make_bundle: Callable[[object], Path], text: str | bytes, line: int, col: int, problem: str
) -> None:
    bundle = make_bundle(text)
    with pytest.raises(ConfigError) as caught:
        load_bundle(str(bundle))
    err = caught.value
    assert (err.line, err.col, err.field) == (line, col, None)
    assert err.problem == problem
    assert str(err) == f"{bundle}/config.json:{line}:{col}: {problem}"


def test_invalid_field_from_disk(make_bundle: Callable[[object], Path], doc: Doc) -> None:
    doc["process"]["rlimits"] = [NOFILE, {"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]
    bundle = make_bundle(doc)
    with pytest.raises(ConfigError) as caught:
        load_bundle(str(bundle))
    assert str(caught.value) == (
        f"{bundle}/config.json: process.rlimits[1].type: unknown rlimit type 'RLIMIT_NOPE'"
    )
