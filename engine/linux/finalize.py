"""What the container's init applies to itself just before execve.

Owns the order, runc's ``finalizeNamespace`` (libcontainer/init_linux.go),
with the rlimits and the OOM score runc sets from the parent done first:

1. rlimits                (``rlimits.apply``: raising a hard limit needs
                           ``CAP_SYS_RESOURCE``, so before any drop)
2. oom_score_adj          (``identity.set_oom_score_adj``: lowering it needs
                           ``CAP_SYS_RESOURCE`` too)
3. the seccomp filter,    (the caller's ``load_filter``: without no_new_privs
   without                 loading one needs ``CAP_SYS_ADMIN``, so runc's
   noNewPrivileges         standard_init_linux.go loads it before
                           finalizeNamespace; with it, the caller loads it
                           last, just before execve)
4. the bounding set       (``caps.drop_bounding``: needs ``CAP_SETPCAP`` in the
                           effective set, which the uid switch clears)
5. groups, gid, uid,      (``identity.apply``: with ``PR_SET_KEEPCAPS``, so the
   umask, no_new_privs     permitted set survives the switch)
6. capability sets        (``caps.apply``: capset of effective, permitted and
                           inheritable, then the ambient set)

Errors, each a :class:`engine.errors.RunlogError` with its context::

    RunlogError
    ├── RlimitError        (engine.linux.rlimits)   a limit the kernel refuses
    ├── IdentityError      (engine.linux.identity)  groups, ids, umask, no_new_privs, OOM score
    ├── CapabilityError    (engine.linux.caps)      a set that cannot be given
    └── SeccompError       (engine.linux.seccomp)   the filter, from ``load_filter``
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub

from engine.linux import caps, identity, rlimits, syscalls
from engine.linux.caps import CapabilityError
from engine.linux.identity import IdentityError
from engine.linux.rlimits import RlimitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.oci.model import Process

__all__ = ["CapabilityError", "IdentityError", "RlimitError", "default_signals", "prepare_exec"]


def prepare_exec(
    process: Process,
    *,
    set_rlimits: bool = True,
    load_filter: Callable[[], None] | None = None,
) -> list[str]:
    """Apply ``process``'s rlimits, OOM score, user and capabilities to the
    calling process, in the order above; returns notes (capabilities this
    kernel does not know, skipped as runc skips them) for the caller to record.

    ``set_rlimits=False`` when the parent has already set them on this
    process with ``rlimits.apply(limits, pid)``: runc's way when the init is
    in a new user namespace, where no hard limit can be raised.
    ``load_filter`` runs at step 3, while every capability is still held.
    """
    # Checked before anything changes: a wrong set fails the create cleanly.
    caps.validate(process.capabilities)
    if set_rlimits:
        rlimits.apply(process.rlimits)
    if process.oom_score_adj is not None:
        identity.set_oom_score_adj(process.oom_score_adj)
    if load_filter is not None:
        load_filter()
    caps.drop_bounding(process.capabilities)
    identity.apply(process.user, process.no_new_privileges)
    return caps.apply(process.capabilities)


def default_signals() -> None:
    """No signal blocked and every disposition at its default, as a new
    program expects (subprocess and Go's os/exec do the same). execve resets
    handled signals but keeps ignored ones ignored and keeps the mask, and
    Python ignores SIGPIPE and SIGXFSZ: the container's process and the
    hooks start as runc's do.

    On ``_signal``, the C module: :mod:`signal` turns every old handler it
    returns into an enum, and in a freshly forked child (the init, after
    the monitor's "release"; a hook) each object that touches costs a
    copied page. glibc's reserved real-time signals are out of sigaction's
    reach; only an ignored one outlives execve, so only those the process
    was started with ignored (:data:`_RESERVED_IGNORED`) get the raw
    rt_sigaction. 0.9 ms in all before, 0.2 now."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    for signo in range(1, _signal.NSIG):
        if signo in (_signal.SIGKILL, _signal.SIGSTOP) or signo in _RESERVED:
            continue
        try:
            _signal.signal(signo, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    for signo in _RESERVED_IGNORED:
        try:
            syscalls.default_signal(signo)
        except OSError:
            pass


# Between the kernel's first real-time signal (32) and glibc's SIGRTMIN.
_RESERVED = range(32, _signal.SIGRTMIN)
# Read once, in the monitor before it forks anything: nothing in runlog
# ignores these, so a child has them ignored only if runlog was started so
# (all of them, if /proc/self/status cannot tell).
_IGNORED = syscalls.ignored_signals()
_RESERVED_IGNORED = tuple(s for s in _RESERVED if _IGNORED is None or s in _IGNORED)
