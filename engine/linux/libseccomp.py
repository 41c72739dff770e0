"""libseccomp, through ctypes: a :class:`Filter` built from a checked
:class:`~engine.linux.seccomp.Plan`, loaded into the calling thread or
exported as BPF.

As runc's patchbpf does, the filter is not loaded by ``seccomp_load``:
libseccomp compiles and exports it, :mod:`engine.linux.enosys` puts its
ENOSYS stub in front, and :meth:`Filter.load` hands the program to the
kernel with seccomp(2) and the flags libseccomp would have used.

Apart from :mod:`engine.linux.seccomp` so that checking a profile (every
``create`` of a config that has one) does not load ctypes or the library;
the monitor builds the filter before it forks the init, which only loads it.
"""

from __future__ import annotations

import ctypes
import errno
import os

from engine.linux import enosys
from engine.linux.seccomp import BASE, Plan, SeccompError

__all__ = ["Filter"]

# <seccomp.h> enum scmp_filter_attr.
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# engine.linux.seccomp.FLAGS, as the libseccomp attribute that asks for each.
_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
}

# The filter flags the kernel takes (<linux/seccomp.h>), from the libseccomp
# attribute that asks for each, as runc's filterFlags reads them back.
_KERNEL_FLAGS = ((_ATTR_CTL_TSYNC, 1), (_ATTR_CTL_LOG, 2), (_ATTR_CTL_SSB, 4))
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "ppc64le": 358, "s390x": 348}
_SECCOMP_SET_MODE_FILTER = 1
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

_LIBRARY = "libseccomp.so.2"
_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name: no such syscall


class _ArgCmp(ctypes.Structure):
    """<seccomp.h> struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _SockFprog(ctypes.Structure):
    """<linux/filter.h> struct sock_fprog."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


def _open_library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(_LIBRARY)
    except OSError as err:
        raise SeccompError(
            BASE, f"{_LIBRARY} cannot be loaded ({err}): install libseccomp2"
        ) from err
    ctx = ctypes.c_void_p
    for name, restype, argtypes in (
        ("seccomp_init", ctx, [ctypes.c_uint32]),
        ("seccomp_release", None, [ctx]),
        ("seccomp_attr_set", ctypes.c_int, [ctx, ctypes.c_int, ctypes.c_uint32]),
        ("seccomp_arch_native", ctypes.c_uint32, []),
        ("seccomp_arch_resolve_name", ctypes.c_uint32, [ctypes.c_char_p]),
        ("seccomp_arch_add", ctypes.c_int, [ctx, ctypes.c_uint32]),
        ("seccomp_syscall_resolve_name", ctypes.c_int, [ctypes.c_char_p]),
        ("seccomp_syscall_resolve_name_arch", ctypes.c_int, [ctypes.c_uint32, ctypes.c_char_p]),
        ("seccomp_attr_get", ctypes.c_int, [ctx, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)]),
        (
            "seccomp_rule_add_array",
            ctypes.c_int,
            [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)],
        ),
        ("seccomp_export_bpf", ctypes.c_int, [ctx, ctypes.c_int]),
        ("seccomp_version", ctypes.POINTER(_Version), []),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def library_version() -> str | None:
    """libseccomp's version (``2.5.4``), or ``None`` where it cannot be loaded."""
    try:
        found = _open_library().seccomp_version().contents
    except SeccompError:
        return None
    return f"{found.major}.{found.minor}.{found.micro}"


def _strerror(rc: int) -> str:
    return os.strerror(-rc) if rc < 0 else f"error {rc}"


class Filter:
    """A libseccomp filter context built from a :class:`Plan`, owned until
    :meth:`release` (or the end of a ``with`` block).

    Build it before the process that loads it forks or pivots: :meth:`load`
    opens no file and imports nothing. ``skipped`` names the syscalls this
    libseccomp does not know, left out as runc leaves them out.
    """

    def __init__(self, plan: Plan, base: str = BASE) -> None:
        self._lib = _open_library()
        self._ctx: int | None = self._lib.seccomp_init(plan.default_action) or None
        if self._ctx is None:
            raise SeccompError(
                f"{base}.defaultAction", f"{self.version()} refuses the default action"
            )
        self.skipped: tuple[str, ...] = ()
        try:
            self._build(plan, base)
            self._prepare(plan)
        except BaseException:
            self.release()
            raise

    def version(self) -> str:
        found = self._lib.seccomp_version().contents
        return f"libseccomp {found.major}.{found.minor}.{found.micro}"

    def _attr(self, attr: int, value: int) -> int:
        return int(self._lib.seccomp_attr_set(self._ctx, attr, value))

    def _build(self, plan: Plan, base: str) -> None:
        """runc's ``InitSeccomp``: architectures, flags, attributes, then rules."""
        lib = self._lib
        native = lib.seccomp_arch_native()
        for n, name in enumerate(plan.architectures):
            field = f"{base}.architectures[{n}]"
            token = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
            if not token:
                raise SeccompError(field, f"{self.version()} does not know {name}")
            rc = lib.seccomp_arch_add(self._ctx, token) if token != native else 0
            if rc < 0 and rc != -errno.EEXIST:
                raise SeccompError(field, f"cannot add {name}: {_strerror(rc)}")
        if plan.flags is None:
            self._attr(_ATTR_CTL_SSB, 1)  # runc's default, where it can be had
        for n, flag in enumerate(plan.flags or ()):
            rc = self._attr(_FLAG_ATTRS[flag], 1)
            if rc < 0:
                raise SeccompError(
                    f"{base}.flags[{n}]",
                    f"{self.version()} or the kernel cannot set {flag}: {_strerror(rc)}",
                )
        if plan.optimize:
            self._attr(_ATTR_CTL_OPTIMIZE, 2)  # absent before libseccomp 2.5.0
        # libseccomp sets no_new_privs on load by default; runc turns that
        # off, so that process.noNewPrivileges alone decides it.
        rc = self._attr(_ATTR_CTL_NNP, 0)
        if rc < 0:
            raise SeccompError(base, f"cannot leave no_new_privs unset: {_strerror(rc)}")
        self._attr(_ATTR_API_SYSRAWRC, 1)  # the kernel's errno from load, where supported
        skipped: list[str] = []
        for rule in plan.rules:
            number = lib.seccomp_syscall_resolve_name(rule.syscall.encode())
            if number == _NR_SCMP_ERROR:
                if rule.syscall not in skipped:
                    skipped.append(rule.syscall)
                continue
            args = (_ArgCmp * len(rule.conditions))(
                *(_ArgCmp(c.index, c.op, c.value, c.value_two) for c in rule.conditions)
            )
            rc = lib.seccomp_rule_add_array(
                self._ctx, rule.action, number, len(rule.conditions), args
            )
            if rc < 0:
                raise SeccompError(
                    rule.where,
                    f"{self.version()} refuses the rule for {rule.syscall}: {_strerror(rc)}",
                )
        self.skipped = tuple(skipped)

    def _prepare(self, plan: Plan) -> None:
        """Everything :meth:`load` needs, ready before any fork: the program
        with its stub, the flags, the system call."""
        code = self.export_bpf()
        if plan.wants_enosys_stub():
            code = enosys.stub(self._last_syscalls(plan)) + code
        self.program = code
        self._code = ctypes.create_string_buffer(code, len(code))
        self._fprog = _SockFprog(len(code) // 8, ctypes.addressof(self._code))
        self.flags = 0
        for attr, flag in _KERNEL_FLAGS:
            value = ctypes.c_uint32(0)
            if (
                self._lib.seccomp_attr_get(self._ctx, attr, ctypes.byref(value)) == 0
                and value.value
            ):
                self.flags |= flag
        self._sys_seccomp = _SYS_SECCOMP.get(os.uname().machine)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def _last_syscalls(self, plan: Plan) -> dict[int, dict[str, int]]:
        """runc's findLastSyscalls: per architecture of the profile, the
        greatest number among the syscalls it names."""
        last: dict[int, dict[str, int]] = {}
        for name in plan.architectures:
            token = self._lib.seccomp_arch_resolve_name(
                name.removeprefix("SCMP_ARCH_").lower().encode()
            )
            x32 = name == "SCMP_ARCH_X32"
            arch, mode = (enosys.AUDIT_ARCH_X86_64, "x32") if x32 else (token, "")
            numbers = [
                number
                for syscall in plan.named
                if (number := self._lib.seccomp_syscall_resolve_name_arch(token, syscall.encode()))
                > 0
            ]
            if numbers:
                last.setdefault(arch, {})[mode] = max(numbers)
        return last

    def _context(self) -> int:
        if self._ctx is None:
            raise SeccompError(BASE, "the filter was released")
        return self._ctx

    def load(self) -> None:
        """Load the filter into the calling thread (every thread with
        ``SECCOMP_FILTER_FLAG_TSYNC``); it is inherited across fork and exec.
        Needs no_new_privs or ``CAP_SYS_ADMIN``. Opens no file and imports
        nothing: it runs in the init after pivot_root."""
        fprog = ctypes.addressof(self._fprog)
        if self.flags == 0:
            # As runc: prctl when no flag is asked for (older kernels).
            rc = self._libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0)
        elif self._sys_seccomp is None:
            raise SeccompError(BASE, f"loading the filter: no seccomp(2) for {os.uname().machine}")
        else:
            rc = self._libc.syscall(
                ctypes.c_long(self._sys_seccomp),
                ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
                ctypes.c_uint(self.flags),
                ctypes.c_void_p(fprog),
            )
        if rc > 0:  # SECCOMP_FILTER_FLAG_TSYNC: a thread that could not follow
            raise SeccompError(BASE, f"loading the filter: thread {rc} could not be synchronized")
        if rc < 0:
            code = ctypes.get_errno()
            hint = ""
            if code in (errno.EACCES, errno.EPERM):
                hint = " (without no_new_privs, loading a filter needs CAP_SYS_ADMIN)"
            raise SeccompError(BASE, f"loading the filter: {os.strerror(code)}{hint}")

    def export_bpf(self) -> bytes:
        """The BPF program :meth:`load` would load, without loading it."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(self._context(), fd)
            if rc < 0:
                raise SeccompError(BASE, f"exporting the filter: {_strerror(rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Free the context (this process's copy: a forked child keeps its own)."""
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
