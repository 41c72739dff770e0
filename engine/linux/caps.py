"""The container process's capabilities: names, bit masks, and the five sets.

Owns the name <-> number table (capabilities(7); ``names.CAPABILITIES`` is in
number order, so a name's index is its number), the bit masks capget(2) and
capset(2) carry, reading the sets back from ``/proc/self/status``, and the
two steps runc's ``finalizeNamespace`` takes just before execve:

1. :func:`drop_bounding` while the process still holds ``CAP_SETPCAP``,
   that is *before* the uid switch (``identity.apply``), which empties the
   effective set;
2. :func:`apply` after the switch: capset(2) of effective, permitted and
   inheritable, then the ambient set.

An ambient capability that is not also permitted and inheritable is
dropped, not refused: the kernel raises no such capability (prctl(2)
PR_CAP_AMBIENT_RAISE answers EPERM), runc ignores that answer and runs the
container with the rest, and ``runc spec`` writes ambient capabilities
without an inheritable set. :func:`ambient_dropped` names them for the
create event, before the init is forked.

Names the running kernel does not know (number above
``/proc/sys/kernel/cap_last_cap``) are skipped, as runc skips them, and
:func:`apply` returns a note for each.

Everything here runs after pivot_root, where the container's root has no
Python library: nothing may import lazily, and files are read in binary
(a text ``open()`` with an encoding imports its codec module).
"""

from __future__ import annotations

import os
from types import MappingProxyType

from engine.errors import RunlogError
from engine.linux import ffi
from engine.linux.syscalls import libc, prctl
from engine.oci.names import CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from engine.oci.model import Capabilities

__all__ = [
    "CAP_NUMBERS",
    "SETS",
    "CapabilityError",
    "ambient_dropped",
    "ambient_warning",
    "apply",
    "current",
    "drop_bounding",
    "from_words",
    "lacking",
    "last_cap",
    "mask",
    "name",
    "names_in",
    "number",
    "parse_status",
    "split_known",
    "to_words",
    "validate",
]

CAP_NUMBERS: Mapping[str, int] = MappingProxyType({n: i for i, n in enumerate(CAPABILITIES)})
# The sets of config.md "Linux process", with their /proc/PID/status fields.
SETS: Mapping[str, str] = MappingProxyType(
    {
        "bounding": "CapBnd",
        "effective": "CapEff",
        "permitted": "CapPrm",
        "inheritable": "CapInh",
        "ambient": "CapAmb",
    }
)

# <linux/capability.h>; version 3 carries two 32-bit words per set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# <linux/prctl.h>
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_EPERM = 1
_EINVAL = 22


class CapabilityError(RunlogError):
    """The capability sets asked for cannot be given to the process.

    ``capability_set`` is the set at fault (``bounding``, ``ambient``…),
    ``names`` the capabilities concerned, ``errno`` the kernel's answer when
    a system call refused.
    """

    def __init__(
        self,
        capability_set: str,
        names: Iterable[str],
        reason: str,
        errno: int | None = None,
    ) -> None:
        self.capability_set = capability_set
        self.names = tuple(sorted(names, key=_order))
        self.reason = reason
        self.errno = errno
        what = " ".join(part for part in (capability_set, ", ".join(self.names)) if part)
        super().__init__(f"capabilities: {what}: {reason}" if what else f"capabilities: {reason}")


def _order(cap: str) -> tuple[int, str]:
    return (CAP_NUMBERS.get(cap, len(CAPABILITIES)), cap)


def number(cap: str) -> int:
    """The kernel number of ``cap`` (``CAP_KILL`` -> 5)."""
    try:
        return CAP_NUMBERS[cap]
    except KeyError:
        raise CapabilityError("", [cap], "not a capability name (capabilities(7))") from None


def name(cap: int) -> str:
    """The name of capability number ``cap`` (5 -> ``CAP_KILL``)."""
    if 0 <= cap < len(CAPABILITIES):
        return CAPABILITIES[cap]
    raise CapabilityError("", [], f"no capability has number {cap}")


def mask(caps: Iterable[str]) -> int:
    """The bit mask of ``caps``: bit N set for capability number N."""
    bits = 0
    for cap in caps:
        bits |= 1 << number(cap)
    return bits


def names_in(bits: int) -> set[str]:
    """The names of the bits set in ``bits``; a bit beyond the table (a newer
    kernel's capability) is written ``CAP_#N``."""
    found: set[str] = set()
    n = 0
    while bits >> n:
        if bits >> n & 1:
            found.add(CAPABILITIES[n] if n < len(CAPABILITIES) else f"CAP_#{n}")
        n += 1
    return found


def parse_status(text: str) -> dict[str, set[str]]:
    """The five sets from the text of ``/proc/PID/status``."""
    return {key: names_in(bits) for key, bits in _status_bits(text).items()}


def _status_bits(text: str) -> dict[str, int]:
    """The five sets' bits from the text of ``/proc/PID/status``."""
    fields = {field: key for key, field in SETS.items()}
    sets: dict[str, int] = {}
    for line in text.splitlines():
        field, _, value = line.partition(":")
        if field in fields:
            sets[fields[field]] = int(value.strip(), 16)
    missing = [SETS[key] for key in SETS if key not in sets]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in the status text")
    return sets


def current() -> dict[str, set[str]]:
    """The calling process's five sets, from ``/proc/self/status``."""
    return parse_status(_read("/proc/self/status").decode())


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows (asked once
    a process: the kernel's, it does not change)."""
    global _last_cap
    if _last_cap is None:
        _last_cap = _read_last_cap()
    return _last_cap


def _read_last_cap() -> int:
    try:
        return int(_read("/proc/sys/kernel/cap_last_cap"))
    except (OSError, ValueError):
        pass
    # /proc may not be mounted in the new root yet: PR_CAPBSET_READ answers
    # EINVAL for a number the kernel does not know (prctl(2)).
    last = 0
    for n in range(len(CAPABILITIES) + 64):
        try:
            prctl(_PR_CAPBSET_READ, n)
        except OSError:
            break
        last = n
    return last


def _read(path: str) -> bytes:
    """A small file's bytes, at the os level: in the freshly forked init a
    Python file object touches (and so copies) more of the memory it shares."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def bounding_set(last: int) -> int:
    """The calling process's bounding set, as bits up to ``last``: from
    ``/proc/self/status``, else one PR_CAPBSET_READ per capability."""
    try:
        held = _status_bits(_read("/proc/self/status").decode())["bounding"]
    except (OSError, ValueError):
        return sum(1 << n for n in range(last + 1) if _in_bounding(n))
    return held & ((1 << (last + 1)) - 1)


def lacking(cap: str) -> str:
    """Why this process cannot use ``cap`` where the kernel checks it against
    the initial user namespace (``capable()``: setrlimit(2), oom_score_adj),
    or ``""`` when it can."""
    try:
        sets = current()
    except OSError:
        return f"{cap} could not be checked (/proc/self/status is not readable)"
    if cap not in sets["bounding"]:
        return (
            f"{cap} is not in this process's capability bounding set, "
            "so no process started from here can hold it"
        )
    if cap not in sets["effective"]:
        return f"this process does not hold {cap} in its effective set"
    if not _in_initial_user_namespace():
        return (
            f"this process holds {cap} only inside a user namespace, "
            "and the kernel checks it in the initial one"
        )
    return ""


def _in_initial_user_namespace() -> bool:
    # The initial namespace maps every id onto itself in one extent
    # (user_namespaces(7)); unreadable counts as initial, the usual case.
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return f.read().split() == [b"0", b"0", b"4294967295"]
    except OSError:
        return True


def _sets(capabilities: Capabilities | None) -> dict[str, tuple[str, ...]]:
    # runc: a process without a "capabilities" object gets none at all.
    if capabilities is None:
        return {key: () for key in SETS}
    return {key: tuple(getattr(capabilities, key)) for key in SETS}


def validate(capabilities: Capabilities | None) -> None:
    """Check the rules the kernel would enforce with a bare EPERM, so the
    error says which capability breaks which rule. Changes nothing. An
    ambient capability the kernel would not raise is no error: it is
    :func:`ambient_dropped`."""
    sets = _sets(capabilities)
    for key, caps in sets.items():
        for cap in caps:
            if cap not in CAP_NUMBERS:
                raise CapabilityError(key, [cap], "not a capability name (capabilities(7))")
    permitted = set(sets["permitted"])
    extra = set(sets["effective"]) - permitted
    if extra:
        # capset(2): the new effective set must be a subset of the new permitted set.
        raise CapabilityError(
            "effective", extra, "not in the permitted set; add them to permitted or drop them"
        )


def ambient_dropped(capabilities: Capabilities | None) -> dict[str, str]:
    """The ambient capabilities asked for that are not also permitted and
    inheritable, in number order, each with the set it is missing from:
    :func:`apply` leaves them out, as the kernel would not raise them
    (prctl(2) PR_CAP_AMBIENT_RAISE: EPERM) and runc does not."""
    sets = _sets(capabilities)
    held = {key: set(sets[key]) for key in ("permitted", "inheritable")}
    dropped: dict[str, str] = {}
    for cap in sorted(set(sets["ambient"]), key=_order):
        missing = [key for key, names in held.items() if cap not in names]
        if missing:
            dropped[cap] = " and ".join(missing)
    return dropped


def ambient_warning(dropped: Mapping[str, str]) -> str:
    """The create event's words for :func:`ambient_dropped`'s answer."""
    by_set: dict[str, list[str]] = {}
    for cap, missing in dropped.items():
        by_set.setdefault(missing, []).append(cap)
    what = ", ".join(
        f"{', '.join(names)} (not in the {missing} set{'s' if ' and ' in missing else ''})"
        for missing, names in by_set.items()
    )
    return (
        f"capabilities: ambient: dropped {what}; the kernel raises an ambient "
        "capability only if it is also permitted and inheritable"
    )


def split_known(caps: Iterable[str], last: int) -> tuple[int, list[str]]:
    """The mask of ``caps`` the kernel knows (number <= ``last``) and the
    names it does not."""
    bits = 0
    unknown: list[str] = []
    for cap in caps:
        n = number(cap)
        if n > last:
            unknown.append(cap)
        else:
            bits |= 1 << n
    return bits, unknown


def drop_bounding(capabilities: Capabilities | None) -> int:
    """Drop from the bounding set every capability not in ``bounding``;
    return the bounding set left.

    Needs ``CAP_SETPCAP`` in the effective set (prctl(2) PR_CAPBSET_DROP), so
    runc does this before changing user; so must the caller. A capability
    asked for but already gone from the bounding set cannot come back; that
    is left to :func:`apply` to report.
    """
    last = last_cap()
    keep, _ = split_known(_sets(capabilities)["bounding"], last)
    held = bounding_set(last)
    to_drop = [n for n in range(last + 1) if not keep >> n & 1 and held >> n & 1]
    if not to_drop:
        return held
    if not _capget()[0] >> CAP_NUMBERS["CAP_SETPCAP"] & 1:
        raise CapabilityError(
            "bounding",
            [CAPABILITIES[n] for n in to_drop],
            "dropping from the bounding set needs CAP_SETPCAP in the effective set; "
            "drop the bounding set before changing user",
            _EPERM,
        )
    for n in to_drop:
        try:
            prctl(_PR_CAPBSET_DROP, n)
        except OSError as err:
            raise CapabilityError(
                "bounding", [CAPABILITIES[n]], f"PR_CAPBSET_DROP: {err.strerror}", err.errno
            ) from err
    return held & keep


def _in_bounding(n: int) -> bool:
    return prctl(_PR_CAPBSET_READ, n) == 1


def apply(capabilities: Capabilities | None) -> list[str]:
    """Give the calling process exactly the asked sets; returns notes.

    Drops what is left to drop from the bounding set (nothing, after
    :func:`drop_bounding`), sets effective, permitted and inheritable with
    one capset(2), then clears the ambient set and raises the asked ambient
    capabilities that are also permitted and inheritable (runc's
    ``ApplyCaps``; the others are :func:`ambient_dropped`). Call it after
    ``identity.apply``: the uid switch clears the effective and ambient
    sets, which this restores. ``None`` means no capabilities at all, as in
    runc.
    """
    validate(capabilities)
    sets = _sets(capabilities)
    dropped = ambient_dropped(capabilities)
    sets["ambient"] = tuple(cap for cap in sets["ambient"] if cap not in dropped)
    last = last_cap()
    notes: list[str] = []
    bits: dict[str, int] = {}
    for key, caps in sets.items():
        bits[key], unknown = split_known(caps, last)
        if unknown:
            notes.append(
                f"capabilities: {key}: skipped {', '.join(unknown)}: "
                f"unknown to this kernel (cap_last_cap {last})"
            )
    bounding = drop_bounding(capabilities)
    absent = bits["bounding"] & ~bounding
    if absent:
        notes.append(
            f"capabilities: bounding: {', '.join(sorted(names_in(absent), key=_order))} "
            "not in this process's bounding set; it cannot be added back"
        )
    _set(bits["effective"], bits["permitted"], bits["inheritable"], bounding)
    try:
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as err:
        if err.errno != _EINVAL or bits["ambient"]:
            raise CapabilityError(
                "ambient", [], f"PR_CAP_AMBIENT_CLEAR_ALL: {err.strerror}", err.errno
            ) from err
        return notes  # a kernel before 4.3 has no ambient set; nothing was asked of it
    for n in range(last + 1):
        if bits["ambient"] >> n & 1:
            try:
                prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, n)
            except OSError as err:
                raise CapabilityError(
                    "ambient", [CAPABILITIES[n]], f"PR_CAP_AMBIENT_RAISE: {err.strerror}", err.errno
                ) from err
    return notes


def _set(effective: int, permitted: int, inheritable: int, bounding: int) -> None:
    old_effective, old_permitted, old_inheritable = _capget()
    gained = permitted & ~old_permitted
    if gained:
        # capset(2): the permitted set can only shrink.
        why = (
            "not in the bounding set"
            if gained & ~bounding
            else "not in the permitted set before the change"
        )
        raise CapabilityError(
            "permitted", names_in(gained), f"this process does not hold them ({why})", _EPERM
        )
    beyond = inheritable & ~(old_inheritable | bounding)
    if beyond:
        # capset(2): inheritable may only grow within the bounding set.
        raise CapabilityError("inheritable", names_in(beyond), "not in the bounding set", _EPERM)
    beyond = inheritable & ~(old_inheritable | old_permitted)
    if beyond and not old_effective >> CAP_NUMBERS["CAP_SETPCAP"] & 1:
        # capset(2): beyond the permitted set only with CAP_SETPCAP, which
        # the uid switch took out of the effective set.
        raise CapabilityError(
            "inheritable",
            names_in(beyond),
            "not in the permitted set, and adding them needs CAP_SETPCAP in the effective set",
            _EPERM,
        )
    try:
        _capset(effective, permitted, inheritable)
    except OSError as err:
        raise CapabilityError(
            "effective/permitted/inheritable",
            [],
            f"capset: {err.strerror} (had permitted {_show(old_permitted)}, "
            f"effective {_show(old_effective)})",
            err.errno,
        ) from err


def _show(bits: int) -> str:
    return ",".join(sorted(names_in(bits), key=_order)) or "none"


def to_words(effective: int, permitted: int, inheritable: int) -> tuple[int, ...]:
    """The six 32-bit words of a version-3 ``__user_cap_data_struct[2]``:
    (effective, permitted, inheritable) of capabilities 0-31, then of 32-63."""
    low = 0xFFFFFFFF
    return (
        effective & low,
        permitted & low,
        inheritable & low,
        effective >> 32 & low,
        permitted >> 32 & low,
        inheritable >> 32 & low,
    )


def from_words(words: Iterable[int]) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks from the six words."""
    w = list(words)
    return (w[0] | w[3] << 32, w[1] | w[4] << 32, w[2] | w[5] << 32)


def _capget() -> tuple[int, int, int]:
    # libc's capget/capset with plain arrays: the header is {version, pid},
    # the data two {effective, permitted, inheritable} structs of u32.
    header = (ffi.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ffi.c_uint32 * 6)()
    if libc.capget(header, data) != 0:
        err = ffi.get_errno()
        raise CapabilityError("", [], f"capget: {os.strerror(err)}", err)
    return from_words(data)


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    header = (ffi.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ffi.c_uint32 * 6)(*to_words(effective, permitted, inheritable))
    if libc.capset(header, data) != 0:
        err = ffi.get_errno()
        raise OSError(err, os.strerror(err))
