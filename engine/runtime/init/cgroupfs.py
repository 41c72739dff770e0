"""The container's /sys/fs/cgroup, mounted as runc mounts it (its
mountCgroupV1 and the cgroup2 mount), from the init's own cgroups.
"""

from __future__ import annotations

import os

from engine.cgroups.mounts import proc_cgroup_hierarchies
from engine.frozen import record
from engine.linux import mountinfo
from engine.oci import mounts as mo
from engine.runtime.init.mounting import RootfsError, do_mount, mkdirs, remount_bind

__all__ = ["CgroupView", "mount_cgroup", "own_cgroups"]


@record
class CgroupView:
    """What a cgroup mount needs to know: the init's cgroups (``own_cgroups``)
    and whether it is in a new cgroup namespace."""

    own: dict[str, str]
    namespace: bool


_CGROUP_ROOT = "/sys/fs/cgroup"


def own_cgroups() -> dict[str, str]:
    """The calling process's cgroup in each hierarchy, from /proc/self/cgroup:
    ``{"memory": "/a/b", "cpu,cpuacct": ..., "name=systemd": ..., "": <cgroup2>}``.

    The init reads it after joining its cgroups and before a new cgroup
    namespace would make every path ``/``.
    """
    with open("/proc/self/cgroup", "rb") as fh:  # binary: nothing imported after the pivot
        return proc_cgroup_hierarchies(fh.read().decode())


def _host_cgroup_mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, super options) of each hierarchy under /sys/fs/cgroup."""
    return [
        (m.mount_point, m.fstype, set(m.super_options.split(",")))
        for m in mountinfo.parse(mountinfo.read())
        if m.fstype in ("cgroup", "cgroup2") and os.path.dirname(m.mount_point) == _CGROUP_ROOT
    ]


def _hierarchy(fstype: str, options: set[str], own: dict[str, str]) -> str | None:
    """The /proc/self/cgroup key of the hierarchy mounted with ``options``."""
    if fstype == "cgroup2":
        return "" if "" in own else None
    for key in own:
        if key and set(key.split(",")) <= options:
            return key
    return None


def mount_cgroup(dest: str, flags: int, what: str, cgroups: CgroupView) -> None:
    """The cgroup filesystem as runc mounts it.

    cgroup2 on a unified host (the container's own cgroup in place of the
    host's tree when the mount is refused, in a user namespace without a
    cgroup namespace). On v1 and hybrid hosts (runc's mountCgroupV1): a
    tmpfs, and in it one mount per host hierarchy showing the container's
    cgroup as its root: mounted afresh inside a cgroup namespace, which roots
    it there, else (or where the kernel refuses, in a user namespace) the
    host directory of the container's cgroup bound in; then the tmpfs is made
    read-only if the mount asks for it.
    """
    own = cgroups.own
    if os.path.exists(os.path.join(_CGROUP_ROOT, "cgroup.controllers")):
        try:
            do_mount("cgroup2", dest, "cgroup2", flags, None, what)
        except RootfsError:
            if "" not in own:
                raise
            source = _CGROUP_ROOT + own[""]
            do_mount(source, dest, None, mo.MS_BIND | mo.MS_REC, None, what)
            remount_bind(dest, flags, what)
        return
    base = mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC
    do_mount("tmpfs", dest, "tmpfs", base, "mode=755", what)
    for mountpoint, fstype, options in _host_cgroup_mounts():
        key = _hierarchy(fstype, options, own)
        if key is None:
            continue
        name = os.path.basename(mountpoint)
        target = os.path.join(dest, name)
        sub = f"{what} ({name})"
        mkdirs(target, sub)
        if cgroups.namespace:
            try:
                do_mount("cgroup", target, fstype, flags, key or None, sub)
                continue
            except RootfsError:
                pass  # v1 in a user namespace: bound below, as runc falls back
        do_mount(mountpoint + own[key], target, None, mo.MS_BIND | mo.MS_REC, None, sub)
        remount_bind(target, flags, sub)
    for name in os.listdir(_CGROUP_ROOT):
        link = os.path.join(_CGROUP_ROOT, name)
        if os.path.islink(link):  # cpu -> cpu,cpuacct where they are co-mounted
            try:
                os.symlink(os.readlink(link), os.path.join(dest, name))
            except OSError as err:
                raise RootfsError(os.path.join(dest, name), what, err.strerror) from err
    if flags & mo.MS_RDONLY:
        remount = mo.MS_REMOUNT | mo.MS_RDONLY | base
        do_mount("tmpfs", dest, "tmpfs", remount, "mode=755", f"{what} (read-only)")
