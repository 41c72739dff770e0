"""``runlog create``'s side of the monitor: claim the state directory, tell
the monitor what to create, read its report.

The monitor is forked as soon as the command line is read
(:mod:`engine.runtime.prefork`) and, in a new session after a second fork,
imports :mod:`engine.runtime.monitor` while ``create`` claims the
container's state directory and request spool here. ``create`` then sends
it the request (:func:`launch`), and the monitor (:func:`serve_when_told`)
runs the machine's ``create`` and reports ``ok PID`` or the error.

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

from engine import jsonfast
from engine.errors import LifecycleError, RunlogError, UsageError
from engine.runtime import prefork
from engine.runtime.spool import REQUESTS, Spool
from engine.runtime.statedir import StateDir
from engine.settings import INIT_PARENTS, Settings
from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["init_parent", "launch", "report", "serve_when_told"]


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
    # Forked as soon as the command line was read (engine.quick, else
    # engine.cli), or now.
    early = prefork.take() or prefork.start()
    statedir = StateDir(settings.root, container_id)
    try:
        statedir.create()
    except LifecycleError as err:
        early.abandon()
        from engine.runtime import record

        record.rejected(settings, container_id, "create", err, {"bundle": bundle})
        raise
    except BaseException:
        early.abandon()
        raise
    # The spool exists as soon as the container's directory does: a request
    # dropped during create waits there until the monitor serves.
    try:
        Spool(statedir.file(REQUESTS)).make(actor.uid or 0)
    except OSError as err:
        early.abandon()
        statedir.remove()
        raise RunlogError(f"container {container_id}: request spool: {err.strerror}") from err
    options = {
        "no_pivot": no_pivot,
        "console_socket": console_socket,
        "preserve_fds": preserve_fds,
        "log_path": log_path,
        "log_format": log_format,
        "init_parent": init_parent,
        "caller": os.getppid(),
    }
    request = {
        "settings": {name: getattr(settings, name) for name in Settings.__slots__},
        "id": container_id,
        "bundle": bundle,
        "options": options,
        "actor": {"uid": actor.uid, "pid": actor.pid, "transport": actor.transport},
    }
    early.go(jsonfast.dumps(request).encode())
    reply = early.report()
    word, _, rest = reply.partition(" ")
    if word == "ok":
        pid, _, given_up = rest.partition(" ")
        if given_up:
            # Served all the same, with less: the create event says it too.
            os.write(2, f"runlog: container {container_id}: {given_up}\n".encode())
        return int(pid)
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
    """Write the one-line report ``create`` waits for, and close the pipe.

    A ``create`` that died meanwhile (killed, its terminal closed) reads
    nothing: the report is dropped, and the monitor goes on as it would
    have - a created container is served all the same, for whoever comes
    next to start or delete, and the log has its events."""
    data = (text.replace("\n", " ") + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def serve_when_told(go_fd: int, report_fd: int, intermediate: int) -> None:
    """In the monitor (:mod:`engine.runtime.prefork`): load its code, wait for what
    to create, create it and serve it; exit at once if create gave up."""
    try:
        from engine.runtime import monitor
    except BaseException as err:  # reported once there is something to report on
        problem: BaseException | None = err
    else:
        problem = None
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(go_fd, 65536)
        if not chunk:
            return  # create gave up: nothing to do
        line += chunk
    os.close(go_fd)
    prefork.restore_affinity()
    request = jsonfast.loads(line)
    settings = Settings(**request["settings"])
    statedir = StateDir(settings.root, request["id"])
    if problem is not None:  # create removes the state directory
        report(report_fd, f"error container {statedir.id}: the monitor cannot start: {problem!r}")
        return
    options = {**request["options"], "intermediate": intermediate}
    actor = Actor(**request["actor"])
    monitor.run(settings, statedir, request["bundle"], options, actor, report_fd)
