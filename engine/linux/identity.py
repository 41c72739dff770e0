"""Who the container process is: groups, gid, uid, umask, no_new_privs, OOM score.

Owns config.md "POSIX process" ``user`` (uid, gid, additionalGids, umask),
``noNewPrivileges`` and ``oomScoreAdj`` as the init applies them to itself
just before execve, in runc's order (``setupUser`` in
libcontainer/init_linux.go): setgroups, setgid, setuid.

The uid switch and capabilities: leaving uid 0 clears the permitted,
effective and ambient sets unless ``PR_SET_KEEPCAPS`` is set, and clears the
effective and ambient sets even then (capabilities(7), "Effect of user ID
changes on capabilities"). So :func:`apply` keeps the permitted set across
the switch, as runc's ``SetKeepCaps`` does, and the caller must then call
``caps.apply`` to set the effective, inheritable and ambient sets; the
bounding set must be dropped *before* :func:`apply` (``caps.drop_bounding``),
while ``CAP_SETPCAP`` is still effective. :func:`engine.linux.finalize.prepare_exec`
makes the calls in that order.
"""

from __future__ import annotations

import os

from engine.errors import RunlogError
from engine.linux import ffi
from engine.linux.caps import lacking
from engine.linux.syscalls import libc, prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.oci.model import User

    _SetIds = Callable[[int, int, int], None]

__all__ = ["DEFAULT_UMASK", "IdentityError", "apply", "set_oom_score_adj"]

# runc's finalizeRootfs: the umask when config.json gives none.
DEFAULT_UMASK = 0o022

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38

_EPERM = 1
_EACCES = 13
_EINVAL = 22


class IdentityError(RunlogError):
    """A step of taking on the container's identity failed.

    ``step`` names it (``setgroups``, ``setresuid``, ``oom_score_adj``…),
    ``value`` is what was asked, ``errno`` the kernel's answer.
    """

    def __init__(self, step: str, value: object, reason: str, errno: int | None = None) -> None:
        self.step = step
        self.value = value
        self.reason = reason
        self.errno = errno
        super().__init__(f"{step} {value}: {reason}")


def apply(user: User, no_new_privileges: bool) -> None:
    """Become ``user`` (groups, gid, uid), set the umask and no_new_privs.

    Capabilities: the permitted set survives the uid switch; the effective
    set does not. Drop the bounding set before, call ``caps.apply`` after.
    The parent-death signal, which the kernel clears when credentials
    change, is restored afterwards, as runc restores it.
    """
    pdeathsig = _pdeathsig()
    _prctl("PR_SET_KEEPCAPS", _PR_SET_KEEPCAPS, 1)
    _setgroups(list(user.additional_gids))
    _set_id("setresgid", os.setresgid, user.gid, "gid")
    _set_id("setresuid", os.setresuid, user.uid, "uid")
    # runc's ClearKeepCaps: keep-caps is not for the container's process
    # (execve clears it too).
    _prctl("PR_SET_KEEPCAPS", _PR_SET_KEEPCAPS, 0)
    if pdeathsig:
        _prctl("PR_SET_PDEATHSIG", _PR_SET_PDEATHSIG, pdeathsig)
    os.umask(DEFAULT_UMASK if user.umask is None else user.umask)
    if no_new_privileges:
        # prctl(2): irreversible, inherited across fork and execve; needs no privilege.
        _prctl("PR_SET_NO_NEW_PRIVS", _PR_SET_NO_NEW_PRIVS, 1)


def set_oom_score_adj(score: int, pid: int | None = None) -> None:
    """Write ``score`` to ``/proc/PID/oom_score_adj`` (the caller's by default).

    Lowering it below ``oom_score_adj_min``, the last value a process with
    ``CAP_SYS_RESOURCE`` wrote (inherited across fork), needs that capability
    (proc(5), ``__set_oom_adj`` in fs/proc/base.c): write it before dropping
    capabilities.
    """
    path = f"/proc/{'self' if pid is None else pid}/oom_score_adj"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(score).encode())
        finally:
            os.close(fd)
    except OSError as err:
        if err.errno == _EACCES:
            why = lacking("CAP_SYS_RESOURCE") or err.strerror
            reason = (
                "lowering oom_score_adj below its floor (the last value a privileged "
                f"process set, inherited across fork) needs CAP_SYS_RESOURCE, and {why}"
            )
        elif err.errno == _EINVAL:
            reason = "out of range; oom_score_adj goes from -1000 to 1000"
        else:
            reason = f"{path}: {err.strerror}"
        raise IdentityError("oom_score_adj", score, reason, err.errno) from err


def _prctl(what: str, option: int, value: int) -> None:
    try:
        prctl(option, value)
    except OSError as err:
        raise IdentityError(what, value, err.strerror or str(err), err.errno) from err


def _pdeathsig() -> int:
    # PR_GET_PDEATHSIG writes through a pointer; syscalls.prctl passes integers.
    signal = ffi.c_int(0)
    if libc.prctl(ffi.c_int(_PR_GET_PDEATHSIG), ffi.byref(signal), 0, 0, 0) != 0:
        err = ffi.get_errno()
        raise IdentityError("PR_GET_PDEATHSIG", "", os.strerror(err), err)
    return signal.value


def _setgroups(gids: list[int]) -> None:
    try:
        os.setgroups(gids)
    except OSError as err:
        if err.errno == _EPERM and _setgroups_denied():
            if not gids:
                # runc: in a user namespace with setgroups denied (since Linux
                # 3.19 for unprivileged ones) there is nothing to clear.
                return
            reason = (
                "setgroups is denied in this user namespace (/proc/self/setgroups); "
                "drop additionalGids or map the user namespace from a privileged parent"
            )
        elif err.errno == _EPERM and seccomp_filtered():
            reason = "not permitted: the container's seccomp filter refuses setgroups"
        elif err.errno == _EPERM:
            reason = (
                "not permitted: setgroups needs CAP_SETGID in the effective set; "
                "change user before dropping capabilities"
            )
        else:
            reason = err.strerror or str(err)
        raise IdentityError("setgroups", gids, reason, err.errno) from err


def seccomp_filtered(status: str = "/proc/self/status") -> bool:
    """Whether a seccomp filter is loaded in this process (``Seccomp: 2``):
    without noNewPrivileges the init loads the container's filter before it
    changes user (engine.linux.finalize), so the filter, not a capability,
    may be what refused."""
    try:
        with open(status, "rb") as f:  # binary: see engine.linux.caps
            for line in f:
                if line.startswith(b"Seccomp:"):
                    return line.split()[1] == b"2"
    except (OSError, IndexError):
        pass
    return False


def _setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups", "rb") as f:  # binary: see engine.linux.caps
            return f.read().strip() == b"deny"
    except OSError:
        return False


def _set_id(step: str, call: _SetIds, value: int, kind: str) -> None:
    try:
        call(value, value, value)
    except OSError as err:
        if err.errno == _EINVAL:
            # runc: "cannot set uid to unmapped user in user namespace".
            reason = (
                f"{kind} {value} is not mapped in the user namespace; "
                f"add it to linux.{kind}Mappings"
            )
        elif err.errno == _EPERM and seccomp_filtered():
            reason = f"not permitted: the container's seccomp filter refuses {step}"
        elif err.errno == _EPERM:
            reason = (
                f"not permitted: changing {kind} needs CAP_SET{kind.upper()} "
                "in the effective set; change user before dropping capabilities"
            )
        else:
            reason = err.strerror or str(err)
        raise IdentityError(step, value, reason, err.errno) from err
