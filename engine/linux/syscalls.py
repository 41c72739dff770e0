"""Thin ctypes wrappers: namespaces, mounts, pivot_root, hostname, prctl.

Python 3.11 has no ``os.unshare``/``os.setns`` and no mount API; these call
libc directly and raise ``OSError`` with errno and the arguments, so callers
can say what failed where. Imported only by the init and the monitor, never
by the CLI's light commands. Through :mod:`engine.linux.ffi`, not ``ctypes``.
"""

from __future__ import annotations

import os

from engine.linux import ffi
from engine.oci.names import NAMESPACES

__all__ = [
    "CLONE_FLAGS",
    "MNT_DETACH",
    "default_signal",
    "libc",
    "mount",
    "pivot_root",
    "prctl",
    "setdomainname",
    "sethostname",
    "setns",
    "umount2",
    "unshare",
]

libc = ffi.libc

# <linux/sched.h>: each runtime-spec namespace type's clone flag, as
# engine.oci.names defines them once.
CLONE_FLAGS = NAMESPACES
# /proc/PID/ns/<name> for each type.
NS_FILES = {
    "mount": "mnt",
    "uts": "uts",
    "ipc": "ipc",
    "user": "user",
    "pid": "pid",
    "network": "net",
    "cgroup": "cgroup",
    "time": "time",
}

MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# pivot_root has no glibc wrapper; its number differs per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ffi.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(libc.unshare(ffi.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(libc.setns(ffi.c_int(fd), ffi.c_int(nstype)), f"setns({nstype:#x})")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    _check(
        libc.mount(enc(source), enc(target), enc(fstype), ffi.c_ulong(flags), enc(data)),
        f"mount {source or fstype} on {target} (flags {flags:#x}, data {data!r})",
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(libc.umount2(os.fsencode(target), ffi.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(
        libc.syscall(ffi.c_long(number), os.fsencode(new_root), os.fsencode(put_old)),
        f"pivot_root {new_root}",
    )


# rt_sigaction: glibc's sigaction() refuses its own real-time signals (32,
# 33), so an inherited SIG_IGN there can only be cleared by the syscall.
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "ppc64le": 173, "s390x": 174}


def ignored_signals() -> frozenset[int] | None:
    """The signals this process ignores (SigIgn of /proc/self/status);
    ``None`` where that cannot be read."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"SigIgn:"):
                    mask = int(line.split()[1], 16)
                    return frozenset(n + 1 for n in range(64) if mask >> n & 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


_MACHINE = os.uname().machine
# SIG_DFL, no flags, empty mask; only read by the kernel. Made here, not in
# the forked child that uses it (default_signals says why).
_DEFAULT_ACTION = ffi.create_string_buffer(64)


def default_signal(signo: int) -> None:
    """Set ``signo`` to SIG_DFL with the raw syscall (all-zero sigaction)."""
    number = _SYS_RT_SIGACTION.get(_MACHINE)
    if number is None:
        raise OSError(38, f"rt_sigaction: unknown syscall number on {_MACHINE}")
    _check(
        libc.syscall(ffi.c_long(number), ffi.c_int(signo), _DEFAULT_ACTION, None, ffi.c_size_t(8)),
        f"rt_sigaction({signo})",
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(libc.sethostname(raw, ffi.c_size_t(len(raw))), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(libc.setdomainname(raw, ffi.c_size_t(len(raw))), f"setdomainname {name!r}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = int(
        libc.prctl(
            ffi.c_int(option),
            ffi.c_ulong(arg2),
            ffi.c_ulong(arg3),
            ffi.c_ulong(arg4),
            ffi.c_ulong(arg5),
        )
    )
    if result < 0:
        err = ffi.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result
