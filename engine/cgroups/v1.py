"""The cgroup v1 manager: one directory per mounted hierarchy.

Follows runc's ``libcontainer/cgroups/fs`` driver: the container gets a
directory in every mounted v1 hierarchy runlog knows (and in the named
``name=systemd`` one, which runc joins too), limits go to each
controller's files (kernel Documentation/admin-guide/cgroup-v1/), the
freezer is ``freezer.state``. Comounted controllers (``cpu,cpuacct``)
share one directory.
"""

from __future__ import annotations

import os
import time

from engine.cgroups import files
from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager, FreezerState
from engine.cgroups.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.cgroups.resources import Resources

__all__ = ["V1Manager"]

# Order of work, as runc's subsystem list: cpuset first, because a v1
# cpuset cgroup with empty cpus/mems refuses tasks.
_ORDER = (
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "freezer",
)
# Where to read the container's processes from; runc uses devices.
_PROCS_FROM = ("devices", "freezer", "pids", "memory")
# Memory plus swap; absent when the kernel does not account swap.
_MEMSW = "memory.memsw.limit_in_bytes"


class V1Manager(CgroupManager):
    """A container's cgroup on the v1 hierarchies in ``paths`` (controller -> directory)."""

    kind = "v1"

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def has(self, controller: str) -> bool:
        return controller in self._paths

    def _unique_dirs(self) -> list[tuple[str, str]]:
        """(controller, directory) once per directory, in ``_ORDER``."""
        ranked = sorted(
            self._paths.items(),
            key=lambda item: _ORDER.index(item[0]) if item[0] in _ORDER else len(_ORDER),
        )
        seen: set[str] = set()
        unique: list[tuple[str, str]] = []
        for controller, directory in ranked:
            if directory not in seen:
                seen.add(directory)
                unique.append((controller, directory))
        return unique

    def _dir(self, controller: str, what: str) -> str:
        directory = self._paths.get(controller)
        if directory is None:
            raise CgroupError(
                f"cannot {what}: no {controller} cgroup hierarchy is mounted on this host "
                f"(see /proc/self/mountinfo); mount it, or drop the setting from config.json",
                controller=controller,
            )
        return directory

    # -- create / add / destroy -------------------------------------------------

    def create(self) -> None:
        self.make()

    def make(self) -> list[str]:
        """:meth:`create`, returning the directories this call made (parents
        first), for a caller that may have to undo it."""
        made: list[str] = []
        try:
            for controller, directory in self._unique_dirs():
                made += _makedirs(directory, controller)
                if controller == "cpuset":
                    _fill_cpuset(directory)
        except BaseException:
            files.undo_mkdirs(made)
            raise
        return made

    def add(self, pid: int) -> None:
        for controller, directory in self._unique_dirs():
            _add(directory, pid, controller)

    def destroy(self) -> None:
        first: CgroupError | None = None
        # Every hierarchy is tried even if one fails, so as little as
        # possible is left behind.
        for controller, directory in self._unique_dirs():
            try:
                files.remove_tree(directory, controller=controller)
            except CgroupError as err:
                first = first or err
        if first is not None:
            raise first

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._paths.values())

    def pids(self) -> list[int]:
        for controller in (*_PROCS_FROM, *self._paths):
            directory = self._paths.get(controller)
            if directory is not None:
                if not os.path.isdir(directory):
                    return []
                return files.subtree_procs(directory, controller=controller)
        return []

    # -- limits -------------------------------------------------------------------

    def apply(self, resources: Resources) -> list[str]:
        warnings: list[str] = []
        for controller in resources.controllers():
            warnings += self.apply_controller(controller, resources)
        return warnings

    def apply_controller(self, controller: str, r: Resources) -> list[str]:
        """Write the part of ``r`` that belongs to one controller; return
        the warnings for what this host has no file for."""
        directory = self._dir(controller, f"set {controller} limits")
        if controller == "memory":
            return _set_memory(directory, r)
        elif controller == "pids":
            _set_pids(directory, r)
        elif controller == "cpu":
            _set_cpu(directory, r)
        elif controller == "cpuset":
            for name, value in (("cpuset.cpus", r.cpu_cpus), ("cpuset.mems", r.cpu_mems)):
                if value is not None:
                    files.write(directory, name, value, controller="cpuset")
        elif controller == "hugetlb":
            for limit in r.hugepage_limits:
                name = f"hugetlb.{limit.page_size}.limit_in_bytes"
                _require_file(directory, name, "hugetlb", f"page size {limit.page_size}")
                files.write(directory, name, str(limit.limit), controller="hugetlb")
        elif controller == "blkio":
            _set_blkio(directory, r)
        elif controller == "net_cls":
            files.write(directory, "net_cls.classid", str(r.net_class_id), controller="net_cls")
        elif controller == "net_prio":
            for name, priority in r.net_priorities:
                line = f"{name} {priority}"
                files.write(directory, "net_prio.ifpriomap", line, controller="net_prio")
        elif controller == "devices":
            # Rules in config order; "a" rules reset the default and clear the
            # exceptions (kernel cgroup-v1/devices.rst), so a leading
            # "deny all" followed by allows yields an allow-list.
            for rule in r.devices:
                name = "devices.allow" if rule.allow else "devices.deny"
                files.write(directory, name, rule.v1_line(), controller="devices")
        else:
            raise CgroupError(f"runlog does not set {controller} limits", controller=controller)
        return []

    # -- freezer ------------------------------------------------------------------

    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        directory = self._dir("freezer", "freeze the container")
        deadline = time.monotonic() + timeout
        attempt = 0
        try:
            while True:
                # runc fs/freezer.go: a v1 cgroup into which tasks keep
                # forking can stay FREEZING; an occasional thaw and pause
                # gives the freeze a chance to complete.
                if attempt % 50 == 49:
                    files.write(directory, "freezer.state", "THAWED", controller="freezer")
                    time.sleep(0.01)
                files.write(directory, "freezer.state", "FROZEN", controller="freezer")
                state = files.read_text(directory, "freezer.state", controller="freezer").strip()
                if state == "FROZEN":
                    return
                if state != "FREEZING":
                    raise CgroupError(
                        f"{directory}/freezer.state reads {state!r} while freezing",
                        path=directory,
                        controller="freezer",
                    )
                if time.monotonic() >= deadline:
                    raise CgroupError(
                        f"{directory}: still FREEZING after {timeout:g}s; the container was "
                        "thawed again; retry the pause",
                        path=directory,
                        controller="freezer",
                    )
                attempt += 1
                time.sleep(0.001)
        except BaseException:
            # Leave the container as it was (runtime-spec: a failed operation
            # has no effect); runc thaws on a failed freeze as well.
            files.try_write(directory, "freezer.state", "THAWED", controller="freezer")
            raise

    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        directory = self._dir("freezer", "thaw the container")
        deadline = time.monotonic() + timeout
        while True:
            files.write(directory, "freezer.state", "THAWED", controller="freezer")
            state = files.read_text(directory, "freezer.state", controller="freezer").strip()
            if state == "THAWED":
                return
            if time.monotonic() >= deadline:
                raise CgroupError(
                    f"{directory}: freezer.state still {state} after {timeout:g}s; retry resume",
                    path=directory,
                    controller="freezer",
                )
            time.sleep(0.001)

    def freezer_state(self) -> str:
        directory = self._paths.get("freezer")
        if directory is None or not os.path.isdir(directory):
            return FreezerState.THAWED
        state = files.read_text(directory, "freezer.state", controller="freezer").strip()
        if state == "FREEZING":
            return FreezerState.FREEZING
        if state != "FROZEN":
            return FreezerState.THAWED
        # Frozen by itself or only through a frozen ancestor? runc reports the
        # latter as thawed: this container was not paused, and thawing it
        # could not help (fs/freezer.go GetState, freezer.self_freezing).
        try:
            own = files.read_text(directory, "freezer.self_freezing", controller="freezer")
        except CgroupError:
            return FreezerState.FROZEN
        return FreezerState.THAWED if own.strip() == "0" else FreezerState.FROZEN

    # -- stats --------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        stats: dict[str, object] = {}
        cpu = _cpu_stats(self._paths.get("cpuacct"), self._paths.get("cpu"))
        if cpu:
            stats["cpu"] = cpu
        if "memory" in self._paths:
            stats["memory"] = _memory_stats(self._paths["memory"])
        if "pids" in self._paths:
            directory = self._paths["pids"]
            stats["pids"] = {
                "current": files.read_int(directory, "pids.current", controller="pids"),
                # runc: "max" is reported as 0, no limit.
                "limit": files.read_limit(directory, "pids.max", controller="pids", unlimited=0),
            }
        if "hugetlb" in self._paths:
            stats["hugetlb"] = _hugetlb_stats(self._paths["hugetlb"])
        return stats


def _makedirs(directory: str, controller: str) -> list[str]:
    """mkdir -p, returning the directories this call made (top first)."""
    try:
        # The usual case first: the parent exists, the cgroup does not.
        os.mkdir(directory, 0o755)
        return [directory]
    except OSError:
        pass  # there already, a parent missing, refused: each level below
    missing: list[str] = []
    probe = directory
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    made: list[str] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        except OSError as err:
            files.undo_mkdirs(made)
            raise CgroupError(
                f"cannot create cgroup {path}: {err.strerror}; is the {controller} hierarchy "
                "mounted and writable (runlog needs root)?",
                path=path,
                controller=controller,
            ) from err
        made.append(path)
    return made


def _fill_cpuset(directory: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpuset.cpus/mems and then
    refuses tasks (cgroup-v1/cpusets.rst); copy them down from the nearest
    ancestor that has them, as runc's cpuset ``ensureParent`` does."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if files.read_text(directory, name, controller="cpuset").strip():
            continue
        if parent == directory or not os.path.exists(os.path.join(parent, name)):
            raise CgroupError(
                f"{directory}/{name} is empty and no ancestor has a value to copy",
                path=directory,
                controller="cpuset",
            )
        value = files.read_text(parent, name, controller="cpuset").strip()
        if not value:
            _fill_cpuset(parent)
            value = files.read_text(parent, name, controller="cpuset").strip()
        files.write(directory, name, value, controller="cpuset")


def _add(directory: str, pid: int, controller: str) -> None:
    if not os.path.isdir(directory):
        raise CgroupError(
            f"cannot add process {pid}: cgroup {directory} does not exist (create it first)",
            path=directory,
            controller=controller,
        )
    files.write(directory, "cgroup.procs", str(pid), controller=controller)


def _require_file(directory: str, name: str, controller: str, what: str) -> None:
    if not os.path.exists(os.path.join(directory, name)):
        raise CgroupError(
            f"cannot set {controller} limit for {what}: {directory}/{name} does not exist "
            "(the kernel does not offer it here)",
            path=directory,
            controller=controller,
        )


def _set_memory(directory: str, r: Resources) -> list[str]:
    """runc fs/memory.go ``setMemoryAndSwap``: the kernel wants
    memsw.limit >= limit at every moment, so the order of the two writes
    depends on whether the limits go up or down. Then the v1-only knobs,
    each where the kernel has its file (warnings for the others)."""
    limit, swap = r.memory_limit, r.memory_swap
    has_memsw = os.path.exists(os.path.join(directory, _MEMSW))
    if limit == -1 and swap is None and has_memsw:
        # runc: unlimited memory with swap unset means unlimited swap too.
        swap = -1
    if swap is not None and not has_memsw:
        raise CgroupError(
            f"cannot set linux.resources.memory.swap: {directory}/{_MEMSW} does not exist; "
            "the kernel does not account swap (boot with swapaccount=1) or drop the setting",
            path=directory,
            controller="memory",
        )
    ordered: list[tuple[str, int]] = []
    if limit is not None and swap is not None:
        current = files.read_int(directory, "memory.limit_in_bytes", controller="memory")
        if swap == -1 or current < swap:
            ordered = [(_MEMSW, swap), ("memory.limit_in_bytes", limit)]
        else:
            ordered = [("memory.limit_in_bytes", limit), (_MEMSW, swap)]
    elif limit is not None:
        ordered = [("memory.limit_in_bytes", limit)]
    elif swap is not None:
        ordered = [(_MEMSW, swap)]
    if r.memory_reservation is not None:
        ordered.append(("memory.soft_limit_in_bytes", r.memory_reservation))
    for name, value in ordered:
        files.write(directory, name, str(value), controller="memory")
    warnings: list[str] = []
    for field, name, text in r.v1_memory_knobs():
        if os.path.exists(os.path.join(directory, name)):
            files.write(directory, name, text, controller="memory")
        else:
            warnings.append(f"{field} ignored: this kernel has no {name}")
    return warnings


def _set_blkio(directory: str, r: Resources) -> None:
    """runc fs/blkio.go ``Set``: the weights go to the CFQ files
    (``blkio.weight``) where the kernel has them, else to BFQ's
    (``blkio.bfq.weight``); a file the kernel lacks fails the create, as
    it fails runc's."""
    bfq = "" if os.path.exists(os.path.join(directory, "blkio.weight")) else "bfq."
    lines: list[tuple[str, str, str]] = []
    if r.blkio_weight is not None:
        lines.append(("weight", f"blkio.{bfq}weight", str(r.blkio_weight)))
    if r.blkio_leaf_weight is not None:
        lines.append(("leafWeight", "blkio.leaf_weight", str(r.blkio_leaf_weight)))
    for suffix, limit in r.blkio_devices:
        name = f"blkio.{bfq}{suffix}" if suffix == "weight_device" else f"blkio.{suffix}"
        lines.append((suffix, name, limit.line()))
    for what, name, value in lines:
        if not os.path.exists(os.path.join(directory, name)):
            raise CgroupError(
                f"cannot set linux.resources.blockIO ({what}): {directory}/{name} does not "
                "exist (the kernel's I/O scheduler or blkio controller lacks it); drop the "
                "setting from config.json",
                path=directory,
                controller="blkio",
            )
        files.write(directory, name, value, controller="blkio")


def _set_pids(directory: str, r: Resources) -> None:
    if r.pids_limit is not None:
        value = "max" if r.pids_limit < 0 else str(r.pids_limit)
        files.write(directory, "pids.max", value, controller="pids")


def _set_cpu(directory: str, r: Resources) -> None:
    if r.cpu_shares is not None:
        files.write(directory, "cpu.shares", str(r.cpu_shares), controller="cpu")
        # The kernel clamps shares to [2, 262144] silently; runc reads the
        # value back and refuses a clamped one (fs/cpu.go).
        got = files.read_int(directory, "cpu.shares", controller="cpu")
        if got != r.cpu_shares:
            raise CgroupError(
                f"linux.resources.cpu.shares {r.cpu_shares} is out of the kernel's range "
                f"(it set {got}; allowed 2..262144)",
                path=directory,
                controller="cpu",
            )
    period_pending = False
    if r.cpu_period is not None:
        try:
            files.write(directory, "cpu.cfs_period_us", str(r.cpu_period), controller="cpu")
        except CgroupError:
            # runc: a shorter period can be refused while the old quota
            # still applies; set the quota first, then retry the period.
            if r.cpu_quota is None:
                raise
            period_pending = True
    if r.cpu_quota is not None:
        files.write(directory, "cpu.cfs_quota_us", str(r.cpu_quota), controller="cpu")
        if period_pending:
            files.write(directory, "cpu.cfs_period_us", str(r.cpu_period), controller="cpu")


def _cpu_stats(cpuacct: str | None, cpu: str | None) -> dict[str, object]:
    out: dict[str, object] = {}
    if cpuacct is not None:
        percpu = [
            int(v)
            for v in files.read_text(cpuacct, "cpuacct.usage_percpu", controller="cpuacct").split()
        ]
        # cpuacct.stat counts USER_HZ ticks; runc converts them to ns.
        ticks = files.read_keyed(cpuacct, "cpuacct.stat", controller="cpuacct")
        ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        out["usage"] = {
            "total": files.read_int(cpuacct, "cpuacct.usage", controller="cpuacct"),
            "percpu": percpu,
            "kernel": ticks.get("system", 0) * ns_per_tick,
            "user": ticks.get("user", 0) * ns_per_tick,
        }
    if cpu is not None:
        stat = files.read_keyed(cpu, "cpu.stat", controller="cpu")
        out["throttling"] = {
            "periods": stat.get("nr_periods", 0),
            "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_time": stat.get("throttled_time", 0),
        }
    return out


def _memory_entry(directory: str, prefix: str) -> dict[str, int]:
    def read(name: str) -> int:
        return files.read_int(directory, f"{prefix}.{name}", controller="memory")

    return {
        "usage": read("usage_in_bytes"),
        "max": read("max_usage_in_bytes"),
        "limit": read("limit_in_bytes"),
        "failcnt": read("failcnt"),
    }


def _memory_stats(directory: str) -> dict[str, object]:
    raw = files.read_keyed(directory, "memory.stat", controller="memory")
    out: dict[str, object] = {
        "cache": raw.get("cache", 0),
        "usage": _memory_entry(directory, "memory"),
    }
    if os.path.exists(os.path.join(directory, _MEMSW)):
        # runc reports memory+swap (memsw) as "swap".
        out["swap"] = _memory_entry(directory, "memory.memsw")
    out["raw"] = raw
    return out


def _hugetlb_stats(directory: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes"):
            size = name[len("hugetlb.") : -len(".usage_in_bytes")]

            def read(item: str, size: str = size) -> int:
                return files.read_int(directory, f"hugetlb.{size}.{item}", controller="hugetlb")

            out[size] = {
                "usage": read("usage_in_bytes"),
                "max": read("max_usage_in_bytes"),
                "failcnt": read("failcnt"),
            }
    return out
