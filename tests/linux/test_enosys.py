"""The -ENOSYS stub in front of a seccomp filter (engine.linux.enosys), as runc's patchbpf.

The stub is run here by a small classic-BPF interpreter over struct
seccomp_data, with a stand-in filter after it that allows everything, so
each case shows whether the stub answered ENOSYS or let the filter decide;
then a real filter is loaded into a forked child and the kernel answers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable

import pytest

from engine.linux.enosys import AUDIT_ARCH_X86_64, RET_ERRNO_ENOSYS, X32_BIT, stub
from engine.linux.seccomp import ACTIONS, plan

I386 = 0x40000003
S390X = 0x80000016
ALLOW = ACTIONS["SCMP_ACT_ALLOW"]
FILTER = "filter"
ENOSYS = "ENOSYS"


def _run(program: bytes, arch: int, nr: int) -> str:
    """Run ``program`` followed by ``ret ALLOW`` on (nr, arch)."""
    code = program + struct.pack("=HBBI", 0x06, 0, 0, ALLOW)
    data = struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *([0] * 6))
    acc = 0
    pc = 0
    while True:
        op, jt, jf, k = struct.unpack_from("=HBBI", code, pc * 8)
        pc += 1
        if op == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x05:
            pc += k
        elif op in (0x15, 0x25, 0x45):
            hit = {0x15: acc == k, 0x25: acc > k, 0x45: bool(acc & k)}[op]
            pc += jt if hit else jf
        elif op == 0x06:
            return {RET_ERRNO_ENOSYS: ENOSYS, ALLOW: FILTER}.get(k, hex(k))
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc - 1}")


def test_newer_than_the_profile_is_enosys() -> None:
    program = stub({AUDIT_ARCH_X86_64: {"": 300}})
    assert _run(program, AUDIT_ARCH_X86_64, 301) == ENOSYS
    assert _run(program, AUDIT_ARCH_X86_64, 435) == ENOSYS
    assert _run(program, AUDIT_ARCH_X86_64, 300) == FILTER
    assert _run(program, AUDIT_ARCH_X86_64, 0) == FILTER
    # x32 calls (bit 30) are not this profile's: the filter decides.
    assert _run(program, AUDIT_ARCH_X86_64, X32_BIT | 500) == FILTER
    # Neither is an architecture the profile does not name.
    assert _run(program, I386, 500) == FILTER


def test_x32_and_x86_64_each_have_their_own_last_syscall() -> None:
    program = stub({AUDIT_ARCH_X86_64: {"": 300, "x32": X32_BIT | 200}})
    assert _run(program, AUDIT_ARCH_X86_64, X32_BIT | 201) == ENOSYS
    assert _run(program, AUDIT_ARCH_X86_64, X32_BIT | 200) == FILTER
    assert _run(program, AUDIT_ARCH_X86_64, 250) == FILTER
    assert _run(program, AUDIT_ARCH_X86_64, 301) == ENOSYS


def test_x32_alone_leaves_x86_64_calls_to_the_filter() -> None:
    program = stub({AUDIT_ARCH_X86_64: {"x32": X32_BIT | 200}})
    assert _run(program, AUDIT_ARCH_X86_64, 400) == FILTER
    assert _run(program, AUDIT_ARCH_X86_64, X32_BIT | 201) == ENOSYS


def test_s390x_multiplexed_zero_is_enosys() -> None:
    program = stub({S390X: {"": 400}})
    assert _run(program, S390X, 0) == ENOSYS
    assert _run(program, S390X, 401) == ENOSYS
    assert _run(program, S390X, 5) == FILTER


def test_each_architecture_its_own_section() -> None:
    program = stub({AUDIT_ARCH_X86_64: {"": 300}, I386: {"": 380}})
    assert _run(program, I386, 381) == ENOSYS
    assert _run(program, I386, 350) == FILTER
    assert _run(program, AUDIT_ARCH_X86_64, 350) == ENOSYS


def test_no_architecture_no_stub_effect() -> None:
    program = stub({})
    assert _run(program, AUDIT_ARCH_X86_64, 10_000) == FILTER


@pytest.mark.parametrize(
    ("default", "wanted"),
    [
        ({"defaultAction": "SCMP_ACT_ERRNO"}, True),
        ({"defaultAction": "SCMP_ACT_KILL_PROCESS"}, True),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS}, False),
        ({"defaultAction": "SCMP_ACT_ALLOW"}, False),
        ({"defaultAction": "SCMP_ACT_LOG"}, False),
        ({"defaultAction": "SCMP_ACT_TRACE"}, False),
    ],
)
def test_the_stub_only_where_the_default_refuses(default: dict[str, object], wanted: bool) -> None:
    rule = {"names": ["getpid"], "action": "SCMP_ACT_KILL"}
    got = plan({**default, "syscalls": [rule]})
    assert got is not None
    assert got.wants_enosys_stub() is wanted


# -- the kernel ----------------------------------------------------------------------

_ACCT = 163  # x86_64: named nowhere in the test profile, below its last syscall
_PIDFD_OPEN = 434  # newer than anything the profile names


def _in_child(body: Callable[[], str]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            text = body()
        except BaseException as err:
            text = f"{type(err).__name__}: {err}"
        os.write(write_end, text.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        text = reader.read().decode()
    os.waitpid(pid, 0)
    return text


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")
def test_the_kernel_answers_enosys_for_newer_syscalls() -> None:
    from engine.linux.libseccomp import Filter

    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    names = []
    for number in range(300):  # every x86_64 syscall below 300, but acct
        name = lib.seccomp_syscall_resolve_num_arch(AUDIT_ARCH_X86_64, number)
        if name and number != _ACCT:
            names.append(ctypes.string_at(name).decode())
            ctypes.CDLL(None).free(ctypes.c_void_p(name))
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    }
    got = plan(profile)
    assert got is not None
    libc = ctypes.CDLL(None, use_errno=True)

    def body() -> str:
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # no_new_privs: any uid may load
        with Filter(got) as built:
            built.load()
        out = []
        for number in (_ACCT, _PIDFD_OPEN):
            ctypes.set_errno(0)
            libc.syscall(number, 0, 0)
            out.append(errno.errorcode[ctypes.get_errno()])
        return " ".join(out)

    assert _in_child(body) == "EPERM ENOSYS"
    # Without the stub (a default that allows), the same program is libseccomp's alone.
    allowing = plan({**profile, "defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})
    assert allowing is not None
    with Filter(allowing) as built:
        assert built.program == built.export_bpf()
