"""The cgroup v2 manager: one directory in the unified tree.

Follows runc's ``libcontainer/cgroups/fs2`` driver and the kernel's
Documentation/admin-guide/cgroup-v2.rst. A controller works in a cgroup
only when every ancestor lists it in ``cgroup.subtree_control``; on a v2
host ``create`` enables every available controller on the way down, as
runc's ``CreateCgroupPath`` does. In the hybrid manager's unified part
nothing is enabled up front (the host's controllers live in v1) and a
controller is enabled the first time a limit needs it.

Devices: cgroup v2 has no devices.allow/deny; access control is an eBPF
program attached to the cgroup (BPF_CGROUP_DEVICE), built from the rules
by :mod:`engine.cgroups.devices` and loaded by :mod:`engine.linux.bpf`, as
runc's devicefilter does.
"""

from __future__ import annotations

import os
import time

from engine.cgroups import files
from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager, FreezerState
from engine.cgroups.errors import CgroupError
from engine.errors import UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.cgroups.resources import Resources

__all__ = ["V2Manager", "cpu_weight"]

_C = "unified"  # the controller name errors carry for this tree's own files


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), runc's linear map
    (``cgroups.ConvertCPUSharesToCgroupV2Value``)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


class V2Manager(CgroupManager):
    """A container's cgroup at ``path`` in the cgroup2 tree mounted at ``mount``."""

    kind = "v2"

    def __init__(self, path: str, *, mount: str, enable_all: bool = True) -> None:
        self._path = os.path.normpath(path)
        self._mount = os.path.normpath(mount)
        self._enable_all = enable_all
        rel = os.path.relpath(self._path, self._mount)
        if rel == "." or rel.startswith(".."):
            raise CgroupError(
                f"cgroup {self._path} is not below the cgroup2 mount {self._mount}",
                path=self._path,
                controller=_C,
            )
        parts = rel.split(os.sep)
        # The hierarchy root, then each level down to the container's parent.
        self._ancestors = [os.path.join(self._mount, *parts[:i]) for i in range(len(parts))]

    @property
    def paths(self) -> dict[str, str]:
        return {"unified": self._path}

    @property
    def path(self) -> str:
        return self._path

    # -- create / add / destroy -------------------------------------------------

    def create(self) -> None:
        made: list[str] = []
        try:
            for level in [*self._ancestors[1:], self._path]:
                if not os.path.isdir(level):
                    try:
                        os.mkdir(level, 0o755)
                    except FileExistsError:
                        continue
                    except OSError as err:
                        raise CgroupError(
                            f"cannot create cgroup {level}: {err.strerror}; is cgroup2 "
                            "mounted and writable (runlog needs root)?",
                            path=level,
                            controller=_C,
                        ) from err
                    made.append(level)
            if self._enable_all:
                self._enable_available()
        except BaseException:
            files.undo_mkdirs(made)
            raise

    def _enable_available(self) -> None:
        """runc CreateCgroupPath: give every level's children all it has.
        A controller that cannot be enabled is not an error here; ``apply``
        reports it if a limit needs it."""
        for level in self._ancestors:
            available = files.read_text(level, "cgroup.controllers", controller=_C).split()
            enabled = files.read_text(level, "cgroup.subtree_control", controller=_C).split()
            for controller in available:
                if controller not in enabled:
                    try:
                        files.write(
                            level, "cgroup.subtree_control", f"+{controller}", controller=_C
                        )
                    except CgroupError:
                        continue

    def enable(self, controller: str) -> None:
        """Enable ``controller`` from the root down to this cgroup's parent."""
        controller = _V2_NAMES.get(controller, controller)
        for level in self._ancestors:
            enabled = files.read_text(level, "cgroup.subtree_control", controller=_C).split()
            if controller in enabled:
                continue
            try:
                files.write(level, "cgroup.subtree_control", f"+{controller}", controller=_C)
            except CgroupError as err:
                raise CgroupError(
                    f"cannot enable the {controller} controller in {level}: {err}. A cgroup "
                    "with processes of its own cannot give controllers to its children "
                    "(cgroup-v2.rst, no internal processes); choose a cgroupsPath below "
                    "a cgroup without processes",
                    path=level,
                    controller=controller,
                ) from err

    def has(self, controller: str) -> bool:
        """Whether ``controller`` works in this cgroup now."""
        controller = _V2_NAMES.get(controller, controller)
        try:
            text = files.read_text(self._path, "cgroup.controllers", controller=_C)
        except CgroupError:
            return False
        return controller in text.split()

    def available(self, controller: str) -> bool:
        """Whether the hierarchy offers ``controller`` at all (root's cgroup.controllers)."""
        controller = _V2_NAMES.get(controller, controller)
        try:
            text = files.read_text(self._mount, "cgroup.controllers", controller=_C)
        except CgroupError:
            return False
        return controller in text.split()

    def add(self, pid: int) -> None:
        if not os.path.isdir(self._path):
            raise CgroupError(
                f"cannot add process {pid}: cgroup {self._path} does not exist (create it first)",
                path=self._path,
                controller=_C,
            )
        files.write(self._path, "cgroup.procs", str(pid), controller=_C)

    def destroy(self) -> None:
        files.remove_tree(self._path, controller=_C)

    def exists(self) -> bool:
        return os.path.isdir(self._path)

    def pids(self) -> list[int]:
        if not os.path.isdir(self._path):
            return []
        return files.subtree_procs(self._path, controller=_C)

    # -- limits -------------------------------------------------------------------

    def apply(self, resources: Resources) -> list[str]:
        warnings: list[str] = []
        for controller in resources.controllers():
            warnings += self.apply_controller(controller, resources)
        return warnings

    def apply_controller(self, controller: str, r: Resources) -> list[str]:
        """Write the part of ``r`` that belongs to one controller; return
        the warnings for what cgroup v2 has no file for."""
        if controller == "devices":
            self._set_devices(r)
            return []
        if controller in _V1_ONLY:
            return [f"{_V1_ONLY[controller]} ignored: {_V1_ONLY_WHY[controller]}"]
        if not self.has(controller):
            if not self.available(controller):
                raise CgroupError(
                    f"cannot set {controller} limits: the cgroup2 tree at {self._mount} "
                    f"does not offer the {controller} controller (cgroup.controllers)",
                    path=self._mount,
                    controller=controller,
                )
            self.enable(controller)
        d = self._path
        warnings: list[str] = []
        if controller == "memory":
            _set_memory(d, r)
            # runc 1.1 ignores these on cgroup v2, which has no such file.
            knobs = r.v1_memory_knobs()
            warnings = [f"{field} ignored: cgroup v2 has no {name}" for field, name, _ in knobs]
        elif controller == "blkio":
            warnings = _set_io(d, r)
        elif controller == "pids":
            if r.pids_limit is not None:
                pids_max = "max" if r.pids_limit < 0 else str(r.pids_limit)
                files.write(d, "pids.max", pids_max, controller="pids")
        elif controller == "cpu":
            _set_cpu(d, r)
        elif controller == "cpuset":
            for name, cpuset in (("cpuset.cpus", r.cpu_cpus), ("cpuset.mems", r.cpu_mems)):
                if cpuset is not None:
                    files.write(d, name, cpuset, controller="cpuset")
        elif controller == "hugetlb":
            for limit in r.hugepage_limits:
                name = f"hugetlb.{limit.page_size}.max"
                if not os.path.exists(os.path.join(d, name)):
                    raise CgroupError(
                        f"cannot set the hugetlb limit for page size {limit.page_size}: "
                        f"{d}/{name} does not exist (the kernel has no such page size)",
                        path=d,
                        controller="hugetlb",
                    )
                files.write(d, name, str(limit.limit), controller="hugetlb")
        else:
            raise CgroupError(f"runlog does not set {controller} limits", controller=controller)
        return warnings

    # -- freezer ------------------------------------------------------------------

    def _require_freeze(self) -> None:
        if not os.path.exists(os.path.join(self._path, "cgroup.freeze")):
            if not os.path.isdir(self._path):
                raise CgroupError(
                    f"cannot freeze: cgroup {self._path} does not exist",
                    path=self._path,
                    controller="freezer",
                )
            raise UnsupportedError(
                f"{self._path} has no cgroup.freeze: the kernel is older than 5.2 "
                "and cannot freeze a cgroup2 group; pause is not available"
            )

    def _wait_frozen(self, want: str, deadline: float) -> bool:
        while True:
            events = files.read_text(self._path, "cgroup.events", controller="freezer")
            for line in events.splitlines():
                key, _, value = line.partition(" ")
                if key == "frozen" and value.strip() == want:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)

    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._require_freeze()
        deadline = time.monotonic() + timeout
        try:
            files.write(self._path, "cgroup.freeze", "1", controller="freezer")
            # cgroup-v2.rst: "frozen 1" in cgroup.events once every task stopped.
            if not self._wait_frozen("1", deadline):
                raise CgroupError(
                    f"{self._path}: not frozen after {timeout:g}s; the container was thawed "
                    "again; retry the pause",
                    path=self._path,
                    controller="freezer",
                )
        except BaseException:
            files.try_write(self._path, "cgroup.freeze", "0", controller="freezer")
            raise

    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._require_freeze()
        deadline = time.monotonic() + timeout
        files.write(self._path, "cgroup.freeze", "0", controller="freezer")
        if not self._wait_frozen("0", deadline):
            raise CgroupError(
                f"{self._path}: still frozen after {timeout:g}s; an ancestor cgroup may be "
                "frozen (check cgroup.freeze above it)",
                path=self._path,
                controller="freezer",
            )

    def freezer_state(self) -> str:
        try:
            wanted = files.read_text(self._path, "cgroup.freeze", controller="freezer").strip()
        except CgroupError:
            return FreezerState.THAWED
        if wanted != "1":
            # Like runc fs2 (freezer.go): frozen only through an ancestor is
            # not this container's pause.
            return FreezerState.THAWED
        events = files.read_text(self._path, "cgroup.events", controller="freezer")
        frozen = any(line.split() == ["frozen", "1"] for line in events.splitlines())
        return FreezerState.FROZEN if frozen else FreezerState.FREEZING

    # -- stats --------------------------------------------------------------------

    def _set_devices(self, r: Resources) -> None:
        """cgroup v2 has no devices controller: an eBPF program attached to
        the cgroup enforces the rules (engine.cgroups.devices)."""
        from engine.cgroups.devices import program
        from engine.linux.bpf import BpfError, attach_device_program

        code = program(r.devices)
        try:
            attach_device_program(self._path, code)
        except BpfError as err:
            hint = {
                1: "loading it needs CAP_SYS_ADMIN (runlog needs root)",
                9: "the directory is not a cgroup2 cgroup",
                13: "the kernel's verifier refused it",
                22: "the kernel has no cgroup device programs (CONFIG_CGROUP_BPF)",
                38: "the kernel has no bpf(2) (CONFIG_BPF_SYSCALL)",
            }.get(err.errno or 0, "")
            raise CgroupError(
                f"cannot enforce linux.resources.devices in {self._path}: "
                f"{err.strerror}{'; ' + hint if hint else ''}"
                f"{' (' + err.log.splitlines()[-1] + ')' if err.log else ''}",
                path=self._path,
                controller="devices",
            ) from err

    def stats(self) -> dict[str, object]:
        d = self._path
        stats: dict[str, object] = {}
        if _has(d, "cpu.stat"):
            stat = files.read_keyed(d, "cpu.stat", controller="cpu")
            # cpu.stat counts microseconds; runc reports nanoseconds.
            stats["cpu"] = {
                "usage": {
                    "total": stat.get("usage_usec", 0) * 1000,
                    "kernel": stat.get("system_usec", 0) * 1000,
                    "user": stat.get("user_usec", 0) * 1000,
                    "percpu": [],
                },
                "throttling": {
                    "periods": stat.get("nr_periods", 0),
                    "throttled_periods": stat.get("nr_throttled", 0),
                    "throttled_time": stat.get("throttled_usec", 0) * 1000,
                },
            }
        if _has(d, "memory.current"):
            stats["memory"] = _memory_stats(d)
        if _has(d, "pids.current"):
            stats["pids"] = {
                "current": files.read_int(d, "pids.current", controller="pids"),
                "limit": files.read_limit(d, "pids.max", controller="pids", unlimited=0),
            }
        elif _has(d, "cgroup.procs"):
            # No pids controller here: count the processes, as runc's
            # statPidsFromCgroupProcs does (no limit).
            stats["pids"] = {"current": len(files.cgroup_procs(d, controller=_C)), "limit": 0}
        hugetlb = _hugetlb_stats(d)
        if hugetlb:
            stats["hugetlb"] = hugetlb
        return stats


# Controllers runlog writes on cgroup v1 only: the config field, and why.
_V1_ONLY = {
    "net_cls": "linux.resources.network.classID",
    "net_prio": "linux.resources.network.priorities",
}
_V1_ONLY_WHY = {
    "net_cls": "cgroup v2 has no net_cls controller",
    "net_prio": "cgroup v2 has no net_prio controller",
}
# cgroup v1's names of controllers cgroup v2 names otherwise.
_V2_NAMES = {"blkio": "io"}
# blockIO's throttles: the v1 file suffix, and the key of a line of io.max.
_IO_MAX_KEYS = {
    "throttle.read_bps_device": "rbps",
    "throttle.write_bps_device": "wbps",
    "throttle.read_iops_device": "riops",
    "throttle.write_iops_device": "wiops",
}


def io_weight(blkio_weight: int) -> int:
    """runc's ``ConvertBlkIOToIOWeightValue``: the v1 range 10..1000 onto
    io.weight's 1..10000."""
    return 1 + (blkio_weight - 10) * 9999 // 990


def _set_io(d: str, r: Resources) -> list[str]:
    """runc fs2/io.go ``setIo``: the weight to BFQ's io.bfq.weight where the
    kernel has it, else converted to io.weight; per-device weights only to
    a BFQ that takes them (Linux 5.4); the throttles to io.max. What cgroup
    v2 cannot take (leaf weights, device weights without BFQ) is ignored,
    as runc ignores it, with a warning."""
    where = "linux.resources.blockIO"
    warnings: list[str] = []
    bfq = _has(d, "io.bfq.weight")
    # A BFQ without per-device weights reads back one number, the default.
    per_device = bfq and not files.read_text(d, "io.bfq.weight", controller="io").strip().isdigit()
    if r.blkio_weight is not None:
        if bfq:
            files.write(d, "io.bfq.weight", str(r.blkio_weight), controller="io")
        else:
            files.write(d, "io.weight", str(io_weight(r.blkio_weight)), controller="io")
    if r.blkio_leaf_weight is not None:
        warnings.append(f"{where}.leafWeight ignored: cgroup v2 has no leaf weights")
    for suffix, limit in r.blkio_devices:
        if suffix in _IO_MAX_KEYS:
            line = f"{limit.major}:{limit.minor} {_IO_MAX_KEYS[suffix]}={limit.value}"
            files.write(d, "io.max", line, controller="io")
        elif suffix == "weight_device" and per_device:
            files.write(d, "io.bfq.weight", limit.line(), controller="io")
        elif suffix == "leaf_weight_device":
            device = f"{limit.major}:{limit.minor}"
            warnings.append(
                f"{where}.weightDevice leafWeight of {device} ignored: cgroup v2 has no leaf "
                "weights"
            )
        else:
            device = f"{limit.major}:{limit.minor}"
            warnings.append(
                f"{where}.weightDevice weight of {device} ignored: cgroup v2 takes device "
                "weights only from a BFQ I/O scheduler that has them"
            )
    return warnings


def _has(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def _limit_str(value: int) -> str:
    return "max" if value == -1 else str(value)


def _set_memory(d: str, r: Resources) -> None:
    """runc fs2/memory.go: memory.swap.max counts swap alone, where OCI's
    memory.swap is memory+swap, so it is converted
    (``ConvertMemorySwapToCgroupV2Value``); swap is written first."""
    limit, swap = r.memory_limit, r.memory_swap
    swap_v2: str | None = None
    if swap == -1 or (limit == -1 and swap is None):
        # runc: unlimited memory with swap unset means unlimited swap too.
        swap_v2 = "max"
    elif swap is not None:
        if limit is None or limit == -1:
            raise CgroupError(
                "linux.resources.memory.swap needs memory.limit as well on cgroup v2",
                path=d,
                controller="memory",
            )
        if swap < limit:
            raise CgroupError(
                f"linux.resources.memory.swap ({swap}) must be at least memory.limit ({limit}): "
                "it is the memory+swap limit",
                path=d,
                controller="memory",
            )
        swap_v2 = str(swap - limit)
    if swap_v2 is not None:
        if _has(d, "memory.swap.max"):
            files.write(d, "memory.swap.max", swap_v2, controller="memory")
        elif swap_v2 not in ("max", "0"):
            # runc ignores a missing swap file only for "max" or "0".
            raise CgroupError(
                f"cannot limit swap: {d}/memory.swap.max does not exist (swap accounting is "
                "off); drop linux.resources.memory.swap",
                path=d,
                controller="memory",
            )
    if limit is not None:
        files.write(d, "memory.max", _limit_str(limit), controller="memory")
    if r.memory_reservation is not None:
        # runc maps the reservation (v1 soft limit) to memory.low.
        files.write(d, "memory.low", _limit_str(r.memory_reservation), controller="memory")


def _set_cpu(d: str, r: Resources) -> None:
    if r.cpu_shares is not None:
        if not 2 <= r.cpu_shares <= 262144:
            # The v1 range the conversion is defined on (v1 clamps to it).
            raise CgroupError(
                f"linux.resources.cpu.shares {r.cpu_shares} is out of range (2..262144)",
                path=d,
                controller="cpu",
            )
        files.write(d, "cpu.weight", str(cpu_weight(r.cpu_shares)), controller="cpu")
    if r.cpu_quota is not None or r.cpu_period is not None:
        # runc fs2/cpu.go: "max" unless a positive quota, then the period if given.
        value = str(r.cpu_quota) if r.cpu_quota is not None and r.cpu_quota > 0 else "max"
        if r.cpu_period is not None:
            value += f" {r.cpu_period}"
        files.write(d, "cpu.max", value, controller="cpu")


def _memory_stats(d: str) -> dict[str, object]:
    raw = files.read_keyed(d, "memory.stat", controller="memory")
    events = files.read_keyed(d, "memory.events", controller="memory")
    usage = files.read_int(d, "memory.current", controller="memory")
    limit = files.read_limit(d, "memory.max", controller="memory", unlimited=files.MAX_UINT64)
    out: dict[str, object] = {
        "cache": raw.get("file", 0),
        "usage": {
            "usage": usage,
            # memory.peak exists since Linux 5.19.
            "max": files.read_int(d, "memory.peak", controller="memory")
            if _has(d, "memory.peak")
            else 0,
            "limit": limit,
            "failcnt": events.get("max", 0),
        },
    }
    if _has(d, "memory.swap.current"):
        swap = files.read_int(d, "memory.swap.current", controller="memory")
        swap_max = files.read_limit(
            d, "memory.swap.max", controller="memory", unlimited=files.MAX_UINT64
        )
        # runc reports v2 swap as memory+swap, comparable with v1's memsw.
        both = files.MAX_UINT64 if files.MAX_UINT64 in (swap_max, limit) else swap_max + limit
        out["swap"] = {"usage": usage + swap, "limit": both}
    out["raw"] = raw
    return out


def _hugetlb_stats(d: str) -> dict[str, object]:
    out: dict[str, object] = {}
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return out
    for name in names:
        if name.startswith("hugetlb.") and name.endswith(".current") and ".rsvd." not in name:
            size = name[len("hugetlb.") : -len(".current")]
            events = files.read_keyed(d, f"hugetlb.{size}.events", controller="hugetlb")
            out[size] = {
                "usage": files.read_int(d, name, controller="hugetlb"),
                "failcnt": events.get("max", 0),
            }
    return out
