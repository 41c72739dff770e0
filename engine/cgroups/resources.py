"""``linux.resources`` of config.json, parsed into what the managers write.

runtime-spec config-linux.md, "Control groups". Zero values mean "not set",
as in runc, whose Go structs cannot tell 0 from absent: a memory limit of 0
is not written (it would leave the container no memory at all), nor are a
cpu shares, quota or period of 0, nor a pids limit of 0
(libcontainer/cgroups/fs/pids.go: ``if r.PidsLimit != 0``).

Fields the spec defines that runlog does not apply (rdma, unified,
cpu.realtime*, ...) are listed in ``Resources.unsupported`` by
their config path, and :meth:`Resources.ignored` words them as warnings for
the create event, instead of pretending they took effect. Keys the spec
does not define are ignored, as runc's JSON decoding ignores them.

Memory knobs only cgroup v1 has (``swappiness``, ``disableOOMKiller``,
``kernelTCP``: :meth:`Resources.v1_memory_knobs`) are written where the kernel has
their file and otherwise ignored with a warning (runc 1.1 ignores them on
cgroup v2 without one). ``memory.kernel`` is ignored with a warning, as
runc 1.1 ignores it ("Kernel memory settings are ignored"): Linux
deprecated kernel memory limits in 5.4, and here (6.x) a write to
``memory.kmem.limit_in_bytes`` succeeds and changes nothing.

``blockIO`` and ``network`` go to cgroup v1's blkio, net_cls and net_prio
controllers as runc writes them, and fail the create as runc's do where the
host lacks the hierarchy or the file. On cgroup v2 ``blockIO`` goes to
io.weight, io.bfq.weight and io.max as runc writes it; what v2 cannot take
(leaf weights, device weights without BFQ) and ``network`` (v2 has no
net_cls or net_prio) are ignored with a warning.

The values are frozen records (:mod:`engine.frozen`, tens of microseconds
per class where dataclasses cost 15 ms to import and 0.5 ms per class). The
managers import this module only for type checking, so ``runlog pause``
does not load it.
"""

from __future__ import annotations

# collections.abc's Mapping, without the collections package (1 ms on
# create): collections.abc re-exports _collections_abc, which os loads.
from _collections_abc import Mapping

from engine.cgroups.errors import ResourcesError
from engine.frozen import record

__all__ = ["DeviceLimit", "DeviceRule", "HugepageLimit", "Resources"]

_PREFIX = "linux.resources"

# Spec fields runlog reads but does not apply; see the module docstring.
_UNSUPPORTED_TOP = ("rdma", "unified")
_UNSUPPORTED_MEMORY = ("useHierarchy", "checkBeforeUpdate")
_UNSUPPORTED_CPU = ("realtimeRuntime", "realtimePeriod", "idle", "burst")
_HUGEPAGE_UNITS = ("KB", "MB", "GB")


@record
class DeviceRule:
    """One entry of ``linux.resources.devices``; ``None`` major/minor is "*"."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def v1_line(self) -> str:
        """The line for ``devices.allow``/``devices.deny`` (kernel
        Documentation/admin-guide/cgroup-v1/devices.rst): ``type major:minor access``."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


@record
class HugepageLimit:
    """``pageSize`` as the kernel names its files ("2MB", "1GB") and a byte limit."""

    page_size: str
    limit: int


@record
class DeviceLimit:
    """A per-device line of the blkio controller: ``major:minor value``."""

    major: int
    minor: int
    value: int

    def line(self) -> str:
        return f"{self.major}:{self.minor} {self.value}"


@record
class Resources:
    """What a manager's ``apply`` writes; every field ``None``/empty is "leave as is"."""

    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    memory_disable_oom_killer: bool = False
    memory_kernel: int | None = None
    memory_kernel_tcp: int | None = None
    pids_limit: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_cpus: str | None = None
    cpu_mems: str | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    devices: tuple[DeviceRule, ...] = ()
    blkio_weight: int | None = None
    blkio_leaf_weight: int | None = None
    # (v1 file suffix, limit): "weight_device", "leaf_weight_device",
    # "throttle.read_bps_device", ... in runc's order.
    blkio_devices: tuple[tuple[str, DeviceLimit], ...] = ()
    net_class_id: int | None = None
    net_priorities: tuple[tuple[str, int], ...] = ()
    unsupported: tuple[str, ...] = ()

    @classmethod
    def from_oci(cls, d: Mapping[str, object] | None) -> Resources:
        """Parse ``linux.resources``; raise ``ResourcesError`` naming the field."""
        return from_oci(d)

    def controllers(self) -> list[str]:
        """The controllers ``apply`` has to write, in runc's order
        (libcontainer/cgroups/fs/fs.go ``subsystems``: cpuset first, because
        the other writes do not depend on it but joining does)."""
        wanted: list[str] = []
        if self.cpu_cpus is not None or self.cpu_mems is not None:
            wanted.append("cpuset")
        if self.devices:
            wanted.append("devices")
        if (
            self.memory_limit is not None
            or self.memory_reservation is not None
            or self.memory_swap is not None
            or self.v1_memory_knobs()
        ):
            wanted.append("memory")
        if self.cpu_shares is not None or self.cpu_quota is not None or self.cpu_period is not None:
            wanted.append("cpu")
        if self.pids_limit is not None:
            wanted.append("pids")
        if (
            self.blkio_weight is not None
            or self.blkio_leaf_weight is not None
            or self.blkio_devices
        ):
            wanted.append("blkio")
        if self.hugepage_limits:
            wanted.append("hugetlb")
        if self.net_class_id is not None:
            wanted.append("net_cls")
        if self.net_priorities:
            wanted.append("net_prio")
        return wanted

    def ignored(self) -> list[str]:
        """Warnings for the fields no manager applies, on any host."""
        warnings = [f"{field} ignored: runlog does not apply it" for field in self.unsupported]
        if self.memory_kernel is not None:
            warnings.append(
                f"{_PREFIX}.memory.kernel ignored: kernel memory limits are deprecated "
                "(runc 1.1 ignores them too)"
            )
        return warnings

    def v1_memory_knobs(self) -> list[tuple[str, str, str]]:
        """The memory settings only cgroup v1 has, each as (config field,
        the v1 file, the value to write), in runc's order (fs/memory.go
        ``Set``)."""
        knobs: list[tuple[str, str, str]] = []
        where = f"{_PREFIX}.memory"
        if self.memory_disable_oom_killer:
            knobs.append((f"{where}.disableOOMKiller", "memory.oom_control", "1"))
        if self.memory_swappiness is not None:
            knobs.append((f"{where}.swappiness", "memory.swappiness", str(self.memory_swappiness)))
        if self.memory_kernel_tcp is not None:
            tcp = str(self.memory_kernel_tcp)
            knobs.append((f"{where}.kernelTCP", "memory.kmem.tcp.limit_in_bytes", tcp))
        return knobs


def from_oci(d: Mapping[str, object] | None) -> Resources:
    """Parse the OCI ``linux.resources`` object (``None`` or ``{}``: no limits)."""
    if d is None:
        return Resources()
    top = _mapping(d, _PREFIX)
    unsupported: list[str] = [
        f"{_PREFIX}.{key}" for key in _UNSUPPORTED_TOP if top.get(key) not in (None, {}, [])
    ]

    memory = _mapping(top.get("memory"), f"{_PREFIX}.memory")
    unsupported += _present(memory, _UNSUPPORTED_MEMORY, f"{_PREFIX}.memory")
    cpu = _mapping(top.get("cpu"), f"{_PREFIX}.cpu")
    unsupported += _present(cpu, _UNSUPPORTED_CPU, f"{_PREFIX}.cpu")
    pids = _mapping(top.get("pids"), f"{_PREFIX}.pids")
    weight, leaf_weight, blkio_devices = _block_io(
        _mapping(top.get("blockIO"), f"{_PREFIX}.blockIO")
    )
    class_id, priorities = _network(_mapping(top.get("network"), f"{_PREFIX}.network"))

    return Resources(
        memory_limit=_limit(memory, "limit", f"{_PREFIX}.memory"),
        memory_reservation=_limit(memory, "reservation", f"{_PREFIX}.memory"),
        memory_swap=_limit(memory, "swap", f"{_PREFIX}.memory"),
        memory_swappiness=_swappiness(memory.get("swappiness")),
        memory_disable_oom_killer=_flag(
            memory.get("disableOOMKiller"), f"{_PREFIX}.memory.disableOOMKiller"
        ),
        memory_kernel=_int(memory.get("kernel"), f"{_PREFIX}.memory.kernel", minimum=-1),
        memory_kernel_tcp=_limit(memory, "kernelTCP", f"{_PREFIX}.memory"),
        # pids.limit: <= -1 is "max"; 0 is unset (runc, see module docstring).
        pids_limit=_nonzero(_int(pids.get("limit"), f"{_PREFIX}.pids.limit")),
        cpu_shares=_nonzero(_int(cpu.get("shares"), f"{_PREFIX}.cpu.shares", minimum=0)),
        # cpu.quota -1 is "no quota" (kernel sched-bwc.rst: cfs_quota_us = -1).
        cpu_quota=_nonzero(_int(cpu.get("quota"), f"{_PREFIX}.cpu.quota", minimum=-1)),
        cpu_period=_nonzero(_int(cpu.get("period"), f"{_PREFIX}.cpu.period", minimum=0)),
        cpu_cpus=_str(cpu.get("cpus"), f"{_PREFIX}.cpu.cpus"),
        cpu_mems=_str(cpu.get("mems"), f"{_PREFIX}.cpu.mems"),
        hugepage_limits=_hugepages(top.get("hugepageLimits")),
        devices=_devices(top.get("devices")),
        blkio_weight=weight,
        blkio_leaf_weight=leaf_weight,
        blkio_devices=blkio_devices,
        net_class_id=class_id,
        net_priorities=priorities,
        unsupported=tuple(unsupported),
    )


def _present(section: Mapping[str, object], keys: tuple[str, ...], where: str) -> list[str]:
    return [f"{where}.{key}" for key in keys if section.get(key) is not None]


def _type_name(value: object) -> str:
    return type(value).__name__


def _mapping(value: object, field: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ResourcesError(field, f"expected an object, got {_type_name(value)}")
    return value


def _int(value: object, field: str, *, minimum: int | None = None) -> int | None:
    if value is None:
        return None
    # bool is an int subclass; true/false in a byte count is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResourcesError(field, f"expected an integer, got {_type_name(value)} {value!r}")
    if minimum is not None and value < minimum:
        raise ResourcesError(field, f"{value} is out of range (at least {minimum})")
    return value


def _nonzero(value: int | None) -> int | None:
    return None if value == 0 else value


def _limit(section: Mapping[str, object], key: str, where: str) -> int | None:
    """A memory byte count: -1 is unlimited, 0 is unset."""
    return _nonzero(_int(section.get(key), f"{where}.{key}", minimum=-1))


def _swappiness(value: object) -> int | None:
    field = f"{_PREFIX}.memory.swappiness"
    swappiness = _int(value, field, minimum=0)
    if swappiness is not None and swappiness > 100:
        # runc's words.
        problem = f"invalid memory swappiness value: {swappiness} (valid range is 0-100)"
        raise ResourcesError(field, problem)
    return swappiness


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ResourcesError(field, f"expected true or false, got {value!r}")
    return value


def _str(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResourcesError(field, f"expected a string, got {_type_name(value)} {value!r}")
    return value or None


def _list(value: object, field: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResourcesError(field, f"expected an array, got {_type_name(value)}")
    return value


def _hugepages(value: object) -> tuple[HugepageLimit, ...]:
    limits: list[HugepageLimit] = []
    for i, item in enumerate(_list(value, f"{_PREFIX}.hugepageLimits")):
        where = f"{_PREFIX}.hugepageLimits[{i}]"
        entry = _mapping(item, where)
        size = _str(entry.get("pageSize"), f"{where}.pageSize")
        # The kernel's file names: hugetlb.<size>.limit_in_bytes / .max, size
        # as "2MB", "1GB", "64KB" (mm/hugetlb_cgroup.c, mem_fmt()).
        if size is None or not (size[:-2].isdigit() and size[-2:] in _HUGEPAGE_UNITS):
            raise ResourcesError(
                f"{where}.pageSize", f"expected a size like '2MB' or '1GB', got {size!r}"
            )
        limit = _int(entry.get("limit"), f"{where}.limit", minimum=0)
        if limit is None:
            raise ResourcesError(f"{where}.limit", "is required")
        limits.append(HugepageLimit(size, limit))
    return tuple(limits)


def _devices(value: object) -> tuple[DeviceRule, ...]:
    rules: list[DeviceRule] = []
    for i, item in enumerate(_list(value, f"{_PREFIX}.devices")):
        where = f"{_PREFIX}.devices[{i}]"
        entry = _mapping(item, where)
        allow = entry.get("allow")
        if not isinstance(allow, bool):
            raise ResourcesError(f"{where}.allow", f"expected true or false, got {allow!r}")
        kind = _str(entry.get("type"), f"{where}.type") or "a"
        if kind not in ("a", "b", "c"):
            raise ResourcesError(f"{where}.type", f"expected 'a', 'b' or 'c', got {kind!r}")
        # runtime-spec: access "composition of r, w and m"; runlog reads an
        # absent access as all three, the widest reading of the rule.
        access = _str(entry.get("access"), f"{where}.access") or "rwm"
        if any(c not in "rwm" for c in access) or len(set(access)) != len(access):
            raise ResourcesError(
                f"{where}.access", f"expected letters from 'rwm' at most once, got {access!r}"
            )
        # -1 is the Go world's wildcard (runc specconv); absent means the same.
        major = _int(entry.get("major"), f"{where}.major", minimum=-1)
        minor = _int(entry.get("minor"), f"{where}.minor", minimum=-1)
        rules.append(
            DeviceRule(
                allow=allow,
                type=kind,
                major=None if major in (None, -1) else major,
                minor=None if minor in (None, -1) else minor,
                access=access,
            )
        )
    return tuple(rules)


# runtime-spec blockIO's per-device lists and the v1 files runc writes them to.
_THROTTLES = (
    ("throttleReadBpsDevice", "throttle.read_bps_device"),
    ("throttleWriteBpsDevice", "throttle.write_bps_device"),
    ("throttleReadIOPSDevice", "throttle.read_iops_device"),
    ("throttleWriteIOPSDevice", "throttle.write_iops_device"),
)


def _device_limit(entry: Mapping[str, object], key: str, where: str) -> DeviceLimit | None:
    """``entry[key]`` for the device ``entry`` names; 0 or absent is unset."""
    value = _nonzero(_int(entry.get(key), f"{where}.{key}", minimum=0))
    if value is None:
        return None
    major = _int(entry.get("major"), f"{where}.major", minimum=0)
    minor = _int(entry.get("minor"), f"{where}.minor", minimum=0)
    if major is None or minor is None:
        raise ResourcesError(where, "major and minor are required")
    return DeviceLimit(major, minor, value)


def _block_io(
    block: Mapping[str, object],
) -> tuple[int | None, int | None, tuple[tuple[str, DeviceLimit], ...]]:
    """``linux.resources.blockIO`` as runc's blkio ``Set`` writes it (0 is unset)."""
    where = f"{_PREFIX}.blockIO"
    lines: list[tuple[str, DeviceLimit]] = []
    for i, item in enumerate(_list(block.get("weightDevice"), f"{where}.weightDevice")):
        at = f"{where}.weightDevice[{i}]"
        entry = _mapping(item, at)
        for key, suffix in (("weight", "weight_device"), ("leafWeight", "leaf_weight_device")):
            limit = _device_limit(entry, key, at)
            if limit is not None:
                lines.append((suffix, limit))
    for key, suffix in _THROTTLES:
        for i, item in enumerate(_list(block.get(key), f"{where}.{key}")):
            at = f"{where}.{key}[{i}]"
            limit = _device_limit(_mapping(item, at), "rate", at)
            if limit is not None:
                lines.append((suffix, limit))
    weight = _nonzero(_int(block.get("weight"), f"{where}.weight", minimum=0))
    leaf_weight = _nonzero(_int(block.get("leafWeight"), f"{where}.leafWeight", minimum=0))
    return weight, leaf_weight, tuple(lines)


def _network(network: Mapping[str, object]) -> tuple[int | None, tuple[tuple[str, int], ...]]:
    """``linux.resources.network``: net_cls's class id (0 is unset, as in
    runc) and net_prio's priorities per interface."""
    where = f"{_PREFIX}.network"
    priorities: list[tuple[str, int]] = []
    for i, item in enumerate(_list(network.get("priorities"), f"{where}.priorities")):
        at = f"{where}.priorities[{i}]"
        entry = _mapping(item, at)
        name = _str(entry.get("name"), f"{at}.name")
        priority = _int(entry.get("priority"), f"{at}.priority", minimum=0)
        if name is None or priority is None:
            raise ResourcesError(at, "name and priority are required")
        priorities.append((name, priority))
    class_id = _int(network.get("classID"), f"{where}.classID", minimum=0)
    return _nonzero(class_id), tuple(priorities)
