"""Device rules on cgroup v2: the v1 controller's list, emulated, as an eBPF program.

cgroup v2 has no devices controller: a ``BPF_PROG_TYPE_CGROUP_DEVICE``
program attached to the cgroup decides each open and mknod of a device
node. runlog builds that program as runc does (libcontainer's devices
emulator and devicefilter):

1. :class:`Emulator` applies the ``linux.resources.devices`` rules in order
   with the v1 controller's semantics (kernel cgroup-v1/devices.rst): a
   rule of type ``a`` resets the default (allow or deny everything) and
   clears the exceptions; any other rule adds or removes an exception.
   Removing part of a wildcard exception is an error, as in runc: v1 would
   silently keep the wildcard, and the rules would not mean what they say.
2. :func:`program` turns the default and the exceptions into instructions:
   the context's device type, access, major and minor into R2-R5, one block
   per exception that returns the non-default verdict when it matches, and
   the default verdict at the end.

:mod:`engine.linux.bpf` loads and attaches the result.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING

from engine.cgroups.errors import CgroupError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.cgroups.resources import DeviceRule

__all__ = ["Emulator", "emulate", "program"]

# <linux/bpf.h>: struct bpf_cgroup_dev_ctx's access_type is
# (access << 16) | type.
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}

#: (type, major, minor); ``None`` is "any".
Key = tuple[str, "int | None", "int | None"]


class Emulator:
    """The v1 devices list a sequence of rules leaves (runc devices.Emulator)."""

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict[Key, frozenset[str]] = {}

    def apply(self, rule: DeviceRule) -> None:
        access = frozenset(rule.access)
        if not access <= frozenset("rwm"):
            raise CgroupError(
                f"device rule {rule.v1_line()!r}: access must be letters of 'rwm'",
                controller="devices",
            )
        if rule.type == "a":
            self.default_allow = rule.allow
            self.exceptions = {}
            return
        if rule.type not in _TYPES:
            raise CgroupError(
                f"device rule {rule.v1_line()!r}: type must be a, b or c", controller="devices"
            )
        key: Key = (rule.type, rule.major, rule.minor)
        # An allow adds an exception to a default deny and lifts one from a
        # default allow; a deny the other way round.
        if rule.allow != self.default_allow:
            self.exceptions[key] = self.exceptions.get(key, frozenset()) | access
        else:
            self._remove(key, access, rule)

    def _remove(self, key: Key, access: frozenset[str], rule: DeviceRule) -> None:
        kind, major, minor = key
        for wider in ((kind, None, minor), (kind, major, None), (kind, None, None)):
            if wider == key:
                continue
            if self.exceptions.get(wider, frozenset()) & access:
                shown = f"{kind} {'*' if wider[1] is None else wider[1]}:"
                shown += "*" if wider[2] is None else str(wider[2])
                raise CgroupError(
                    f"device rule {rule.v1_line()!r} cannot punch a hole in the wider "
                    f"rule {shown!r} (the v1 controller would ignore it); list the "
                    "devices to allow one by one instead",
                    controller="devices",
                )
        left = self.exceptions.get(key, frozenset()) - access
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def sorted_exceptions(self) -> list[tuple[Key, frozenset[str]]]:
        def order(item: tuple[Key, frozenset[str]]) -> tuple[str, int, int]:
            (kind, major, minor), _ = item
            return kind, -1 if major is None else major, -1 if minor is None else minor

        return sorted(self.exceptions.items(), key=order)


def emulate(rules: Iterable[DeviceRule]) -> Emulator:
    emulator = Emulator()
    for rule in rules:
        emulator.apply(rule)
    return emulator


# eBPF opcodes (<linux/bpf_common.h>, <linux/bpf.h>).
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K (32-bit)
_ALU_RSH_K = 0x74
_ALU_MOV_K = 0xB4
_ALU_MOV_X = 0xBC
_JMP_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JMP_JNE_X = 0x5D
_JMP_EXIT = 0x95
_NEXT = "next"  # a jump to the next block


def program(rules: Iterable[DeviceRule]) -> bytes:
    """The device program for ``rules``: instructions as the kernel reads them."""
    emulator = emulate(rules)
    verdict = 0 if emulator.default_allow else 1  # what an exception decides
    # (opcode, dst, src, offset or _NEXT, imm); R1 is the context.
    header: list[tuple[int, int, int, int, int]] = [
        (_LDX_MEM_W, 2, 1, 0, 0),  # R2 = access_type
        (_ALU_AND_K, 2, 0, 0, 0xFFFF),  # R2 = device type
        (_LDX_MEM_W, 3, 1, 0, 0),
        (_ALU_RSH_K, 3, 0, 0, 16),  # R3 = requested access
        (_LDX_MEM_W, 4, 1, 4, 0),  # R4 = major
        (_LDX_MEM_W, 5, 1, 8, 0),  # R5 = minor
    ]
    blocks: list[list[tuple[int, int, int, int | str, int]]] = []
    for (kind, major, minor), access in emulator.sorted_exceptions():
        block: list[tuple[int, int, int, int | str, int]] = [
            (_JMP_JNE_K, 2, 0, _NEXT, _TYPES[kind])
        ]
        mask = sum(_ACCESS[a] for a in access)
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE:
            # Every access asked for must be in the exception's.
            block += [
                (_ALU_MOV_X, 1, 3, 0, 0),
                (_ALU_AND_K, 1, 0, 0, mask),
                (_JMP_JNE_X, 1, 3, _NEXT, 0),
            ]
        if major is not None:
            block.append((_JMP_JNE_K, 4, 0, _NEXT, _imm(major, "major")))
        if minor is not None:
            block.append((_JMP_JNE_K, 5, 0, _NEXT, _imm(minor, "minor")))
        block += [(_ALU_MOV_K, 0, 0, 0, verdict), (_JMP_EXIT, 0, 0, 0, 0)]
        blocks.append(block)
    out = bytearray()
    for insn in header:
        out += _encode(*insn)
    pc = len(header)
    for block in blocks:
        end = pc + len(block)  # where the next block starts
        for i, (code, dst, src, off, imm) in enumerate(block):
            jump = end - (pc + i + 1) if off == _NEXT else off
            assert isinstance(jump, int)
            out += _encode(code, dst, src, jump, imm)
        pc = end
    out += _encode(_ALU_MOV_K, 0, 0, 0, 1 - verdict)  # the default
    out += _encode(_JMP_EXIT, 0, 0, 0, 0)
    return bytes(out)


def _imm(number: int, what: str) -> int:
    # The kernel compares the zero-extended 32-bit field with the immediate
    # sign-extended to 64 bits, so only numbers below 2**31 can match. No
    # device has more: majors are below 2**12 and minors below 2**20.
    if not 0 <= number < 1 << 31:
        raise CgroupError(
            f"device {what} {number}: out of range (no device has a {what} of 2**31 or more)",
            controller="devices",
        )
    return number


def _encode(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    # struct bpf_insn: code, dst_reg:4 and src_reg:4 (bitfields, in the
    # byte order's bit order), off, imm.
    regs = (src << 4) | dst if sys.byteorder == "little" else (dst << 4) | src
    return struct.pack("=BBhi", code, regs, off, imm)
