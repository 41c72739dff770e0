"""Fork a child that is born in a cgroup2 cgroup: clone3(CLONE_INTO_CGROUP).

Moving a process by writing its pid to ``cgroup.procs`` takes the kernel's
global threadgroup lock for writing, and the first writer after a quiet
spell waits for an RCU grace period: 6-20 ms on these hosts, on every
``create``, whoever the caller (runc pays it too). Two ways around it,
both used for the container's init, or its intermediate where it has one
(forked by :mod:`engine.runtime.monitor.spawn`, run by :mod:`engine.runtime.init.stages`):

* cgroup v1: a single-threaded process that writes ``0`` to a hierarchy's
  ``tasks`` file moves itself - its only thread - without that lock
  (Linux 5.2, "cgroup: Optimize single thread migration"); the same write
  to ``cgroup.procs`` waits.
* cgroup2 has no such file: there the child is forked straight into the
  cgroup with clone3's ``CLONE_INTO_CGROUP`` (Linux 5.7), which takes the
  lock only for reading, as every fork does.

Python 3.11 has no clone3. :func:`fork_into_cgroup` makes the system call
through ffi with the interpreter lock held (as ctypes' ``PyDLL``) between
``PyOS_BeforeFork`` and ``PyOS_AfterFork_Child``/``_Parent`` - what
``os.fork`` does around fork(2). What the child misses of glibc's fork:
its thread descriptor keeps the parent's thread id (glibc uses that field
for its own recursive locks, consistently within the process, and asks the
kernel where the real id matters: raise(3) since 2.34), it has no robust
futex list (only robust mutexes, which runlog does not use, need one), and
glibc's pthread_atfork handlers do not run (runlog registers none, and in
a single-threaded caller no libc lock is held). The child should therefore
call only what the container's init calls before its exec, which makes it
whole again; a process it forks with ``os.fork`` is whole too.

Where the kernel refuses - older than 5.7, a seccomp filter that forbids
clone3 (container engines' default profiles answer ENOSYS), a cgroup that
takes no process - :func:`fork_into_cgroup` returns ``None`` and the
caller forks as usual and writes ``cgroup.procs``, which then says what is
wrong, if anything.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import os

from engine.linux import ffi

__all__ = ["CLONE_INTO_CGROUP", "fork_into_cgroup", "open_cgroup"]

CLONE_INTO_CGROUP = 0x200000000
# clone3 has the same number on every architecture of the generic table.
_SYS_CLONE3 = 435

# PyDLL: the interpreter lock stays held during the call, so the child
# comes back from it as the only thread, holding the lock, as from fork(2).
_libc = ffi.Library(ffi.FUNCFLAGS_PYDLL)
_libc.syscall.restype = ffi.c_long
_api = ffi.pythonapi


class _CloneArgs(ffi.Structure):
    # struct clone_args, CLONE_ARGS_SIZE_VER2 (88 bytes): <linux/sched.h>.
    _fields_ = tuple(
        (name, ffi.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    )


def fork_into_cgroup(cgroup_fd: int | None, flags: int = 0) -> int | None:
    """Fork; the child starts in the cgroup2 directory open as ``cgroup_fd``
    (``None``: the parent's) and in new namespaces for the CLONE_NEW* bits
    of ``flags`` (in a new pid namespace, the child is its pid 1).

    Returns 0 in the child and the child's pid in the parent, as
    ``os.fork``; ``None`` (no child) when the kernel refuses.
    """
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(
        flags=flags, exit_signal=int(_signal.SIGCHLD), cgroup=0 if cgroup_fd is None else cgroup_fd
    )
    _api.PyOS_BeforeFork()
    pid = _libc.syscall(ffi.c_long(_SYS_CLONE3), ffi.byref(args), ffi.c_size_t(ffi.sizeof(args)))
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        return None
    return int(pid)


def open_cgroup(directory: str) -> int:
    """A descriptor of a cgroup2 directory for :func:`fork_into_cgroup`."""
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
