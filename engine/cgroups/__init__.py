"""Cgroup managers: a container's cgroup on cgroup v1, v2 or hybrid hosts.

    detect()          'v1' | 'v2' | 'hybrid', from /proc/self/mountinfo
    manager_for()     the manager for a container id and its cgroupsPath
    manager_at()      the manager for paths stored earlier (``manager.paths``)
    CgroupManager     the interface (base.py); V1Manager, V2Manager,
                      HybridManager; FakeCgroupManager in engine.cgroups.fake
    Resources         linux.resources parsed: ``engine.cgroups.resources``,
                      imported from there (``runlog pause`` has no use
                      for it)

cgroupsPath (runtime-spec config-linux.md "cgroupsPath"), as runc's
cgroupfs driver reads it:

* absolute: relative to the root of each hierarchy;
* relative: relative to the caller's own cgroup in each hierarchy (on a
  pure v2 host: to its parent), from ``/proc/self/cgroup``;
* empty or absent: ``/runlog/<id>``. runc uses ``<id>`` relative to its
  own cgroup here; runlog takes a fixed absolute place instead, so the
  cgroup does not depend on which process (scheduler, shell, monitor)
  happened to run ``create``, and an operator finds every container's
  cgroup under one name.

``--systemd-cgroup`` is refused: runlog has no systemd driver, and these
hosts run no systemd.

Importing this package stays cheap (no pathlib, enum or dataclasses):
``runlog pause``/``resume`` go through ``manager_at``.
"""

from __future__ import annotations

import os

from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager, FreezerState
from engine.cgroups.errors import CgroupError, ResourcesError
from engine.cgroups.hybrid import HybridManager
from engine.cgroups.mounts import (
    clean_path,
    detect_mode,
    parse_mountinfo,
    parse_proc_cgroup,
    unified_dirs,
    v1_dirs,
)
from engine.cgroups.v1 import V1Manager
from engine.cgroups.v2 import V2Manager
from engine.errors import UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_FREEZE_TIMEOUT",
    "DEFAULT_PARENT",
    "DEFAULT_ROOT",
    "CgroupError",
    "CgroupManager",
    "FreezerState",
    "HybridManager",
    "ResourcesError",
    "V1Manager",
    "V2Manager",
    "detect",
    "manager_at",
    "manager_for",
    "resolve_inner",
]

DEFAULT_ROOT = "/sys/fs/cgroup"
# Where a container without cgroupsPath goes (see the module docstring).
DEFAULT_PARENT = "/runlog"


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def detect(mountinfo: str | None = None) -> str:
    """'v1', 'v2' or 'hybrid' for a mountinfo text (default: this process's).

    v1 controllers mounted and a cgroup2 tree too is hybrid; only v1 is
    v1; only cgroup2 is v2 (runc tells v2 by the filesystem at
    /sys/fs/cgroup, which this agrees with on every standard layout).
    Raises ``UnsupportedError`` when no cgroup filesystem is mounted.
    """
    text = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    return detect_mode(parse_mountinfo(text))


def resolve_inner(container_id: str, cgroups_path: str | None) -> str:
    """The cleaned cgroupsPath, or the default ``/runlog/<id>``."""
    inner = clean_path(cgroups_path or "")
    if inner == "":
        inner = clean_path(f"{DEFAULT_PARENT}/{container_id}")
    return inner


def _refuse_systemd() -> UnsupportedError:
    # sd_booted(3): systemd is running iff /run/systemd/system exists.
    if os.path.isdir("/run/systemd/system"):
        why = "runlog has no systemd cgroup driver"
    else:
        why = "systemd is not running on this host"
    return UnsupportedError(
        f"--systemd-cgroup: {why}; run without --systemd-cgroup "
        "(cgroupsPath is then a path such as /runlog/<id>, not slice:prefix:name)"
    )


def manager_for(
    container_id: str,
    cgroups_path: str | None,
    *,
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    systemd: bool = False,
    mountinfo: str | None = None,
    proc_cgroup: str | None = None,
    rootless: bool = False,
    disabled: bool = False,
) -> CgroupManager:
    """The manager for a container's cgroup; touches nothing yet.

    ``root`` is where the hierarchies are (tests point it at a copy);
    ``mountinfo`` and ``proc_cgroup`` default to this process's
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup``. ``disabled``
    (``--cgroup-manager=disabled``): a manager of no cgroup at all
    (:func:`engine.cgroups.rootless.disabled`), naming the hierarchies
    gone without. Raises ``UnsupportedError`` for ``systemd=True`` and on a
    host without cgroups.
    """
    if systemd:
        raise _refuse_systemd()
    base = os.fspath(root)
    mounts = parse_mountinfo(_read("/proc/self/mountinfo") if mountinfo is None else mountinfo)
    mode = detect_mode(mounts)
    if rootless and not clean_path(cgroups_path or ""):
        inner = container_id
    else:
        inner = resolve_inner(container_id, cgroups_path)
    own: dict[str, str] | None = None
    if not os.path.isabs(inner):
        own = parse_proc_cgroup(_read("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup)
    if disabled:
        from engine.cgroups.rootless import disabled as no_cgroup

        names = [] if mode == "v2" else sorted(v1_dirs(mounts, base, inner, own))
        return no_cgroup(names + ([] if mode == "v1" else ["unified"]))
    if mode == "v2":
        mount, leaf = unified_dirs(mounts, base, inner, own, mode="v2")
        if rootless:
            return _rootless({}, (mount, leaf), True)
        return V2Manager(leaf, mount=mount)
    v1_paths = v1_dirs(mounts, base, inner, own)
    if mode == "v1":
        return _rootless(v1_paths, None, False) if rootless else V1Manager(v1_paths)
    unified = unified_dirs(mounts, base, inner, own, mode="hybrid")
    if rootless:
        return _rootless(v1_paths, unified, False)
    mount, leaf = unified
    return HybridManager(V1Manager(v1_paths), V2Manager(leaf, mount=mount, enable_all=False))


def _rootless(
    v1_paths: Mapping[str, str], unified: tuple[str, str] | None, pure_v2: bool
) -> CgroupManager:
    """The manager of the hierarchies among these the caller may write."""
    from engine.cgroups.rootless import RootlessManager, writable

    paths = dict(v1_paths)
    if unified is not None:
        paths["unified"] = unified[1]
    kept, skipped = writable(paths)
    v1_kept = {k: v for k, v in kept.items() if k != "unified"}
    v1 = V1Manager(v1_kept) if v1_kept else None
    v2 = None
    if unified is not None and "unified" in kept:
        v2 = V2Manager(unified[1], mount=unified[0], enable_all=pure_v2)
    inner: CgroupManager | None = v1 or v2
    if v1 is not None and v2 is not None:
        inner = HybridManager(v1, v2)
    return RootlessManager(inner, skipped)


def manager_at(
    paths: Mapping[str, str],
    *,
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    mountinfo: str | None = None,
) -> CgroupManager:
    """Rebuild a manager from ``manager.paths`` saved at create time.

    The keys say the layout: only "unified" is v2, v1 controllers with
    "unified" hybrid, v1 controllers alone v1. The cgroup2 mount (needed
    to enable controllers) is found from mountinfo only when there is a
    cgroup2 part.
    """
    if not paths:
        raise CgroupError("no cgroup paths recorded for this container")
    v1_paths = {k: v for k, v in paths.items() if k != "unified"}
    unified = paths.get("unified")
    if unified is None:
        return V1Manager(v1_paths)
    mounts = parse_mountinfo(_read("/proc/self/mountinfo") if mountinfo is None else mountinfo)
    base = os.fspath(root)
    if not v1_paths:
        return V2Manager(unified, mount=base)
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None:
        raise CgroupError(
            f"the recorded cgroup {unified} is in a cgroup2 tree that is no longer mounted",
            path=unified,
            controller="unified",
        )
    mount_dir = os.path.join(base, os.path.basename(mount.mountpoint))
    return HybridManager(V1Manager(v1_paths), V2Manager(unified, mount=mount_dir, enable_all=False))
