"""The few C types and libraries runlog calls the kernel with, from ``_ctypes``.

:mod:`ctypes` is a Python module over the C module ``_ctypes``; importing
it (with :mod:`struct` and its big- and little-endian structure classes,
several dozen types and a trial callback) costs ``runlog create``'s
monitor about 0.7 ms more than ``_ctypes`` alone, before it can act. The
init's system calls (namespaces, mounts, pivot_root, prctl, capabilities,
clone3) need only what is here, which is what :mod:`ctypes` itself defines
on Linux, from the same C classes:

* ``c_int``, ``c_uint``, ``c_long``, ``c_ulong``, ``c_char``: direct
  subclasses of ``_SimpleCData`` with ctypes' type codes, so a function
  returning one gives a Python int, as with ctypes' own; ``c_size_t``
  and ``c_uint64`` are ``c_ulong``, and ``c_uint32`` is ``c_uint``, as
  ctypes aliases them on LP64 Linux;
* :class:`Library`: a handle of the running program (libc and the
  interpreter) whose attributes are its functions, as ``ctypes.CDLL(None,
  use_errno=True)``, ``ctypes.PyDLL(None, use_errno=True)`` and
  ``ctypes.pythonapi`` give them: ``int`` results by default, a per-thread
  errno for :func:`get_errno`;
* ``Structure``, ``byref``, ``sizeof``, ``get_errno``, and arrays as
  ``c_uint * 2``: the C module's own.

What needs more of ctypes (libseccomp, BPF programs) loads ctypes itself,
only for the containers that need it; objects of both work together, being
of the same C classes.
"""

from __future__ import annotations

import _ctypes
from _ctypes import Structure, byref, get_errno, sizeof

TYPE_CHECKING = False
if TYPE_CHECKING:
    _Int = _ctypes._SimpleCData[int]
    _Bytes = _ctypes._SimpleCData[bytes]
else:  # the C class is not subscriptable
    _Int = _Bytes = _ctypes._SimpleCData

__all__ = [
    "FUNCFLAGS_LIBC",
    "FUNCFLAGS_PYDLL",
    "Library",
    "Structure",
    "byref",
    "c_char",
    "c_int",
    "c_long",
    "c_size_t",
    "c_uint",
    "c_uint32",
    "c_uint64",
    "c_ulong",
    "create_string_buffer",
    "get_errno",
    "libc",
    "pythonapi",
    "sizeof",
]


class c_int(_Int):  # noqa: N801 (ctypes' names)
    _type_ = "i"


class c_uint(_Int):  # noqa: N801
    _type_ = "I"


class c_long(_Int):  # noqa: N801
    _type_ = "l"


class c_ulong(_Int):  # noqa: N801
    _type_ = "L"


class c_char(_Bytes):  # noqa: N801
    _type_ = "c"


# LP64, as ctypes chooses its aliases by size on Linux.
c_size_t = c_ulong
c_uint64 = c_ulong
c_uint32 = c_uint


def create_string_buffer(size: int) -> _ctypes.Array[c_char]:
    """``size`` zero bytes of C memory (``ctypes.create_string_buffer(size)``)."""
    return (c_char * size)()


class Library:
    """The running program's symbols, looked up on first use as attributes.

    ``flags``: the C module's FUNCFLAG_* for every function: errno kept
    for :func:`get_errno` (FUNCFLAG_USE_ERRNO), the interpreter lock held
    during the call and Python errors checked after it (FUNCFLAG_PYTHONAPI).
    """

    def __init__(self, flags: int) -> None:
        # None: the program itself, with what it links (typeshed wants a path).
        self._handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]

        class Function(_ctypes.CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._function = Function

    def __getattr__(self, name: str) -> _ctypes.CFuncPtr:
        if name.startswith("__"):
            raise AttributeError(name)
        # (name, library): the C class reads the library's _handle, as a CDLL's.
        function = self._function((name, self))  # type: ignore[arg-type]
        setattr(self, name, function)  # looked up once, as ctypes caches it
        return function


_CDECL = _ctypes.FUNCFLAG_CDECL
#: As ``ctypes.CDLL(None, use_errno=True)``: the interpreter lock released during calls.
FUNCFLAGS_LIBC = _CDECL | _ctypes.FUNCFLAG_USE_ERRNO
#: As ``ctypes.PyDLL(None, use_errno=True)``: the interpreter lock held during calls.
FUNCFLAGS_PYDLL = FUNCFLAGS_LIBC | _ctypes.FUNCFLAG_PYTHONAPI
libc = Library(FUNCFLAGS_LIBC)
#: The interpreter's C API (``ctypes.pythonapi``).
pythonapi = Library(_CDECL | _ctypes.FUNCFLAG_PYTHONAPI)
