"""The container process's resource limits (config.md "POSIX process" rlimits).

Owns setting them (:func:`apply`, prlimit(2) on the calling process or on a
child), checking them before anything is forked (:func:`check`), and the
error that says which limit the kernel refuses and why. The kernel's rules
(setrlimit(2), ``do_prlimit`` in kernel/sys.c):

- soft above hard: EINVAL;
- a hard limit above the current one needs ``CAP_SYS_RESOURCE`` in the
  *initial* user namespace (``capable()``), so a process inside a new user
  namespace can never raise one: runc sets rlimits from the parent with
  prlimit for that reason; pass ``pid`` to do the same;
- ``RLIMIT_NOFILE`` above ``fs.nr_open``: EPERM even with the capability.

:func:`check` runs in the parent before forking, :func:`apply` in the init
after pivot_root (nothing imported lazily, see :mod:`engine.linux.caps`).
"""

from __future__ import annotations

import resource

from engine.errors import RunlogError
from engine.linux.caps import lacking
from engine.oci.names import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.oci.model import Rlimit

__all__ = ["UNLIMITED", "RlimitError", "apply", "check", "refusal"]

# RLIM_INFINITY as config.json writes it (the Go uint64 ^0).
UNLIMITED = 2**64 - 1

_EINVAL = 22


class RlimitError(RunlogError):
    """The kernel refuses (or would refuse) one of the asked limits."""

    def __init__(
        self,
        rlimit_type: str,
        soft: int,
        hard: int,
        current_hard: int,
        reason: str,
        errno: int | None = None,
    ) -> None:
        self.type = rlimit_type  # as config.json names it: RLIMIT_NOFILE
        self.soft = soft
        self.hard = hard
        self.current_hard = current_hard
        self.reason = reason
        self.errno = errno
        super().__init__(
            f"cannot set {rlimit_type} to soft {_show(soft)}, hard {_show(hard)} "
            f"(current hard limit {_show(current_hard)}): {reason}"
        )


def _show(value: int) -> str:
    return "unlimited" if value >= UNLIMITED else str(value)


def _to_kernel(value: int) -> int:
    # Python's resource module takes a C long and RLIM_INFINITY as -1. The
    # kernel compares limits as unsigned 64-bit numbers, so anything from
    # 2**63 up is beyond every real limit: pass it as infinity.
    return resource.RLIM_INFINITY if value >= 2**63 else value


def _from_kernel(value: int) -> int:
    return UNLIMITED if value == resource.RLIM_INFINITY or value < 0 else value


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:  # binary: see engine.linux.caps
            return int(f.read())
    except (OSError, ValueError):
        return None


def refusal(
    limit: Rlimit, current_hard: int, *, lacking_sys_resource: str, nr_open: int | None
) -> str | None:
    """Why the kernel refuses ``limit`` given the current hard limit, or ``None``.

    ``lacking_sys_resource`` is :func:`engine.linux.caps.lacking` for
    ``CAP_SYS_RESOURCE`` (``""``: the process has it); ``nr_open`` is
    ``fs.nr_open`` (``None``: unknown).
    """
    if limit.soft > limit.hard:
        return "the soft limit is above the hard limit; make soft at most hard"
    if limit.type == "RLIMIT_NOFILE" and nr_open is not None and limit.hard > nr_open:
        return (
            f"the kernel caps RLIMIT_NOFILE at fs.nr_open ({nr_open}); "
            f"ask for a hard limit of at most {nr_open}"
        )
    if limit.hard > current_hard and lacking_sys_resource:
        return (
            f"raising a hard limit needs CAP_SYS_RESOURCE, and {lacking_sys_resource}; "
            f"ask for a hard limit of at most {_show(current_hard)}"
        )
    return None


def check(limits: Iterable[Rlimit], *, user_namespace: bool = False) -> None:
    """Fail early, in the parent, on a limit the kernel will refuse.

    Compares with this process's hard limits, which a forked init inherits.
    ``user_namespace``: the limits will be set from inside a new user
    namespace, where no hard limit can be raised.
    """
    nr_open: int | None = None
    for limit in limits:
        current_hard = _from_kernel(resource.getrlimit(RLIMITS[limit.type])[1])
        if limit.hard > current_hard:
            why = (
                "the limits are set inside a new user namespace, and the kernel "
                "checks CAP_SYS_RESOURCE in the initial one"
                if user_namespace
                else lacking("CAP_SYS_RESOURCE")
            )
        else:
            why = ""
        if limit.type == "RLIMIT_NOFILE" and nr_open is None:
            nr_open = _nr_open()
        reason = refusal(limit, current_hard, lacking_sys_resource=why, nr_open=nr_open)
        if reason is not None:
            raise RlimitError(limit.type, limit.soft, limit.hard, current_hard, reason)


def apply(limits: Iterable[Rlimit], pid: int = 0) -> None:
    """Set each limit on process ``pid`` (0: the caller) with prlimit(2), in order.

    Call it before ``identity.apply`` and the capability changes: raising a
    hard limit needs ``CAP_SYS_RESOURCE``, which they may drop.
    """
    for limit in limits:
        number = RLIMITS[limit.type]
        try:
            resource.prlimit(pid, number, (_to_kernel(limit.soft), _to_kernel(limit.hard)))
        except (OSError, ValueError) as err:
            # resource.prlimit reports EINVAL as a ValueError without errno.
            errno = err.errno if isinstance(err, OSError) else _EINVAL
            current_hard = _from_kernel(resource.prlimit(pid, number)[1])
            why = lacking("CAP_SYS_RESOURCE") if limit.hard > current_hard else ""
            reason = refusal(limit, current_hard, lacking_sys_resource=why, nr_open=_nr_open())
            if reason is None:
                strerror = err.strerror if isinstance(err, OSError) else str(err)
                reason = f"prlimit: {strerror}"
            raise RlimitError(
                limit.type, limit.soft, limit.hard, current_hard, reason, errno
            ) from err
