"""Seccomp filters (runtime-spec config-linux.md "Seccomp") through libseccomp.

Two halves, so that a profile is checked long before anything loads it:

* :func:`plan` is pure: it checks ``linux.seccomp`` and converts it as runc
  does (libcontainer/specconv ``SetupSeccomp``, libcontainer/seccomp
  ``InitSeccomp`` and ``matchCall``) into a :class:`Plan` holding
  libseccomp's numbers, one :class:`Rule` per libseccomp rule.
  :mod:`engine.oci.config` calls it while it reads config.json, so a bad
  profile fails ``create`` before anything is made.
* :class:`Filter` builds a libseccomp context from a plan
  (``libseccomp.so.2`` through ctypes), then loads it into the calling
  thread (:meth:`Filter.load`: seccomp(2), behind the ENOSYS stub) or
  exports its BPF without loading it (:meth:`Filter.export_bpf`).

runc's rules, kept here: a profile with neither ``defaultAction`` nor
``syscalls`` is no filter; ``SCMP_ACT_KILL`` is ``SCMP_ACT_KILL_THREAD``;
ERRNO and TRACE return EPERM unless ``errnoRet`` says otherwise; a rule whose
action (errno included) is the default action is dropped, since libseccomp
refuses it; the args of an entry are ANDed in one rule, unless two share an
index, then each arg is a rule of its own; a syscall libseccomp does not
know is skipped (:attr:`engine.linux.libseccomp.Filter.skipped` names them); ``flags`` absent means
``SECCOMP_FILTER_FLAG_SPEC_ALLOW`` where libseccomp and the kernel have it;
loading never sets no_new_privs (``process.noNewPrivileges`` decides). For
``SCMP_CMP_MASKED_EQ`` ``value`` is the mask and ``valueTwo`` the value it
must give, libseccomp's ``datum_a`` and ``datum_b``.

Stricter than runc: an ``errnoRet`` on an action that returns no errno is an
error (config-linux.md: the runtime "MUST print and error and fail"), as is
an entry without ``names`` (the spec requires one). Not supported: seccomp
notify (``SCMP_ACT_NOTIFY``, ``listenerPath``: runlog has no agent).

As runc (libcontainer/seccomp/patchbpf), the filter is loaded with an
ENOSYS stub in front (:mod:`engine.linux.enosys`): syscalls newer than any
the profile names get ENOSYS, not the default action, so that programs fall
back to older calls.

Errors::

    RunlogError
    └── SeccompError    a profile runlog, libseccomp or the kernel refuses
"""

from __future__ import annotations

import errno
from types import MappingProxyType

from engine import jsonfast
from engine.errors import RunlogError
from engine.frozen import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, NoReturn

__all__ = [
    "ACTIONS",
    "ARCHITECTURES",
    "FLAGS",
    "OPERATORS",
    "Condition",
    "Plan",
    "Rule",
    "SeccompError",
    "plan",
]

BASE = "linux.seccomp"

# <seccomp.h> SCMP_ACT_*: ERRNO and TRACE carry 16 bits of data.
ACTIONS: Mapping[str, int] = MappingProxyType(
    {
        "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD, as in runc and libseccomp
        "SCMP_ACT_KILL_THREAD": 0x00000000,
        "SCMP_ACT_KILL_PROCESS": 0x80000000,
        "SCMP_ACT_TRAP": 0x00030000,
        "SCMP_ACT_ERRNO": 0x00050000,
        "SCMP_ACT_TRACE": 0x7FF00000,
        "SCMP_ACT_LOG": 0x7FFC0000,
        "SCMP_ACT_ALLOW": 0x7FFF0000,
    }
)
# The actions taking errnoRet: its default (runc's EPERM) and its ceiling. The
# kernel caps an errno at MAX_ERRNO; TRACE's data is the tracer's to read.
_DATA = {"SCMP_ACT_ERRNO": (errno.EPERM, 4095), "SCMP_ACT_TRACE": (errno.EPERM, 0xFFFF)}

# <seccomp.h> enum scmp_compare.
OPERATORS: Mapping[str, int] = MappingProxyType(
    {
        "SCMP_CMP_NE": 1,
        "SCMP_CMP_LT": 2,
        "SCMP_CMP_LE": 3,
        "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6,
        "SCMP_CMP_MASKED_EQ": 7,
    }
)

# config-linux.md's architectures; libseccomp's name is the lower-cased
# suffix, and the installed libseccomp may not know all of them.
ARCHITECTURES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
)

# The filter flags runlog applies (runc's list, in runc's order); the
# libseccomp attribute for each is engine.linux.libseccomp's.
FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
)
# In config-linux.md, not in libseccomp 2.5 nor runc's list.
_UNSUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)

_MAX_ARGS = 6  # a syscall's arguments, 0 to 5
_UINT64 = 2**64 - 1


class SeccompError(RunlogError):
    """``linux.seccomp`` cannot be applied: ``field`` is the JSON path at
    fault (``linux.seccomp.syscalls[3].action``), ``problem`` what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@record
class Condition:
    """One ``scmp_arg_cmp``: argument ``index`` compared by ``op``."""

    index: int
    op: int
    value: int
    value_two: int = 0


@record
class Rule:
    """One ``seccomp_rule_add_array``: its conditions are ANDed; ``where``
    is the syscalls entry it comes from."""

    syscall: str
    action: int
    conditions: tuple[Condition, ...]
    where: str


@record
class Plan:
    """A checked profile in libseccomp's numbers. ``architectures`` and
    ``flags`` are the OCI names, in the document's order; ``flags`` is
    ``None`` when the profile gives none (runc's SPEC_ALLOW default)."""

    default_action: int
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] | None = None
    rules: tuple[Rule, ...] = ()
    optimize: bool = False  # runc: binary-tree dispatch above 32 syscalls
    #: Every syscall the profile names (rules dropped as redundant too):
    #: the ENOSYS stub counts from the greatest of them, as runc's does.
    named: tuple[str, ...] = ()

    def wants_enosys_stub(self) -> bool:
        """runc's generatePatch: not for a default that lets calls through
        (ALLOW, LOG, TRACE), nor for one that already answers ENOSYS."""
        action = self.default_action
        permissive = action in (ACTIONS["SCMP_ACT_ALLOW"], ACTIONS["SCMP_ACT_LOG"])
        permissive = permissive or action & 0xFFFF0000 == ACTIONS["SCMP_ACT_TRACE"]
        return not permissive and action != ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS


def _fail(field: str, problem: str) -> NoReturn:
    raise SeccompError(field, problem)


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(field, f"expected an object, got {jsonfast.json_type(value)}")
    return value


def _array(parent: Mapping[str, Any], key: str, base: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(f"{base}.{key}", f"expected an array, got {jsonfast.json_type(value)}")
    return value


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        _fail(field, f"expected a string, got {jsonfast.json_type(value)}")
    return value


def _integer(parent: Mapping[str, Any], key: str, base: str, high: int) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    field = f"{base}.{key}"
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, f"expected an integer, got {jsonfast.json_type(value)}")
    if not 0 <= value <= high:
        _fail(field, f"{value} is out of range (0 to {high})")
    return value


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _action(parent: Mapping[str, Any], key: str, errno_key: str, base: str) -> int:
    """The libseccomp action of ``parent[key]``, with ``parent[errno_key]``."""
    field = f"{base}.{key}"
    name = _string(parent.get(key), field)
    if name == "SCMP_ACT_NOTIFY":
        _fail(field, "SCMP_ACT_NOTIFY is not supported: runlog has no seccomp agent")
    if name not in ACTIONS:
        _fail(
            field,
            f'unknown action "{name}": not a valid action for seccomp (one of {_known(ACTIONS)})',
        )
    data = _DATA.get(name)
    ret = _integer(parent, errno_key, base, data[1] if data else _UINT64)
    if data is None:
        if ret is not None:
            _fail(f"{base}.{errno_key}", f"{name} returns no errno: remove {errno_key}")
        return ACTIONS[name]
    return ACTIONS[name] | (data[0] if ret is None else ret)


def _condition(item: object, base: str) -> Condition:
    arg = _object(item, base)
    if arg.get("op") is None:
        _fail(f"{base}.op", "must be specified")
    op = _string(arg["op"], f"{base}.op")
    if op not in OPERATORS:
        _fail(
            f"{base}.op",
            f'unknown operator "{op}": not a valid operator for seccomp '
            f"(one of {_known(OPERATORS)})",
        )
    # Absent index and value are 0, as Go's decoder leaves them for runc.
    index = _integer(arg, "index", base, _UINT64) or 0
    if index >= _MAX_ARGS:
        _fail(f"{base}.index", f"syscalls have at most {_MAX_ARGS} arguments (index 0 to 5)")
    return Condition(
        index=index,
        op=OPERATORS[op],
        value=_integer(arg, "value", base, _UINT64) or 0,
        value_two=_integer(arg, "valueTwo", base, _UINT64) or 0,
    )


def _names(entry: Mapping[str, Any], base: str) -> list[str]:
    names = [_string(v, f"{base}.names[{n}]") for n, v in enumerate(_array(entry, "names", base))]
    if not names:
        # config-linux.md: "names MUST contain at least one entry".
        _fail(f"{base}.names", "must name at least one syscall")
    for n, name in enumerate(names):
        if not name:
            _fail(f"{base}.names[{n}]", "must not be empty")
    return names


def _flag(value: object, field: str) -> str:
    name = _string(value, field)
    if name in _UNSUPPORTED_FLAGS:
        _fail(field, f"{name} is not supported by runlog")
    if name not in FLAGS:
        _fail(field, f'unknown flag "{name}" (one of {_known(FLAGS)})')
    return name


def plan(doc: Mapping[str, Any], base: str = BASE) -> Plan | None:
    """Check the ``linux.seccomp`` object ``doc`` and convert it; ``None``
    when it asks for no filter. Raise :class:`SeccompError` naming the field."""
    entries = _array(doc, "syscalls", base)
    if doc.get("defaultAction") in (None, "") and not entries:
        return None  # runc: "No default action specified, no syscalls listed"
    if doc.get("defaultAction") in (None, ""):
        _fail(f"{base}.defaultAction", "must be specified")
    default = _action(doc, "defaultAction", "defaultErrnoRet", base)
    for key in ("listenerPath", "listenerMetadata"):
        if doc.get(key) not in (None, ""):
            _fail(f"{base}.{key}", "seccomp notify is not supported: runlog has no seccomp agent")
    architectures = []
    for n, value in enumerate(_array(doc, "architectures", base)):
        name = _string(value, f"{base}.architectures[{n}]")
        if name not in ARCHITECTURES:
            _fail(
                f"{base}.architectures[{n}]",
                f'unknown architecture "{name}": not a valid arch for seccomp',
            )
        architectures.append(name)
    flags = None
    if doc.get("flags") is not None:
        flags = tuple(
            _flag(v, f"{base}.flags[{n}]") for n, v in enumerate(_array(doc, "flags", base))
        )
    rules: list[Rule] = []
    named: dict[str, None] = {}
    count = 0
    for n, item in enumerate(entries):
        where = f"{base}.syscalls[{n}]"
        entry = _object(item, where)
        names = _names(entry, where)
        named.update(dict.fromkeys(names))
        if entry.get("action") is None:
            _fail(f"{where}.action", "must be specified")
        action = _action(entry, "action", "errnoRet", where)
        conditions = tuple(
            _condition(arg, f"{where}.args[{i}]")
            for i, arg in enumerate(_array(entry, "args", where))
        )
        count += len(names)
        if action == default:
            continue  # runc's matchCall: redundant, and libseccomp refuses it
        indexes = [c.index for c in conditions]
        # runc's matchCall: args on distinct indexes are ANDed in one rule;
        # when two share an index it falls back to its "old behavior", one
        # rule per arg, which ORs them. Profiles are written against that.
        shared = len(set(indexes)) < len(indexes)
        groups = [(c,) for c in conditions] if shared else [conditions]
        rules += [Rule(name, action, group, where) for name in names for group in groups]
    return Plan(
        default_action=default,
        architectures=tuple(architectures),
        flags=flags,
        rules=tuple(rules),
        optimize=count > 32,
        named=tuple(named),
    )
