"""The Linux names a ``config.json`` may use, with their kernel numbers.

Capabilities, rlimit types, namespace types and hook points: what the
configuration parser checks names against and what ``runlog features``
advertises. Plain tables, so that reading them costs nothing.
"""

from __future__ import annotations

from types import MappingProxyType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CAPABILITIES", "HOOK_POINTS", "NAMESPACES", "RLIMITS"]

# capabilities(7), in number order: runc's ``features`` lists the same names.
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
# getrlimit(2) resources with their generic Linux numbers (<asm-generic/resource.h>);
# the names runc's ``strToRlimit`` accepts.
RLIMITS: Mapping[str, int] = MappingProxyType(
    {
        "RLIMIT_CPU": 0,
        "RLIMIT_FSIZE": 1,
        "RLIMIT_DATA": 2,
        "RLIMIT_STACK": 3,
        "RLIMIT_CORE": 4,
        "RLIMIT_RSS": 5,
        "RLIMIT_NPROC": 6,
        "RLIMIT_NOFILE": 7,
        "RLIMIT_MEMLOCK": 8,
        "RLIMIT_AS": 9,
        "RLIMIT_LOCKS": 10,
        "RLIMIT_SIGPENDING": 11,
        "RLIMIT_MSGQUEUE": 12,
        "RLIMIT_NICE": 13,
        "RLIMIT_RTPRIO": 14,
        "RLIMIT_RTTIME": 15,
    }
)

# config-linux.md "Namespaces": the types, with their clone(2) flags.
NAMESPACES: Mapping[str, int] = MappingProxyType(
    {
        "cgroup": 0x02000000,
        "ipc": 0x08000000,
        "mount": 0x00020000,
        "network": 0x40000000,
        "pid": 0x20000000,
        "time": 0x00000080,
        "user": 0x10000000,
        "uts": 0x04000000,
    }
)

# config.md "POSIX-platform Hooks", in lifecycle order.
HOOK_POINTS: tuple[str, ...] = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
