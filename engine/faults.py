"""A test-only fault: ``RUNLOG_FAULT=TRIGGER:POINT`` SIGKILLs the process
that reaches that point, to show what a crash there leaves.

Points: ``after:ACTION`` once an action of TRIGGER has completed (its
label, e.g. ``create:after:cgroup.create``), ``recorded`` once TRIGGER's
event is committed, before anyone is answered; ``create:claimed`` in the
``create`` command once it has claimed the id, before the monitor is told
what to create; ``sent`` in a client of the monitor (``pause:sent``) once
its request is sent, before the answer. Unset, it costs one
comparison per point.
"""

import posix

__all__ = ["ARMED", "point"]

_AT = posix.environ.get(b"RUNLOG_FAULT", b"").decode(errors="replace")
#: Whether a fault is set at all (callers skip building the point's name).
ARMED = bool(_AT)


def point(trigger: str, where: str) -> None:
    """SIGKILL this process if RUNLOG_FAULT names ``trigger:where``."""
    if _AT and f"{trigger}:{where}" == _AT:
        posix.kill(posix.getpid(), 9)
