"""The documents ``runlog spec`` and ``runlog features`` print.

:func:`default_spec` is runc's ``specconv.Example()`` (and ``ToRootless``
for ``--rootless``), built as a dict in the Go struct order runc writes, so
that ``gojson.render(default_spec(), "\\t")`` is the file ``runc spec``
writes. It follows runc 1.3 and later: no inheritable or ambient
capabilities, ``/sys/devices/virtual/tpm`` masked. The hostname stays
``runc``: tools and tutorials written against ``runc spec`` expect it.

:func:`features` is the runtime-spec features.md document for what runlog
itself reads and implements; it is fixed at build time, not probed.
"""

from __future__ import annotations

import os
from typing import Any

from engine.oci.mounts import KNOWN_MOUNT_OPTIONS
from engine.oci.names import CAPABILITIES, HOOK_POINTS, NAMESPACES
from engine.oci.version import OCI_VERSION, OCI_VERSION_MIN, RUNLOG_VERSION

__all__ = ["ANNOTATION_VERSION", "default_spec", "features", "is_cgroup2_unified"]

# features.md "Annotations": reverse-domain keys; org.opencontainers is
# reserved, so runlog's version goes under its own name.
ANNOTATION_VERSION = "org.runlog.version"

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def is_cgroup2_unified() -> bool:
    """Whether /sys/fs/cgroup is a cgroup2 mount (not v1, not hybrid).

    runc checks the filesystem magic; the root of a cgroup2 hierarchy is the
    only place ``cgroup.controllers`` appears there, which needs no statfs.
    """
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _mounts() -> list[dict[str, Any]]:
    def mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"destination": destination, "type": kind, "source": source}
        if options:
            entry["options"] = list(options)
        return entry

    return [
        mount("/proc", "proc", "proc"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
    ]


def default_spec(
    rootless: bool = False,
    *,
    cgroupns: bool | None = None,
    host_uid: int | None = None,
    host_gid: int | None = None,
) -> dict[str, Any]:
    """Return the configuration ``runc spec`` (``--rootless``) writes.

    ``cgroupns`` adds a cgroup namespace; by default it is added when the
    host is cgroup2-only, as runc does. ``host_uid``/``host_gid`` are the ids
    a rootless spec maps to root (default: the effective uid and gid).
    """
    if cgroupns is None:
        cgroupns = is_cgroup2_unified()
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if cgroupns:
        namespaces.append({"type": "cgroup"})
    mounts = _mounts()
    linux: dict[str, Any] = {}
    if rootless:
        # specconv.ToRootless: no network namespace (nothing to plug into it
        # unprivileged), a user namespace mapping the caller to root, /sys
        # bound from the host (sysfs cannot be mounted without a netns),
        # no uid=/gid= mount options, and no cgroup resources.
        namespaces = [ns for ns in namespaces if ns["type"] not in ("network", "user")]
        namespaces.append({"type": "user"})
        uid = os.geteuid() if host_uid is None else host_uid
        gid = os.getegid() if host_gid is None else host_gid
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        for n, entry in enumerate(mounts):
            if entry["destination"] == "/sys":
                mounts[n] = {
                    "destination": "/sys",
                    "type": "none",
                    "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
                }
            elif "options" in entry:
                kept = [o for o in entry["options"] if not o.startswith(("gid=", "uid="))]
                if kept:
                    entry["options"] = kept
                else:
                    del entry["options"]  # Go's omitempty drops the emptied list
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    linux["namespaces"] = namespaces
    linux["maskedPaths"] = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
        "/sys/devices/virtual/tpm",
    ]
    linux["readonlyPaths"] = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": mounts,
        "linux": linux,
    }


def features() -> dict[str, Any]:
    """Return runlog's features document (runtime-spec features.md).

    Keys follow runtime-spec's Go ``features.Features`` order. Booleans are
    false where runlog has no support (systemd cgroups, AppArmor, SELinux,
    Intel RDT, idmapped mounts), so callers do not rely on them.
    """
    from engine.linux import seccomp  # ctypes: only this command pays for it
    from engine.linux.libseccomp import library_version
    from engine.oci.version import commit

    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_POINTS),
        "mountOptions": list(KNOWN_MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": list(CAPABILITIES),
            # v1, v2 and hybrid hosts are supported; there is no systemd
            # driver (--systemd-cgroup is refused).
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            # runc's shape. Not probed: every flag listed is applied when
            # the kernel and libseccomp have it (runc probes supportedFlags).
            "seccomp": {
                "enabled": True,
                "actions": sorted(seccomp.ACTIONS),
                "operators": sorted(seccomp.OPERATORS),
                "archs": sorted(seccomp.ARCHITECTURES),
                "knownFlags": list(seccomp.FLAGS),
                "supportedFlags": list(seccomp.FLAGS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        # runc 1.1's annotations, under runlog's names where they are runc's.
        "annotations": {
            "io.github.seccomp.libseccomp.version": library_version() or "",
            "org.runlog.checkpoint.enabled": "false",
            "org.runlog.commit": commit(),
            ANNOTATION_VERSION: RUNLOG_VERSION,
        },
    }
