"""Signal names and numbers, as ``runc kill`` reads them.

``runlog kill`` is on the scheduler's hot path and importing :mod:`signal`
costs about 4.5 ms against an interpreter start of 7, so the names live in a
table here. The numbers are the generic Linux ones (x86, arm, arm64, ppc,
s390, riscv); MIPS, SPARC and Alpha number some signals differently and are
not supported.

runc's ``parseSignal`` accepts a decimal number, or a name with or without
the ``SIG`` prefix in any case (it upper-cases the text). runlog accepts the
same, plus the aliases ``IOT``, ``CLD`` and ``POLL`` and the real-time names
``RTMIN``, ``RTMIN+n``, ``RTMAX-n`` and ``RTMAX`` that kill(1) understands.
Unlike runc, a number outside 0-64 is refused here rather than by kill(2).
Signal 0 is accepted: ``kill ID 0`` asks whether the container's init is
alive, as ``kill(2)`` with signal 0 does.
"""

from __future__ import annotations

from engine.oci.errors import SignalError

__all__ = ["SIGNALS", "SIGRTMAX", "SIGRTMIN", "parse_signal", "signal_name"]

# <asm-generic/signal.h>, in number order.
SIGNALS: dict[str, int] = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
}
_ALIASES = {"SIGIOT": 6, "SIGCLD": 17, "SIGPOLL": 29}
_NAMES = {number: name for name, number in SIGNALS.items()}

# glibc keeps the kernel's first two real-time signals (32, 33) for itself;
# SIGRTMIN as programs and kill(1) see it is 34.
SIGRTMIN = 34
SIGRTMAX = 64
_MAX = SIGRTMAX


def parse_signal(text: str) -> int:
    """Return the number of the signal ``text`` names; raise :class:`SignalError`."""
    if text.isdigit() and text.isascii():
        number = int(text)
        if number > _MAX:
            raise SignalError(text)
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    found = SIGNALS.get(name) or _ALIASES.get(name) or _realtime(name)
    if found is None:
        raise SignalError(text)
    return found


def _realtime(name: str) -> int | None:
    if name == "SIGRTMIN":
        return SIGRTMIN
    if name == "SIGRTMAX":
        return SIGRTMAX
    for base, sign in (("SIGRTMIN+", 1), ("SIGRTMAX-", -1)):
        if name.startswith(base):
            offset = name[len(base) :]
            if offset.isdigit() and offset.isascii():
                number = (SIGRTMIN if sign > 0 else SIGRTMAX) + sign * int(offset)
                if SIGRTMIN <= number <= SIGRTMAX:
                    return number
    return None


def signal_name(number: int) -> str:
    """Return the name of signal ``number`` (``SIGKILL``, ``SIGRTMIN+2``).

    Real-time signals are named as kill(1) lists them: from ``SIGRTMIN`` up
    to ``SIGRTMIN+15``, then ``SIGRTMAX-14`` up to ``SIGRTMAX``.
    """
    name = _NAMES.get(number)
    if name is not None:
        return name
    if number in (32, 33):
        return f"SIG{number}"
    if SIGRTMIN <= number <= SIGRTMAX:
        middle = (SIGRTMIN + SIGRTMAX) // 2
        if number == SIGRTMIN:
            return "SIGRTMIN"
        if number == SIGRTMAX:
            return "SIGRTMAX"
        if number <= middle:
            return f"SIGRTMIN+{number - SIGRTMIN}"
        return f"SIGRTMAX-{SIGRTMAX - number}"
    raise SignalError(str(number))
