"""The typed values of a container configuration.

Frozen records (:func:`engine.frozen.record`) mirroring runtime-spec
config.md and config-linux.md, in runlog's names (snake case).
:mod:`engine.oci.config` builds them from a bundle's ``config.json`` after
checking it; nothing here checks anything. Records rather than dataclasses
because ``runlog create`` imports this module before it forks the monitor:
as frozen slotted dataclasses these fourteen classes cost 6.6 ms to build,
on top of 14 ms to import :mod:`dataclasses`; as records, about 0.3 ms
(measured here).
"""

from __future__ import annotations

from types import MappingProxyType

from engine.frozen import field, record
from engine.oci.mounts import parse_mount_options
from engine.oci.names import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from engine.oci.mounts import MountSpec

__all__ = [
    "HOOK_ATTRIBUTES",
    "Capabilities",
    "Config",
    "ConsoleSize",
    "Device",
    "Hook",
    "Hooks",
    "IDMapping",
    "Linux",
    "Mount",
    "Namespace",
    "Process",
    "Rlimit",
    "Root",
    "User",
    "empty_map",
]


def empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


@record
class Root:
    """config.md "Root". ``path`` is absolute: a relative one is resolved
    against the bundle directory, as runc resolves it against its working
    directory, which is the bundle."""

    path: str
    readonly: bool = False


@record
class ConsoleSize:
    height: int
    width: int


@record
class User:
    """config.md "POSIX process": uid and gid default to 0 as in Go."""

    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


@record
class Capabilities:
    """config.md "Linux process" capability sets, names from ``names.CAPABILITIES``."""

    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@record
class Rlimit:
    type: str
    soft: int
    hard: int

    @property
    def resource(self) -> int:
        """The ``RLIMIT_*`` number for setrlimit(2)."""
        return RLIMITS[self.type]


@record
class Process:
    """config.md "Process"."""

    args: tuple[str, ...]
    cwd: str
    terminal: bool = False
    console_size: ConsoleSize | None = None
    user: User = User()
    env: tuple[str, ...] = ()
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None

    def env_path(self) -> str | None:
        """The container's ``PATH``: the value of the last ``PATH=`` entry.

        runc's ``prepareEnv`` keeps the last occurrence of each variable and
        looks ``args[0]`` up in that ``PATH``. ``None`` when there is none.
        """
        for entry in reversed(self.env):
            if entry.startswith("PATH="):
                return entry[5:]
        return None

    def environ(self) -> tuple[str, ...]:
        """``env`` without duplicates, as runc passes it to execve(2).

        For each name the last entry wins and stays where it was last seen.
        """
        seen: set[str] = set()
        kept: list[str] = []
        for entry in reversed(self.env):
            name = entry.partition("=")[0]
            if name not in seen:
                seen.add(name)
                kept.append(entry)
        kept.reverse()
        return tuple(kept)


@record
class IDMapping:
    """config-linux.md "User namespace mappings"."""

    container_id: int
    host_id: int
    size: int


@record
class Mount:
    """config.md "Mounts"; ``options`` as written, :meth:`spec` parsed."""

    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()

    def spec(self) -> MountSpec:
        """The options split as runc splits them (flags, propagation, data)."""
        return parse_mount_options(self.options)


@record
class Hook:
    """config.md "POSIX-platform Hooks": ``timeout`` in seconds, or ``None``."""

    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@record
class Hooks:
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()

    def at(self, point: str) -> tuple[Hook, ...]:
        """The hooks of ``point``, named as in config.json (``createRuntime``)."""
        try:
            attribute = HOOK_ATTRIBUTES[point]
        except KeyError:
            raise ValueError(f"not a hook point: {point!r}") from None
        hooks: tuple[Hook, ...] = getattr(self, attribute)
        return hooks


# config.json's hook point names and the Hooks attributes holding them.
HOOK_ATTRIBUTES = {
    "prestart": "prestart",
    "createRuntime": "create_runtime",
    "createContainer": "create_container",
    "startContainer": "start_container",
    "poststart": "poststart",
    "poststop": "poststop",
}


@record
class Namespace:
    """A namespace to create, or to join when ``path`` is set."""

    type: str
    path: str | None = None


@record
class Device:
    """config-linux.md "Devices": a node to create in the container's /dev."""

    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class Linux:
    """config-linux.md. ``resources`` and ``seccomp`` are the raw JSON
    objects (read-only views; treat nested values as read-only too)."""

    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    sysctl: Mapping[str, str] = field(default_factory=empty_map)
    resources: Mapping[str, Any] | None = None
    cgroups_path: str | None = None
    devices: tuple[Device, ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    rootfs_propagation: str | None = None
    seccomp: Mapping[str, Any] | None = None
    mount_label: str | None = None

    def namespace(self, ns_type: str) -> Namespace | None:
        """The entry for namespace ``ns_type``, or ``None`` (the host's is kept)."""
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


@record
class Config:
    """A bundle's configuration. ``path`` is the config file, ``bundle`` the
    absolute bundle directory."""

    path: str
    bundle: str
    oci_version: str
    root: Root
    process: Process
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks = Hooks()
    annotations: Mapping[str, str] = field(default_factory=empty_map)
    linux: Linux = Linux()
