"""Loading a cgroup device program and attaching it to a cgroup2 directory.

The bpf(2) system call through ctypes, for the one program type runlog
loads: ``BPF_PROG_TYPE_CGROUP_DEVICE`` (built by
:mod:`engine.cgroups.devices`). As runc's ``LoadAttachCgroupDeviceFilter``
does, the new program is attached with ``BPF_F_ALLOW_MULTI`` and then the
programs that were there before are detached, so that the cgroup is never
without a filter, and updating the rules replaces them. The attachment
keeps the program alive: the descriptors are closed here, and the kernel
frees the program with the cgroup. Imported only for a config with device
rules on cgroup v2.
"""

from __future__ import annotations

import ctypes
import os
import struct

__all__ = ["BpfError", "attach_device_program", "attached_programs"]

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}

# enum bpf_cmd, bpf_prog_type, bpf_attach_type (<linux/bpf.h>).
_PROG_LOAD = 5
_PROG_ATTACH = 8
_PROG_DETACH = 9
_PROG_GET_FD_BY_ID = 13
_PROG_QUERY = 16
_PROG_TYPE_CGROUP_DEVICE = 15
_CGROUP_DEVICE = 6
_F_ALLOW_MULTI = 2
_INSN_SIZE = 8
_LICENSE = b"Apache-2.0"
_NAME = b"runlog_devices"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """bpf(2) refused; ``log`` holds the verifier's words for a refused load."""

    def __init__(self, errno: int, what: str, log: str = "") -> None:
        super().__init__(errno, f"{what}: {os.strerror(errno)}")
        self.log = log


def _bpf(cmd: int, attr: bytes | ctypes.Array[ctypes.c_char], what: str) -> int:
    """bpf(cmd, attr); ``attr`` as a buffer when the kernel writes into it."""
    number = _SYS_BPF.get(os.uname().machine)
    if number is None:
        raise BpfError(38, f"{what}: no bpf(2) number for {os.uname().machine}")  # ENOSYS
    buf = ctypes.create_string_buffer(attr, len(attr)) if isinstance(attr, bytes) else attr
    result = _libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), buf, ctypes.c_uint(len(buf)))
    if result < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(result)


def _load(insns: bytes) -> int:
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(_LICENSE)
    log = ctypes.create_string_buffer(16384)
    # union bpf_attr, the BPF_PROG_LOAD part up to expected_attach_type.
    attr = struct.pack(
        "=IIQQIIQII16sII",
        _PROG_TYPE_CGROUP_DEVICE,
        len(insns) // _INSN_SIZE,
        ctypes.addressof(code),
        ctypes.addressof(license_),
        1,  # log_level: the verifier says why it refuses
        len(log),
        ctypes.addressof(log),
        0,
        0,
        _NAME,
        0,
        0,
    )
    try:
        return _bpf(_PROG_LOAD, attr, "load the device program")
    except BpfError as err:
        err.log = log.value.decode(errors="replace").strip()
        raise


def attached_programs(cgroup_fd: int) -> list[int]:
    """The ids of the device programs attached to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    # BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags,
    # prog_ids, prog_cnt; then a zero tail for fields newer kernels know.
    attr = struct.pack(
        "=IIIIQI12x", cgroup_fd, _CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), len(ids)
    )
    buf = ctypes.create_string_buffer(attr, len(attr))
    _bpf(_PROG_QUERY, buf, "list the cgroup's device programs")
    count = struct.unpack_from("=I", buf.raw, 24)[0]
    return list(ids[: min(count, len(ids))])


def attach_device_program(cgroup_dir: str, insns: bytes) -> None:
    """Load ``insns`` and make it the cgroup's only device program."""
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        before = attached_programs(cgroup_fd)
        prog_fd = _load(insns)
        try:
            attach = struct.pack("=IIIII", cgroup_fd, prog_fd, _CGROUP_DEVICE, _F_ALLOW_MULTI, 0)
            _bpf(_PROG_ATTACH, attach, "attach the device program")
        finally:
            os.close(prog_fd)
        for prog_id in before:
            try:
                old = _bpf(_PROG_GET_FD_BY_ID, struct.pack("=III", prog_id, 0, 0), "find it")
            except BpfError:
                continue  # gone meanwhile
            try:
                detach = struct.pack("=IIIII", cgroup_fd, old, _CGROUP_DEVICE, 0, 0)
                _bpf(_PROG_DETACH, detach, "detach the previous device program")
            finally:
                os.close(old)
    finally:
        os.close(cgroup_fd)
