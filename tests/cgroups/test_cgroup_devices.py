"""Device rules on cgroup v2: the emulated v1 list, the eBPF program, the kernel.

The program is checked three ways: the emulator against the v1
controller's documented semantics; the instructions, run by a small eBPF
interpreter here, against the emulator's list for random rule sets; and
the loaded program against the kernel, which lets a process in the cgroup
open, or not, real device nodes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cgroups import V2Manager
from engine.cgroups.devices import (
    ACC_MKNOD,
    ACC_READ,
    ACC_WRITE,
    DEV_BLOCK,
    DEV_CHAR,
    Emulator,
    emulate,
    program,
)
from engine.cgroups.errors import CgroupError
from engine.cgroups.resources import DeviceRule, Resources

UNIFIED = "/sys/fs/cgroup/unified"

# runc's default: deny everything, then the standard nodes.
RUNC_LIKE = (
    DeviceRule(allow=False),
    DeviceRule(True, "c", 1, 3, "rwm"),
    DeviceRule(True, "c", 136, None, "rw"),
)


def _exceptions(emulator: Emulator) -> dict[tuple[str, int | None, int | None], str]:
    return {key: "".join(sorted(access)) for key, access in emulator.exceptions.items()}


# -- the emulator ----------------------------------------------------------------------


def test_deny_all_then_allows_is_an_allow_list() -> None:
    emulator = emulate(RUNC_LIKE)
    assert emulator.default_allow is False
    assert _exceptions(emulator) == {("c", 1, 3): "mrw", ("c", 136, None): "rw"}


def test_an_a_rule_resets_the_default_and_the_exceptions() -> None:
    emulator = emulate((*RUNC_LIKE, DeviceRule(allow=True)))
    assert (emulator.default_allow, emulator.exceptions) == (True, {})


def test_allow_then_deny_takes_access_away() -> None:
    rules = (*RUNC_LIKE, DeviceRule(False, "c", 1, 3, "w"))
    assert _exceptions(emulate(rules))[("c", 1, 3)] == "mr"
    rules = (*rules, DeviceRule(False, "c", 1, 3, "rm"))
    assert ("c", 1, 3) not in emulate(rules).exceptions


def test_in_a_deny_list_a_deny_is_an_exception_and_an_allow_lifts_it() -> None:
    rules = (DeviceRule(allow=True), DeviceRule(False, "b", 8, None, "rw"))
    emulator = emulate(rules)
    assert (emulator.default_allow, _exceptions(emulator)) == (True, {("b", 8, None): "rw"})
    assert emulate((*rules, DeviceRule(True, "b", 8, None, "rw"))).exceptions == {}


def test_a_hole_in_a_wider_rule_is_refused() -> None:
    rules = (*RUNC_LIKE, DeviceRule(False, "c", 136, 2, "r"))
    with pytest.raises(CgroupError, match=r"c 136:2 r.*wider rule 'c 136:\*'"):
        emulate(rules)


@pytest.mark.parametrize(
    ("rule", "match"),
    [(DeviceRule(True, "p", 1, 1, "r"), "type must be"), (DeviceRule(True, "c", 1, 1, "x"), "rwm")],
)
def test_bad_rules_are_named(rule: DeviceRule, match: str) -> None:
    with pytest.raises(CgroupError, match=match) as caught:
        emulate((rule,))
    assert caught.value.controller == "devices"


# -- the program, run here -----------------------------------------------------------


def _run(code: bytes, kind: int, access: int, major: int, minor: int) -> int:
    """Interpret the opcodes the program uses, over struct bpf_cgroup_dev_ctx."""
    ctx = struct.pack("=III", (access << 16) | kind, major, minor)
    regs = [0] * 11
    pc = 0
    mask32 = 0xFFFFFFFF
    while True:
        op, reg_byte, off, imm = struct.unpack_from("=BBhi", code, pc * 8)
        dst, src = reg_byte & 0xF, reg_byte >> 4
        pc += 1
        if op == 0x61:  # dst = *(u32 *)(ctx + off)
            assert src == 1
            regs[dst] = struct.unpack_from("=I", ctx, off)[0]
        elif op == 0x54:
            regs[dst] = (regs[dst] & imm) & mask32
        elif op == 0x74:
            regs[dst] = (regs[dst] & mask32) >> imm
        elif op == 0xB4:
            regs[dst] = imm & mask32
        elif op == 0xBC:
            regs[dst] = regs[src] & mask32
        elif op == 0x55:  # 64-bit compare with the sign-extended immediate
            if regs[dst] != imm & 0xFFFFFFFFFFFFFFFF:
                pc += off
        elif op == 0x5D:
            if regs[dst] != regs[src]:
                pc += off
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


def _reference(emulator: Emulator, kind: str, access: str, major: int, minor: int) -> bool:
    for (t, ma, mi), allowed in emulator.exceptions.items():
        if t == kind and ma in (None, major) and mi in (None, minor) and set(access) <= allowed:
            return not emulator.default_allow
    return emulator.default_allow


_ACCESS = {"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}
_numbers = st.one_of(st.none(), st.integers(0, 3))
_rules = st.builds(
    DeviceRule,
    allow=st.booleans(),
    type=st.sampled_from(["a", "b", "c", "c", "c"]),
    major=_numbers,
    minor=_numbers,
    access=st.sets(st.sampled_from("rwm"), min_size=1).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(_rules, max_size=8))
def test_the_program_decides_as_the_emulated_list(rules: list[DeviceRule]) -> None:
    try:
        emulator = emulate(rules)
    except CgroupError:
        return  # a hole in a wider rule: refused before any program exists
    code = program(rules)
    for kind, kind_id in (("c", DEV_CHAR), ("b", DEV_BLOCK)):
        for access in ("r", "w", "m", "rw"):
            for major in range(4):
                for minor in range(4):
                    bits = sum(_ACCESS[a] for a in access)
                    got = _run(code, kind_id, bits, major, minor)
                    assert got == int(_reference(emulator, kind, access, major, minor))


def test_numbers_up_to_the_kernels_immediate_range() -> None:
    code = program((DeviceRule(allow=False), DeviceRule(True, "c", 2**31 - 1, 1, "r")))
    assert _run(code, DEV_CHAR, ACC_READ, 2**31 - 1, 1) == 1
    assert _run(code, DEV_CHAR, ACC_READ, 2**31 - 2, 1) == 0
    # Beyond it the kernel's sign-extended compare could never match.
    with pytest.raises(CgroupError, match="out of range"):
        program((DeviceRule(True, "c", 2**31, 1, "r"),))


# -- the kernel ----------------------------------------------------------------------


@pytest.fixture
def v2_cgroup() -> Iterator[V2Manager]:
    if os.geteuid() != 0 or not os.path.exists(os.path.join(UNIFIED, "cgroup.procs")):
        pytest.skip("needs root and the cgroup2 tree at " + UNIFIED)
    manager = V2Manager(f"{UNIFIED}/runlog-test-dev-{uuid.uuid4().hex[:8]}", mount=UNIFIED)
    manager.create()
    yield manager
    manager.destroy()
    assert not manager.exists()


def _try_devices(manager: V2Manager, tmp: str) -> list[str]:
    """A process forked into the cgroup opens and makes device nodes."""
    script = (
        "import os\n"
        "from engine.linux.clone import fork_into_cgroup, open_cgroup\n"
        f"pid = fork_into_cgroup(open_cgroup({manager.path!r}))\n"
        "assert pid is not None\n"
        "if pid == 0:\n"
        "    out = []\n"
        "    for path, flags in (('/dev/null', os.O_RDWR), ('/dev/zero', os.O_RDONLY),\n"
        "                        ('/dev/zero', os.O_WRONLY), ('/dev/full', os.O_RDONLY)):\n"
        "        try:\n"
        "            os.close(os.open(path, flags)); out.append('ok')\n"
        "        except OSError as err:\n"
        "            out.append(os.strerror(err.errno))\n"
        "    for name, minor in (('null', 3), ('full', 7)):\n"
        "        node = os.path.join(" + repr(tmp) + ", name)\n"
        "        try:\n"
        "            os.mknod(node, 0o600 | 0o020000, os.makedev(1, minor)); out.append('ok')\n"
        "        except OSError as err:\n"
        "            out.append(os.strerror(err.errno))\n"
        "    print(*out, sep=',', flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    code = f"import sys; sys.path[:0] = {sys.path!r}\n{script}"
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    for name in ("null", "full"):
        if os.path.exists(os.path.join(tmp, name)):
            os.unlink(os.path.join(tmp, name))
    return out.stdout.strip().split(",")


@pytest.mark.root
def test_the_kernel_enforces_the_rules(v2_cgroup: V2Manager, tmp_path: object) -> None:
    from engine.linux.bpf import attached_programs

    tmp = str(tmp_path)
    assert _try_devices(v2_cgroup, tmp) == ["ok"] * 6  # no program yet
    rules = (
        DeviceRule(allow=False),
        DeviceRule(True, "c", 1, 3, "rwm"),  # null
        DeviceRule(True, "c", 1, 5, "r"),  # zero, read only
    )
    v2_cgroup.apply(Resources(devices=rules))
    denied = "Operation not permitted"
    assert _try_devices(v2_cgroup, tmp) == ["ok", "ok", denied, denied, "ok", denied]
    # New rules replace the old program: one program, the new decisions.
    v2_cgroup.apply(Resources(devices=(DeviceRule(allow=True), DeviceRule(False, "c", 1, 3))))
    fd = os.open(v2_cgroup.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(attached_programs(fd)) == 1
    finally:
        os.close(fd)
    assert _try_devices(v2_cgroup, tmp) == [denied, "ok", "ok", "ok", denied, "ok"]
