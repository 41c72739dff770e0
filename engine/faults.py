"""A test-only fault: ``RUNLOG_FAULT=TRIGGER:POINT`` SIGKILLs the process
that reaches that point, to show what a crash there leaves.

Points: ``after:ACTION`` once an action of TRIGGER has completed (its
label, e.g. ``create:after:cgroup.create``), ``recorded`` once TRIGGER's
event is committed, before anyone is answered; ``create:claimed`` in the
``create`` command once it has claimed the id, before the monitor is told
what to create, and ``create:sent`` once it is told; ``sent`` in a client
of the monitor (``pause:sent``) once its request is sent, before the
answer. Unset, it costs one
comparison per point.

``RUNLOG_FAULT=TRIGGER:POINT:stop`` SIGSTOPs the process there instead:
a test forces an interleaving with it (does something else meanwhile,
then SIGCONTs it). ``state:reconcile`` is a point of ``state`` without a
monitor, once it has read runtime.json and opened the log.

``RUNLOG_FAULT=TRIGGER:POINT:fail`` makes the code at that point fail as the
system would there (:func:`fails`), without killing anything: ``watch:spool``
and ``watch:freezer``, the monitor's inotify watch (ENOSPC, as at
``fs.inotify.max_user_watches``).
"""

import posix

__all__ = ["ARMED", "fails", "point"]

_AT = posix.environ.get(b"RUNLOG_FAULT", b"").decode(errors="replace")
#: Whether a fault is set at all (callers skip building the point's name).
ARMED = bool(_AT)


def point(trigger: str, where: str) -> None:
    """SIGKILL this process if RUNLOG_FAULT names ``trigger:where``; SIGSTOP
    it if ``trigger:where:stop``."""
    if _AT and _AT.startswith(f"{trigger}:{where}"):
        rest = _AT[len(trigger) + len(where) + 1 :]
        if rest in ("", ":stop"):
            posix.kill(posix.getpid(), 19 if rest else 9)  # SIGSTOP, SIGKILL


def fails(trigger: str, where: str) -> bool:
    """Whether RUNLOG_FAULT names ``trigger:where:fail``."""
    return bool(_AT) and f"{trigger}:{where}:fail" == _AT
