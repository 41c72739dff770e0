"""A hook's child, between fork and exec (:mod:`engine.runtime.monitor.hooks` runs it).

It takes its own process group (a timeout kills the group), gets default
signal dispositions and no blocked signal, puts the hook's stdin, stdout
and stderr on 0-2 and closes every other descriptor of the runtime's, joins
the container's namespaces for ``createContainer`` and ``startContainer``
(forking once more where a namespace - pid, time - only applies to
children), and execs the hook: by path, or by the descriptor opened in the
runtime's namespaces. What fails before the exec is written to the report
pipe as ``{"stage": ..., "error": ...}``; after a last fork, the
intermediate process passes the hook's wait status up as ``{"status": N}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal

from engine import jsonfast
from engine.linux import syscalls
from engine.linux.finalize import default_signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

__all__ = ["become"]

# setns into these changes only the namespace of later children, so the
# hook needs one more fork to be in them (setns(2)).
_FOR_CHILDREN = frozenset({"pid", "time"})


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def become(
    path: str,
    exe: int | None,
    argv: list[str],
    env: dict[str, str],
    namespaces: Sequence[tuple[str, int]],
    stdio: tuple[int, int, int],
    report: int,
) -> NoReturn:
    """Become the hook. Never returns: any failure is written to ``report``
    (close-on-exec, so EOF without a record means the exec happened)."""
    stage = "start"
    try:
        os.setpgid(0, 0)
        default_signals()
        report = _above_stdio(report, cloexec=True)
        exe = None if exe is None else _above_stdio(exe, cloexec=False)
        joined = [(name, _above_stdio(fd, cloexec=True)) for name, fd in namespaces]
        lifted = [_above_stdio(fd, cloexec=True) for fd in stdio]
        for target, fd in enumerate(lifted):
            os.dup2(fd, target, inheritable=True)
        keep = {report, *(fd for _name, fd in joined)}
        if exe is not None:
            keep.add(exe)
        _close_all_but(keep)
        if joined:
            stage = "join the container's namespaces"
            _join(joined)
            if any(name in _FOR_CHILDREN for name, _fd in joined):
                _fork_into_namespaces(report, exe)
        stage = "exec"
        # No PATH lookup (os.execve, not execvpe), as runc. By fd for
        # createContainer; a "#!" script needs that fd open across the exec
        # (the interpreter reads it as /dev/fd/N), hence not close-on-exec.
        os.execve(path if exe is None else exe, argv, env)
    except OSError as err:
        _report(report, stage, err.strerror or str(err))
    except BaseException as err:
        _report(report, stage, f"{type(err).__name__}: {err}")
    finally:
        os._exit(127)


def _report(fd: int, stage: str, text: str) -> None:
    with contextlib.suppress(BaseException):  # nothing more can be said
        os.write(fd, jsonfast.dumps({"stage": stage, "error": text}).encode() + b"\n")


def _above_stdio(fd: int, cloexec: bool) -> int:
    """A copy of ``fd`` numbered 3 or more, so dup2 onto 0-2 cannot clobber it
    (the monitor may run with its standard descriptors closed)."""
    command = fcntl.F_DUPFD_CLOEXEC if cloexec else fcntl.F_DUPFD
    return fcntl.fcntl(fd, command, 3)


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor from 3 up except ``keep``: nothing of the
    runtime's (the init's sync pipe, say) may leak into a hook."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _join(namespaces: Sequence[tuple[str, int]]) -> None:
    """setns into each namespace.

    runc joins the user namespace first; nsenter(1) joins the others first
    and the user namespace last, retrying what needed its privileges. The
    latter works both for root in the initial user namespace (which owns
    everything) and for a container whose namespaces are owned by its user
    namespace, so it is done here.
    """
    deferred: list[tuple[str, int]] = []
    for name, fd in namespaces:
        if name == "user":
            continue
        try:
            _setns(name, fd)
        except PermissionError:
            deferred.append((name, fd))  # owned by the user namespace: after it
    for name, fd in namespaces:
        if name == "user":
            _setns(name, fd)
            # As nsenter: be root of the namespace, or the exec drops every
            # capability (credentials(7): unmapped uid after setns).
            with contextlib.suppress(PermissionError):  # setgroups "deny" there
                os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    for name, fd in deferred:
        _setns(name, fd)
    for _name, fd in namespaces:
        os.close(fd)


def _setns(name: str, fd: int) -> None:
    """setns, with the namespace's name in the error (EPERM stays a
    PermissionError: OSError picks the subclass from the errno)."""
    try:
        syscalls.setns(fd, syscalls.CLONE_FLAGS[name])
    except OSError as err:
        raise OSError(err.errno, f"setns {name}: {os.strerror(err.errno or 0)}") from err


def _fork_into_namespaces(report: int, exe: int | None) -> None:
    """Fork once more so the hook is in the pid (and time) namespace joined.

    Returns in the grandchild, which goes on to exec. This process stays to
    wait for it and pass its wait status up the report pipe; it is in the
    hook's process group, so a timeout kills both.
    """
    pid = os.fork()
    if pid == 0:
        # Die with the intermediate (killed on timeout) even if the hook left
        # the process group.
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    for fd in (0, 1, 2, exe):
        if fd is not None:
            _close_quietly(fd)
    _pid, status = os.waitpid(pid, 0)
    os.write(report, jsonfast.dumps({"status": status}).encode() + b"\n")
    os._exit(0)
