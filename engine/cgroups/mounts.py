"""Where the cgroup hierarchies are, and where a container's cgroup goes in each.

Reads the texts of ``/proc/self/mountinfo`` (proc(5)) and
``/proc/self/cgroup`` (cgroups(7)); the callers pass them in, so tests
can feed sample texts. Path rules follow runc's cgroupfs drivers:

* absolute ``cgroupsPath`` -> under each hierarchy's root
  (libcontainer/cgroups/fs/paths.go ``subsysPath``);
* relative -> under the caller's own cgroup in that hierarchy, from
  ``/proc/self/cgroup``; on a pure cgroup v2 host under its *parent*,
  because the caller's own cgroup has processes and so cannot give
  controllers to children (fs2/defaultpath.go, the "no internal processes"
  rule of cgroup-v2.rst);
* the path is cleaned first so that ``..`` cannot climb out of the
  hierarchy (runc ``utils.CleanPath``).
"""

from __future__ import annotations

import os.path

from engine.cgroups.errors import CgroupError
from engine.errors import UnsupportedError
from engine.linux import mountinfo

__all__ = [
    "NAMED_HIERARCHIES",
    "V1_CONTROLLERS",
    "Mount",
    "clean_path",
    "detect_mode",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "proc_cgroup_hierarchies",
    "unified_dirs",
    "v1_dirs",
]

# cgroup v1 controllers the kernel knows (/proc/cgroups); a v1 mount's super
# options name the ones bound to it, among generic options such as "rw".
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
# Named hierarchies without a controller that runc still joins
# (fs.go: ``&NameGroup{GroupName: "name=systemd", Join: true}``).
NAMED_HIERARCHIES = frozenset({"name=systemd"})


class Mount:
    """One cgroup or cgroup2 mount from mountinfo."""

    __slots__ = ("controllers", "fstype", "mountpoint", "root")

    def __init__(
        self, fstype: str, mountpoint: str, root: str, controllers: tuple[str, ...]
    ) -> None:
        self.fstype = fstype
        self.mountpoint = mountpoint
        # The cgroup this mount shows as its top (not "/" inside a cgroup
        # namespace or for a bind mount of a sub-cgroup).
        self.root = root
        # v1: the controllers (and name=...) bound to this hierarchy; v2: ().
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Mount({self.fstype!r}, {self.mountpoint!r}, {self.root!r}, {self.controllers!r})"


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in a mountinfo text, in file order.

    Format (proc(5)): ``id parent maj:min root mountpoint options
    [optional fields...] - fstype source superoptions``.
    """
    mounts: list[Mount] = []
    for m in mountinfo.parse(text):
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        controllers: tuple[str, ...] = ()
        if m.fstype == "cgroup":
            controllers = tuple(
                opt
                for opt in m.super_options.split(",")
                if opt in V1_CONTROLLERS or opt.startswith("name=")
            )
        mounts.append(Mount(m.fstype, m.mount_point, m.root, controllers))
    return mounts


def proc_cgroup_hierarchies(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` (cgroups(7)) as hierarchy -> path, each
    hierarchy named by its controller field as written (``cpu,cpuacct``,
    ``name=systemd``; ``""`` for cgroup2's ``0::/path``). The one parser of
    that file; :func:`parse_proc_cgroup` splits comounted controllers."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        _hierarchy_id, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if sep and sep2:
            found[controllers] = path
    return found


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> path; the cgroup2 entry
    (``0::/path``) is under the key ``""``. Comounted controllers
    (``2:cpu,cpuacct:/x``) each get the path."""
    own: dict[str, str] = {}
    for names, path in proc_cgroup_hierarchies(text).items():
        for name in names.split(",") if names else ("",):
            own[name] = path
    return own


def detect_mode(mounts: list[Mount]) -> str:
    """'v1', 'v2' or 'hybrid' (see ``engine.cgroups.detect``)."""
    has_v1 = any(
        any(c in V1_CONTROLLERS for c in m.controllers) for m in mounts if m.fstype == "cgroup"
    )
    has_v2 = any(m.fstype == "cgroup2" for m in mounts)
    if has_v1 and has_v2:
        return "hybrid"
    if has_v1:
        return "v1"
    if has_v2:
        return "v2"
    raise UnsupportedError(
        "no cgroup filesystem is mounted (/proc/self/mountinfo has no cgroup or cgroup2 "
        "entry); mount cgroup2 at /sys/fs/cgroup or the v1 controllers below it"
    )


def clean_path(path: str) -> str:
    """runc ``utils.CleanPath``: normalise, and keep a relative path from
    climbing above its start (``../../x`` -> ``x``)."""
    if path == "":
        return ""
    cleaned = os.path.normpath("/" + path)
    if cleaned.startswith("//"):
        # POSIX lets normpath keep a leading "//"; a cgroup path has no use for it.
        cleaned = "/" + cleaned.lstrip("/")
    if os.path.isabs(path):
        return cleaned
    return cleaned.lstrip("/")


def _below(base: str, *parts: str) -> str:
    return os.path.normpath(os.path.join(base, *(p.strip("/") for p in parts if p.strip("/"))))


def _within_mount(own: str, mount_root: str) -> str:
    """The caller's cgroup path relative to what the mount shows."""
    if mount_root in ("", "/"):
        return own
    if own == mount_root or own.startswith(mount_root.rstrip("/") + "/"):
        return own[len(mount_root.rstrip("/")) :] or "/"
    # Inside a cgroup namespace /proc/self/cgroup is already relative to
    # the namespace root, which is what the mount shows.
    return own


def _leaf(base: str, own: str | None, inner: str, controller: str) -> str:
    """Join and refuse the hierarchy root itself: a container must never be
    put there (nor its cgroup removed later)."""
    leaf = _below(base, inner) if own is None else _below(base, own, inner)
    if leaf == os.path.normpath(base):
        raise CgroupError(
            f"cgroupsPath {inner!r} names the root of the {controller} hierarchy; "
            "give the container a cgroup of its own (for example /runlog/<id>)",
            path=leaf,
            controller=controller,
        )
    return leaf


def v1_dirs(
    mounts: list[Mount], root: str, inner: str, own: dict[str, str] | None
) -> dict[str, str]:
    """Controller -> directory for every mounted v1 hierarchy runlog joins.

    ``inner`` is a cleaned cgroupsPath; ``own`` (parsed /proc/self/cgroup) is
    needed only when it is relative. A hierarchy's directory is
    ``root/<basename of its mount point>`` (fs/paths.go: "subsystems can be
    mounted together as 'cpu,cpuacct'"), so ``root`` may point at a copy.
    """
    dirs: dict[str, str] = {}
    for mount in mounts:
        if mount.fstype != "cgroup":
            continue
        joined = [c for c in mount.controllers if c in V1_CONTROLLERS or c in NAMED_HIERARCHIES]
        if not joined or any(c in dirs for c in joined):
            # Not a hierarchy runlog joins, or a second mount of one already seen.
            continue
        base = os.path.join(root, os.path.basename(mount.mountpoint.rstrip("/")))
        rel: str | None = None
        if not os.path.isabs(inner):
            if own is None or joined[0] not in own:
                raise CgroupError(
                    f"relative cgroupsPath {inner!r}: /proc/self/cgroup has no entry for "
                    f"{joined[0]}; use an absolute cgroupsPath",
                    controller=joined[0],
                )
            rel = _within_mount(own[joined[0]], mount.root)
        leaf = _leaf(base, rel, inner, joined[0])
        for controller in joined:
            dirs[controller] = leaf
    return dirs


def unified_dirs(
    mounts: list[Mount], root: str, inner: str, own: dict[str, str] | None, *, mode: str
) -> tuple[str, str]:
    """(hierarchy root, container directory) in the cgroup2 tree.

    On a v2 host cgroup2 is mounted at ``root`` itself; on a hybrid host at
    ``root/<basename>`` (``unified``). A relative path goes under the
    parent of the caller's cgroup on v2 (runc fs2) and under the caller's
    cgroup itself on hybrid (runc fs, which only joins that tree).
    """
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None:
        raise CgroupError("no cgroup2 filesystem is mounted", controller="unified")
    base = root if mode == "v2" else os.path.join(root, os.path.basename(mount.mountpoint))
    rel: str | None = None
    if not os.path.isabs(inner):
        if own is None or "" not in own:
            raise CgroupError(
                f"relative cgroupsPath {inner!r}: /proc/self/cgroup has no cgroup2 (0::) "
                "entry; use an absolute cgroupsPath",
                controller="unified",
            )
        rel = _within_mount(own[""], mount.root)
        if mode == "v2":
            rel = os.path.dirname(rel.rstrip("/")) or "/"
    return os.path.normpath(base), _leaf(base, rel, inner, "unified")
