"""``runlog create``'s side of the monitor: claim the state directory, tell
the monitor what to create, read its report.

The monitor is forked as soon as the command line is read
(:mod:`engine.runtime.cli.prefork`) and, in a new session after a second fork,
imports :mod:`engine.runtime.monitor.main` while ``create`` claims the
container's state directory and request spool here. ``create`` then sends
it the request (:func:`launch`), and the monitor
(:func:`engine.runtime.monitor.main.serve`) runs the machine's ``create`` and
reports ``ok PID`` or the error.

Who reaps the container's init (:func:`engine.runtime.monitor.main.init_parent`). By default its
monitor, which so keeps its exit status. But a caller that supervises the
container itself - conmon under podman, a containerd shim - makes itself a
child subreaper and runs ``create`` expecting the init to be re-parented to
it when the runtime exits, as runc's is. The double fork shows which: the
monitor is re-parented to the nearest living subreaper above it, so if there
is one (the process that ran ``create``, or one above it, as conmon above a
wrapper script), the caller reaps, and the monitor does not make itself a
subreaper: the init, when the intermediate process that forked it exits, goes to that subreaper
too; where there is none (pid 1 adopts the monitor), the monitor keeps it.
The monitor then sees the init's end on a pidfd and records it without a
status (``reaped_by_caller``).
"""

from __future__ import annotations

import os

from engine import faults, jsonfast
from engine.errors import LifecycleError, RunlogError, UsageError
from engine.runtime.cli import prefork
from engine.runtime.shared.spool import REQUESTS, Spool
from engine.runtime.shared.statedir import StateDir
from engine.settings import INIT_PARENTS, Settings
from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


__all__ = ["launch"]


def launch(
    settings: Settings,
    container_id: str,
    bundle: str,
    *,
    no_pivot: bool = False,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    listen_fds: int = 0,
    log_path: str | None = None,
    log_format: str = "basic",
    init_parent: str = "auto",
    actor: Actor,
    restore: dict[str, object] | None = None,
    stdio: tuple[int, int, int] | None = None,
    console: int | None = None,
) -> int:
    """Start a monitor that creates the container; return the init's pid.
    ``stdio``: the container's stdin, stdout and stderr, in place of this
    process's (a foreground run's pipes). ``console``: the socket the init
    sends its pty master on, in place of a ``--console-socket`` (a
    foreground run's terminal, :mod:`engine.runtime.cli.terminal`)."""
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
        from engine.runtime.shared import record

        trigger = "restore" if restore else "create"
        record.rejected(settings, container_id, trigger, err, {"bundle": bundle})
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
    faults.point("create", "claimed")
    options = {
        "no_pivot": no_pivot,
        "console_socket": console_socket,
        "preserve_fds": preserve_fds,
        "listen_fds": listen_fds,
        "log_path": log_path,
        "log_format": log_format,
        "init_parent": init_parent,
        "caller": os.getppid(),
        "restore": restore,
        "pipes": stdio is not None,
    }
    if console is not None:
        options["console"] = True
    request = {
        "settings": {name: getattr(settings, name) for name in Settings.__slots__},
        "id": container_id,
        "bundle": bundle,
        "options": options,
        "actor": _who(actor),
    }
    early.go(jsonfast.dumps(request).encode(), stdio, console)
    faults.point("create", "sent")
    reply = early.report()
    word, _, rest = reply.partition(" ")
    if word == "ok":
        pid, _, given_up = rest.partition(" ")
        if given_up:
            # Served all the same, with less: the create event says it too.
            os.write(2, f"runlog: container {container_id}: {given_up}\n".encode())
        return int(pid)
    if rest:  # the monitor undid what it had made and said why
        statedir.remove()
        raise RunlogError(rest)
    # The monitor died without a word: take away what it made.
    from engine.runtime.cli import remains

    problem = f"container {container_id}: the monitor died during create"
    try:
        remains.clean(settings, statedir, problem)
    except Exception as err:  # one line, whatever the clean-up met
        raise RunlogError(f"{problem}; cleaning up after it: {err!r}") from err
    raise RunlogError(problem)


def _who(actor: Actor) -> dict[str, object]:
    """The create event's actor, enriched here from this process's own
    environment, login uid and user (engine.identity): create waits for
    the monitor's imports meanwhile, where the monitor's own reads of
    ``/proc/PID`` came after them, before anything was made."""
    from engine.identity import enriched

    who = enriched(actor, os.environ)
    return {
        "uid": who.uid,
        "pid": who.pid,
        "transport": who.transport,
        "user": who.user,
        "loginuid": who.loginuid,
        "context": who.context,
    }
