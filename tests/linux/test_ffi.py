"""engine.linux.ffi: ctypes' types and libraries, from _ctypes alone."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

import pytest

from engine.linux import ffi

_SYS_GETPID = {"x86_64": 39, "aarch64": 172, "ppc64le": 20, "s390x": 20}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ffi.c_int, ctypes.c_int),
        (ffi.c_uint, ctypes.c_uint),
        (ffi.c_long, ctypes.c_long),
        (ffi.c_ulong, ctypes.c_ulong),
        (ffi.c_char, ctypes.c_char),
        (ffi.c_size_t, ctypes.c_size_t),
        (ffi.c_uint32, ctypes.c_uint32),
        (ffi.c_uint64, ctypes.c_uint64),
    ],
)
def test_the_types_are_ctypes_own(ours: type, theirs: type) -> None:
    assert ffi.sizeof(ours) == ctypes.sizeof(theirs)
    assert ours._type_ == theirs._type_  # type: ignore[attr-defined]
    # A value converts both ways as with ctypes: out of range wraps alike.
    for value in (0, 7, -1, 2**40 + 3):
        if ours is ffi.c_char:
            break
        assert ours(value).value == theirs(value).value  # type: ignore[attr-defined]


def test_libc_returns_ints_and_keeps_errno() -> None:
    assert ffi.libc.getpid() == os.getpid()
    assert ffi.libc.close(ffi.c_int(-1)) == -1
    assert ffi.get_errno() == errno.EBADF
    number = _SYS_GETPID.get(os.uname().machine)
    if number is not None:
        lib = ffi.Library(ffi.FUNCFLAGS_LIBC)  # its own: restype is per function object
        lib.syscall.restype = ffi.c_long
        assert lib.syscall(ffi.c_long(number)) == os.getpid()


def test_the_interpreter_lock_is_held_for_the_c_api_and_released_for_libc() -> None:
    # PyGILState_Check: 1 when the calling thread holds the lock.
    assert ffi.pythonapi.PyGILState_Check() == 1
    assert ffi.Library(ffi.FUNCFLAGS_PYDLL).PyGILState_Check() == 1
    assert ffi.libc.PyGILState_Check() == 0


def test_arrays_structures_and_buffers() -> None:
    class Pair(ffi.Structure):
        _fields_ = (("a", ffi.c_uint64), ("b", ffi.c_uint32))

    pair = Pair(a=2**40, b=7)
    assert (pair.a, pair.b, ffi.sizeof(pair)) == (2**40, 7, 16)
    words = (ffi.c_uint32 * 3)(1, 2, 3)
    assert (list(words), ffi.sizeof(words)) == ([1, 2, 3], 12)
    buffer = ffi.create_string_buffer(64)
    assert (ffi.sizeof(buffer), bytes(buffer)) == (64, bytes(64))
    # byref passes a pointer: prctl writes through it.
    signal = ffi.c_int(-1)
    assert ffi.libc.prctl(ffi.c_int(2), ffi.byref(signal), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
    assert signal.value == 0


def test_an_unknown_symbol_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_function_anywhere"):
        ffi.libc.no_such_function_anywhere  # noqa: B018


def test_the_init_s_system_calls_do_without_ctypes() -> None:
    code = (
        "import sys; import engine.linux.syscalls, engine.linux.clone, "
        "engine.linux.caps, engine.linux.identity; print('ctypes' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "False\n", "")
