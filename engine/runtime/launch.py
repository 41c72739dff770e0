"""``runlog create``'s side of the monitor: claim the state directory, fork.

What ``create`` imports is on its critical path, and a fork shares every
page the parent has touched (each first write after it, in either process,
copies one), so this module stays light: it claims the container's state
directory and request spool, forks, and reads the monitor's one-line
report. The monitor - in a new session, after a second fork - imports
:mod:`engine.runtime.monitor` and runs the machine's ``create``.

Who reaps the container's init (:func:`init_parent`). By default its
monitor, which so keeps its exit status. But a caller that supervises the
container itself - conmon under podman, a containerd shim - makes itself a
child subreaper and runs ``create`` expecting the init to be re-parented to
it when the runtime exits, as runc's is. The double fork shows which: the
monitor is re-parented to the nearest living subreaper above it, so if that
is the very process that ran ``create``, the caller reaps, and the monitor
does not make itself a subreaper: the init, when its first stage exits, goes
to the caller too. The monitor then sees the init's end on a pidfd and
records it without a status (``reaped_by_caller``).
"""

from __future__ import annotations

import os
import time

from engine.errors import LifecycleError, RunlogError, UsageError
from engine.runtime.spool import REQUESTS, Spool
from engine.runtime.statedir import StateDir
from engine.settings import INIT_PARENTS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from engine.settings import Settings
    from engine.status import Actor

__all__ = ["init_parent", "launch", "report"]


def launch(
    settings: Settings,
    container_id: str,
    bundle: str,
    *,
    no_pivot: bool = False,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    log_path: str | None = None,
    log_format: str = "basic",
    init_parent: str = "auto",
    actor: Actor,
) -> int:
    """Start a monitor that creates the container; return the init's pid."""
    if init_parent not in INIT_PARENTS:
        raise UsageError(
            f"init parent {init_parent!r} (--init-parent, RUNLOG_INIT_PARENT): "
            f"one of {', '.join(INIT_PARENTS)}"
        )
    statedir = StateDir(settings.root, container_id)
    try:
        statedir.create()
    except LifecycleError as err:
        from engine.runtime import record

        record.rejected(settings, container_id, "create", err, {"bundle": bundle})
        raise
    # The spool exists as soon as the container's directory does: a request
    # dropped during create waits there until the monitor serves.
    try:
        Spool(statedir.file(REQUESTS)).make(actor.uid or 0)
    except OSError as err:
        statedir.remove()
        raise RunlogError(f"container {container_id}: request spool: {err.strerror}") from err
    caller = os.getppid()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        code = 1
        try:
            os.setsid()
            intermediate = os.getpid()
            if os.fork() == 0:
                options = {
                    "no_pivot": no_pivot,
                    "console_socket": console_socket,
                    "preserve_fds": preserve_fds,
                    "log_path": log_path,
                    "log_format": log_format,
                    "init_parent": init_parent,
                    "caller": caller,
                    "intermediate": intermediate,
                }
                _serve(settings, statedir, bundle, options, actor, write_fd)
                code = 0
            else:
                code = 0
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    os.waitpid(child, 0)
    # One line: the init may hold a copy of the pipe until it execs, so EOF
    # cannot be the end of the message.
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    reply = data.decode(errors="replace").rstrip("\n")
    word, _, rest = reply.partition(" ")
    if word == "ok":
        return int(rest)
    statedir.remove()
    raise RunlogError(rest or f"container {container_id}: the monitor died during create")


def init_parent(options: dict[str, Any]) -> str:
    """``monitor`` or ``caller``: who reaps the init (see the module's
    docstring). Run in the monitor; ``auto`` waits for the intermediate
    process's exit to have re-parented it."""
    chosen = str(options["init_parent"])
    if chosen != "auto":
        return chosen
    caller = int(options["caller"])
    if caller <= 1:
        return "monitor"  # pid 1 adopts every orphan: no sign of a supervisor
    deadline = time.monotonic() + 1.0
    while os.getppid() == options["intermediate"] and time.monotonic() < deadline:
        time.sleep(0.0002)
    return "caller" if os.getppid() == caller else "monitor"


def report(fd: int, text: str) -> None:
    """Write the one-line report ``create`` waits for, and close the pipe."""
    data = (text.replace("\n", " ") + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]
    os.close(fd)


def _serve(
    settings: Settings,
    statedir: StateDir,
    bundle: str,
    options: dict[str, Any],
    actor: Actor,
    report_fd: int,
) -> None:
    """In the monitor: load its code, then create the container and serve it."""
    try:
        from engine.runtime import monitor
    except BaseException as err:  # create removes the state directory
        report(report_fd, f"error container {statedir.id}: the monitor cannot start: {err!r}")
        raise
    monitor.run(settings, statedir, bundle, options, actor, report_fd)
