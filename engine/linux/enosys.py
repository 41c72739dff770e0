"""The -ENOSYS stub runc puts in front of a seccomp filter (libcontainer/seccomp/patchbpf).

A profile lists the syscalls its author knew. A syscall added to the kernel
later gets the profile's default action - typically ERRNO(EPERM) - and a
program that tries the new call and falls back to an old one on ENOSYS
(glibc's clone3, for one) fails instead of falling back. Like runc, runlog
answers ENOSYS, before the filter proper, for every syscall number greater
than the greatest the profile names for that architecture: the kernel cannot
have a syscall the profile's author did not know of but numbered below one
they did (runc's approximation, with its known exception: close_range was
numbered out of order).

The stub is classic BPF over ``struct seccomp_data`` (nr at 0, arch at 4)::

    ld [4]                      ; the architecture
    jeq ARCH_1, section_1       ; one per architecture of the profile
    ...
    ja filter                   ; any other: the filter decides (its bad-arch action)
  section_i:
    ld [0]                      ; the syscall number
    jeq 0, enosys               ; s390(x) only: unknown large numbers arrive as 0
    jset X32_BIT, ...           ; x86_64: x32 calls have bit 30 set
    jgt LAST, enosys
    ja filter
  enosys:
    ret ERRNO(ENOSYS)
  filter:                       ; libseccomp's program, as exported

It is added only when the default action would refuse (not ALLOW, LOG or
TRACE) and is not already ERRNO(ENOSYS), as in runc.
"""

from __future__ import annotations

import struct

__all__ = ["AUDIT_ARCH_X86_64", "RET_ERRNO_ENOSYS", "X32_BIT", "stub"]

AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_S390 = (0x00000016, 0x80000016)  # s390, s390x
X32_BIT = 0x40000000
RET_ERRNO_ENOSYS = 0x00050000 | 38  # SECCOMP_RET_ERRNO | ENOSYS

# Classic BPF opcodes (<linux/bpf_common.h>).
_LD_W_ABS = 0x20
_JA = 0x05
_JEQ_K = 0x15
_JGT_K = 0x25
_JSET_K = 0x45
_RET_K = 0x06

_ENOSYS = "enosys"
_FILTER = "filter"

# An instruction (opcode, jt, jf, k), where jt/jf/k may name a label, or a
# label itself: ("label", name).
_Item = tuple[int, "int | str", "int | str", "int | str"] | tuple[str, str]


def stub(last: dict[int, dict[str, int]]) -> bytes:
    """The stub for ``last``: audit architecture -> {mode: greatest syscall
    number the profile names}, mode ``"x32"`` for x86_64's x32 ABI and
    ``""`` otherwise. Instructions as the kernel reads them."""
    header: list[_Item] = [(_LD_W_ABS, 0, 0, 4)]
    body: list[_Item] = []
    for n, (arch, modes) in enumerate(last.items()):
        header.append((_JEQ_K, f"arch-{n}", 0, arch))
        body += [("label", f"arch-{n}"), *_section(arch, modes, f"arch-{n}")]
    header.append((_JA, 0, 0, _FILTER))
    return _assemble([*header, *body, ("label", _ENOSYS), (_RET_K, 0, 0, RET_ERRNO_ENOSYS)])


def _section(arch: int, modes: dict[str, int], name: str) -> list[_Item]:
    out: list[_Item] = [(_LD_W_ABS, 0, 0, 0)]
    if arch in _AUDIT_S390:
        out.append((_JEQ_K, _ENOSYS, 0, 0))
    if arch == AUDIT_ARCH_X86_64 and len(modes) == 2:
        out += [
            (_JSET_K, f"{name}-x32", 0, X32_BIT),
            (_JGT_K, _ENOSYS, 0, modes[""]),
            (_JA, 0, 0, _FILTER),
            ("label", f"{name}-x32"),
            (_JGT_K, _ENOSYS, 0, modes["x32"]),
        ]
    elif arch == AUDIT_ARCH_X86_64:
        # One of the two ABIs in the profile: the other one's calls go
        # straight to the filter.
        other = f"{name}-other"
        if "x32" in modes:
            out += [(_JSET_K, 0, other, X32_BIT), (_JGT_K, _ENOSYS, 0, modes["x32"])]
        else:
            out += [(_JSET_K, other, 0, X32_BIT), (_JGT_K, _ENOSYS, 0, modes[""])]
        out.append(("label", other))
    else:
        out.append((_JGT_K, _ENOSYS, 0, modes[""]))
    out.append((_JA, 0, 0, _FILTER))
    return out


def _assemble(items: list[_Item]) -> bytes:
    """Lay out ``items``; a jump to a label counts from the next
    instruction, as in BPF; ``filter`` is the instruction after the stub."""
    where: dict[str, int] = {}
    pc = 0
    for item in items:
        if item[0] == "label":
            where[str(item[1])] = pc
        else:
            pc += 1
    where[_FILTER] = pc
    out = bytearray()
    pc = 0
    for item in items:
        if item[0] == "label":
            continue
        op, *fields = item
        resolved = [f if isinstance(f, int) else where[f] - pc - 1 for f in fields]
        jt, jf, k = resolved
        if not (0 <= jt <= 255 and 0 <= jf <= 255 and k >= 0):
            raise ValueError(f"seccomp stub: a jump out of range at instruction {pc}")
        out += struct.pack("=HBBI", op, jt, jf, k)
        pc += 1
    return bytes(out)
