"""Reading and writing cgroupfs files, with errors that say what to do.

A cgroupfs write is handed to the kernel in one ``write(2)``, and the
kernel answers with an errno that means something specific to cgroups
(kernel Documentation/admin-guide/cgroup-v1/, cgroup-v2.rst): EINVAL the
value was refused, ENOENT the file does not exist (controller not mounted
or not enabled, cgroup gone), EBUSY the cgroup still has processes or
children, ESRCH no such process. Files are opened without O_CREAT, so a
missing interface file is an error and never silently becomes a plain file.
"""

from __future__ import annotations

import errno
import os
import time

from engine.cgroups.errors import CgroupError

__all__ = [
    "MAX_UINT64",
    "cgroup_procs",
    "read_int",
    "read_keyed",
    "read_limit",
    "read_text",
    "remove_tree",
    "subtree_procs",
    "try_write",
    "undo_mkdirs",
    "write",
]

# What runc reports for a v2 "max" (libcontainer/cgroups/fscommon: math.MaxUint64).
MAX_UINT64 = 2**64 - 1

# runc RemovePaths: 5 attempts, 10 ms first delay, doubled each time. The
# kernel releases an emptied cgroup asynchronously, so a rmdir right after
# the last task exits can see EBUSY.
_RMDIR_ATTEMPTS = 5
_RMDIR_FIRST_DELAY = 0.01


def _hint(err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return "no such file or directory (cgroup removed, or controller not mounted/enabled)"
    if err.errno == errno.EINVAL:
        return "the kernel refused the value (invalid argument)"
    if err.errno == errno.EBUSY:
        return "busy (the cgroup still has processes or child cgroups)"
    if err.errno == errno.ESRCH:
        return "no such process"
    if err.errno in (errno.EPERM, errno.EACCES):
        return "permission denied (runlog needs root, or a delegated cgroup)"
    return err.strerror or str(err)


def write(directory: str, name: str, value: str, *, controller: str) -> None:
    """Write ``value`` to ``directory/name`` in a single write(2)."""
    path = os.path.join(directory, name)
    data = value.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        raise CgroupError(
            f"cannot write {value!r} to {path}: {_hint(err)}", path=path, controller=controller
        ) from err
    if written != len(data):
        raise CgroupError(
            f"short write of {value!r} to {path} ({written} of {len(data)} bytes)",
            path=path,
            controller=controller,
        )


def try_write(directory: str, name: str, value: str, *, controller: str) -> bool:
    """``write`` for undoing after a failure: report, do not raise."""
    try:
        write(directory, name, value, controller=controller)
    except CgroupError:
        return False
    return True


def undo_mkdirs(made: list[str]) -> None:
    """Remove the directories a failed create made, deepest first; what
    cannot be removed is left (the original error matters more)."""
    for directory in reversed(made):
        try:
            os.rmdir(directory)
        except OSError:
            continue


def read_text(directory: str, name: str, *, controller: str) -> str:
    """The file's text (ASCII, as the kernel writes these files). Read at
    the os level: a Python text file costs five more syscalls a read, and
    its first opening imports the ASCII codec from disk."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as err:
        raise CgroupError(
            f"cannot read {path}: {_hint(err)}", path=path, controller=controller
        ) from err
    return b"".join(chunks).decode("ascii", "replace")


def read_int(directory: str, name: str, *, controller: str) -> int:
    text = read_text(directory, name, controller=controller).strip()
    try:
        return int(text)
    except ValueError:
        path = os.path.join(directory, name)
        raise CgroupError(
            f"{path}: expected a number, read {text!r}", path=path, controller=controller
        ) from None


def read_limit(directory: str, name: str, *, controller: str, unlimited: int) -> int:
    """A number, or ``unlimited`` where the file says "max" (cgroup v2 and pids.max)."""
    text = read_text(directory, name, controller=controller).split()
    if text and text[0] == "max":
        return unlimited
    try:
        return int(text[0])
    except (IndexError, ValueError):
        path = os.path.join(directory, name)
        raise CgroupError(
            f"{path}: expected a number or 'max', read {' '.join(text)!r}",
            path=path,
            controller=controller,
        ) from None


def read_keyed(directory: str, name: str, *, controller: str) -> dict[str, int]:
    """A flat keyed file (``key value`` per line: memory.stat, cpu.stat, ...)."""
    values: dict[str, int] = {}
    for line in read_text(directory, name, controller=controller).splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def cgroup_procs(directory: str, *, controller: str) -> list[int]:
    """The pids in one cgroup (not its descendants)."""
    return [
        int(line)
        for line in read_text(directory, "cgroup.procs", controller=controller).split()
        if line.isdigit()
    ]


def subtree_procs(directory: str, *, controller: str) -> list[int]:
    """The pids in a cgroup and all its descendants (runc ``GetAllPids``),
    sorted; a cgroup that vanishes during the walk is skipped."""
    pids: set[int] = set()
    pids.update(cgroup_procs(directory, controller=controller))
    for dirpath, dirnames, _files in os.walk(directory):
        for sub in dirnames:
            try:
                pids.update(cgroup_procs(os.path.join(dirpath, sub), controller=controller))
            except CgroupError:
                continue
    return sorted(pids)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie or dead (proc(5) stat, state field)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def _rmdir(path: str, *, controller: str) -> None:
    delay = _RMDIR_FIRST_DELAY
    for attempt in range(_RMDIR_ATTEMPTS):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            pids: list[int] = []
            if err.errno == errno.EBUSY:
                try:
                    pids = cgroup_procs(path, controller=controller)
                except CgroupError:
                    pids = []
            # Retry only while what holds the cgroup is on its way out; a
            # live process will not leave by waiting, and nothing is killed here.
            lingering = err.errno == errno.EBUSY and not any(_running(p) for p in pids)
            if not lingering or attempt == _RMDIR_ATTEMPTS - 1:
                busy = f"; processes still in it: {' '.join(map(str, pids))}" if pids else ""
                raise CgroupError(
                    f"cannot remove cgroup {path}: {_hint(err)}{busy}; stop the "
                    "container's processes (runlog kill) and delete again",
                    path=path,
                    controller=controller,
                ) from err
        time.sleep(delay)
        delay *= 2


def remove_tree(directory: str, *, controller: str) -> None:
    """rmdir a cgroup and its descendants, leaf first. Kills nothing; a
    cgroup already gone is fine (delete must be idempotent)."""
    try:
        # The usual case first: no child cgroup, no process left in it.
        os.rmdir(directory)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # children, processes, a cgroup the kernel still releases: below
    if not os.path.isdir(directory):
        return
    for dirpath, _dirnames, _files in os.walk(directory, topdown=False):
        _rmdir(dirpath, controller=controller)
