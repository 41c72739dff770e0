"""runc's container commands (create, start, state, kill, delete, pause,
resume, run), and runlog's ``wait``, ``ctl`` and ``attach``.

These are what a scheduler calls, so they stay light: ``create`` forks the
monitor (which loads the machine and the log); the others are clients of
the monitor's ``control.sock``. Where no container exists they record the
``rejected`` event themselves; where its monitor is gone they reconcile
(:mod:`engine.runtime.cli.reconcile`).
"""

from __future__ import annotations

import posix
import sys

from engine import control
from engine.control import error_of, state_text, wait_gone
from engine.errors import (
    ContainerNotFound,
    LifecycleError,
    MonitorBusy,
    MonitorGone,
    RunlogError,
    StateDenied,
    UsageError,
)
from engine.layout import REQUEST_TIMEOUT, STATE_TIMEOUT
from engine.runtime.shared.statedir import CONTROL, STATE, StateDir, alive, kill_monitor
from engine.settings import Settings

__all__ = [
    "attach",
    "create",
    "ctl",
    "delete",
    "kill",
    "pause",
    "resume",
    "run",
    "start",
    "state",
    "wait",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from engine.runtime.cli.foreground import Pipes
    from engine.runtime.cli.terminal import Terminal


def absent(
    settings: Settings, statedir: StateDir, trigger: str, denied: StateDenied | None = None
) -> LifecycleError:
    """A request for a container with no state directory, or one this user
    may not look into (``denied``: a file of it could not be opened):
    record it, refuse it. Where the log refuses the record too (another
    user's log is private), the error's one line says so (docs/rootless.md)."""
    from engine.runtime.shared import record

    error: LifecycleError = ContainerNotFound(statedir.id) if denied is None else denied
    if denied is None:
        try:
            posix.stat(statedir.path)
        except PermissionError:
            # Another user's root (0700, as runc's): its log is private too.
            error = StateDenied(statedir.id, statedir.path)
        except OSError:
            pass
    if isinstance(error, StateDenied):
        error.tried = True
    try:
        # A query (state) is answered without waiting on the log's lock.
        record.rejected(settings, statedir.id, trigger, error, wait=trigger != "state")
    except (RunlogError, OSError) as err:  # the answer stands; it says it is not in the log
        record.not_recorded(error, err)
    return error


def _call(
    settings: Settings,
    container_id: str,
    trigger: str,
    request: dict[str, Any],
    timeout: float | None = REQUEST_TIMEOUT,
) -> dict[str, Any]:
    statedir = StateDir(settings.root, container_id)
    if not statedir.exists():
        raise absent(settings, statedir, trigger)
    deadline = None
    while True:
        try:
            return control.call(statedir.file(CONTROL), request, timeout)
        except MonitorGone:
            runs = _monitor_runs(statedir)
            if runs is False:
                break
        # Its monitor runs but does not answer: not yet (a create under
        # way) or no longer (a delete under way). Nothing may act around
        # it: ask again a while, then say so - or, for delete --force,
        # take what is there as runc does: kill it, and delete without it.
        import time

        now = time.monotonic()
        deadline = deadline or now + _SETTLE
        if now > deadline:
            if runs is None:
                break  # still no runtime.json: a create that died (reconcile says so)
            if not (request.get("op") == "delete" and request.get("force")):
                raise MonitorBusy(
                    f"{trigger} {container_id}: its monitor runs but does not answer "
                    f"on {statedir.file(CONTROL)}"
                )
            kill_monitor(statedir.runtime())
            break
        time.sleep(0.02)
        if not statedir.exists():
            raise absent(settings, statedir, trigger)
    from engine.runtime.cli import reconcile

    return reconcile.handle(settings, statedir, trigger, request)


#: How long a command asks again a monitor that runs but does not answer.
_SETTLE = 5.0


def _monitor_runs(statedir: StateDir) -> bool | None:
    """Whether runtime.json's monitor still runs (its pid, with the start
    time recorded for it): one that cannot answer yet or any more is not
    gone, and the container is its alone - nothing reconciles around it.
    None: a state directory without runtime.json, which a create under
    way writes at once (or one that died before it did)."""
    if not statedir.exists():
        return False
    try:
        info = statedir.runtime()
    except ContainerNotFound:
        return None
    return alive(info, "monitor")


def _write_pid_file(path: str, pid: int) -> None:
    # runc writes the pid file atomically (tmp + rename), without a newline.
    tmp = f"{path}.{posix.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(pid))
    posix.replace(tmp, path)


def create(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    container_id = args[0]
    _create(settings, flags, container_id, settings.init_parent)
    return 0


def _create(
    settings: Settings,
    flags: dict[str, object],
    container_id: str,
    init_parent: str,
    restore: dict[str, object] | None = None,
    stdio: tuple[int, int, int] | None = None,
    console: int | None = None,
) -> int:
    # create loads os anyway (the launch); the other commands do without
    # (engine.settings).
    import os

    from engine.runtime.cli.launch import launch
    from engine.status import Actor

    bundle = os.path.abspath(str(flags.get("bundle") or "."))
    actor = Actor.current()
    pid = launch(
        settings,
        container_id,
        bundle,
        no_pivot=bool(flags.get("no_pivot")),
        console_socket=str(flags["console_socket"]) if flags.get("console_socket") else None,
        preserve_fds=_count(flags.get("preserve_fds")),
        listen_fds=_listen_fds(os.environ, os.getpid()),
        log_path=os.path.abspath(str(flags["log_path"])) if flags.get("log_path") else None,
        log_format=str(flags.get("log_format") or "basic"),
        init_parent=init_parent,
        actor=actor,
        restore=restore,
        stdio=stdio,
        console=console,
    )
    pid_file = flags.get("pid_file")
    if pid_file:
        _write_pid_file(os.path.abspath(str(pid_file)), pid)
    return pid


def _listen_fds(environ: Mapping[str, str], pid: int) -> int:
    """How many descriptors socket activation passed this process: runc's
    create, run and restore give fds 3 to 3+N-1 to the container, with
    ``LISTEN_FDS=N`` and ``LISTEN_PID=1`` in its environment, when
    ``LISTEN_PID`` is this process and ``LISTEN_FDS`` a positive number
    (sd_listen_fds(3)); otherwise none."""
    if _atoi(environ.get("LISTEN_PID", "")) != pid:
        return 0
    return max(_atoi(environ.get("LISTEN_FDS", "")) or 0, 0)


def _atoi(text: str) -> int | None:
    """Go's ``strconv.Atoi``, which runc reads these with: a sign and
    ASCII digits, nothing else."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return int(text) if digits.isascii() and digits.isdigit() else None


def _count(value: object) -> int:
    text = str(value or "0")
    if not text.isdigit():
        raise UsageError(f"--preserve-fds: not a number: {text!r}")
    return int(text)


def start(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """Start the init of a created container. ``--bind``: and stay bound to
    it as ``wait --bind`` is, the bond made before the start (Slurm's
    create/start mode): a signal this process gets goes to the init; if it
    is killed, the container is too, even in the middle of the start; and
    if it is killed before its request is out, the container was never
    started. Prints and exits with the init's status, as ``wait``."""
    if not flags.get("bind"):
        _call(settings, args[0], "start", {"op": "start"})
        return 0
    # The monitor answers nothing else while it starts the init (a hook
    # may take long): a signal that comes meanwhile waits its turn.
    _forward_signals(StateDir(settings.root, args[0]).file(CONTROL), timeout=REQUEST_TIMEOUT)
    try:
        reply = _call(settings, args[0], "start", {"op": "start", "bind": True}, timeout=None)
    finally:
        _forward_signals(None)
    code = _status_code(reply["exit"])
    sys.stdout.write(f"{code}\n")
    return code


def pause(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    _call(settings, args[0], "pause", {"op": "pause"})
    return 0


def resume(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    _call(settings, args[0], "resume", {"op": "resume"})
    return 0


def _state_from_file(settings: Settings, statedir: StateDir, container_id: str) -> int:
    """``state`` answered from the state.json a live monitor keeps."""
    try:
        data = statedir.read(STATE)
    except ContainerNotFound:
        raise absent(settings, statedir, "state") from None
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()
    answered_from_file(settings.root, settings.db, container_id, data)
    return 0


def state(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """Ask the monitor: a ``state`` request, recorded as a query (who asked,
    when). The monitor writes query events without waiting for the disk;
    the next transition's commit makes them durable. Without a live
    monitor, the answer comes from the real world (reconcile); from a
    monitor too busy to answer, from the ``state.json`` it keeps current.
    """
    statedir = StateDir(settings.root, args[0])
    if not statedir.exists():
        raise absent(settings, statedir, "state")
    try:
        reply = control.call(statedir.file(CONTROL), {"op": "state"}, STATE_TIMEOUT)
    except MonitorGone:
        if _monitor_runs(statedir):
            # Not answering yet (create) or any more (delete): state.json,
            # which it keeps, is the answer; nothing is reconciled around it.
            return _state_from_file(settings, statedir, args[0])
        from engine.runtime.cli import reconcile

        try:
            data = reconcile.state(settings, statedir)
        except ContainerNotFound:
            raise absent(settings, statedir, "state") from None
        except MonitorBusy:  # it was not gone: a create under way
            return _state_from_file(settings, statedir, args[0])
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        # Answered without a monitor (gone, or removing the container).
        answered_from_file(settings.root, settings.db, args[0], data)
        return 0
    except MonitorBusy:
        return _state_from_file(settings, statedir, args[0])
    else:
        data = state_text(reply)
    sys.stdout.buffer.write(data + b"\n")
    return 0


def answered_from_file(root: str, db: str, container_id: str, data: bytes) -> None:
    """Record a ``state`` answered from state.json (its monitor too busy to
    answer), as the monitor records the queries it answers; a log that
    cannot take it is said on stderr."""
    from engine import jsonfast
    from engine.runtime.shared import record
    from engine.settings import environ

    try:
        doc = jsonfast.loads(data)
        status = doc.get("status") if isinstance(doc, dict) else None
    except ValueError:
        status = None
    settings = Settings.from_flags({"root": root, "db": db}, environ())
    try:
        record.query(settings, container_id, "state", status if isinstance(status, str) else None)
    except (RunlogError, OSError) as err:
        sys.stderr.write(f"runlog: the query was not recorded: {err}\n")


def kill(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.oci.signals import parse_signal

    if len(args) > 2:
        raise UsageError('runlog: "kill" requires a maximum of 2 argument(s)')
    signo = parse_signal(args[1]) if len(args) > 1 else 15
    request = {"op": "kill", "signal": signo, "all": bool(flags.get("all"))}
    _call(settings, args[0], "kill", request)
    return 0


def delete(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    force = bool(flags.get("force"))
    statedir = StateDir(settings.root, args[0])
    if not statedir.exists():
        if force:
            # runc: delete --force of a missing container succeeds; a log
            # still showing it (a delete cut short) is put right.
            from engine.runtime.cli import remains

            remains.clean(settings, statedir, f"container {args[0]}: gone; delete --force")
            return 0
        from engine.runtime.cli import remains

        try:
            # A container the log still shows whose state directory is gone
            # (a delete cut short once it had removed it) is recorded gone.
            if remains.forgotten(settings, statedir):
                return 0
        except RunlogError:
            pass  # the log cannot be used: said once, by absent
        raise absent(settings, statedir, "delete")
    if force and not _exists(statedir.file(STATE)):
        # No state.json: a create that died (or hangs), or a journal a
        # delete left; take away whatever there is.
        from engine.runtime.cli import remains

        remains.clean(settings, statedir, f"container {args[0]}: what a create left, forced")
        return 0
    monitor_pid = _monitor_pid(statedir)
    _call(settings, args[0], "delete", {"op": "delete", "force": force})
    if monitor_pid is not None:
        wait_gone(monitor_pid)
    return 0


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _monitor_pid(statedir: StateDir) -> int | None:
    try:
        pid = statedir.runtime().get("monitor_pid")
    except ContainerNotFound:
        return None
    return pid if isinstance(pid, int) else None


def run(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """create + start; in the foreground, wait, forward signals, exit with its
    status, and (without a terminal) copy its stdio through pipes, as runc's."""
    container_id = args[0]
    # In the foreground, run waits for the status: its monitor must reap.
    detach = bool(flags.get("detach"))
    if detach:
        _create(settings, flags, container_id, settings.init_parent)
        _start_or_discard(
            settings, container_id, StateDir(settings.root, container_id).file(CONTROL)
        )
        return 0
    pipes, terminal = None, None
    if not (flags.get("console_socket") or flags.get("log_path")):
        if _wants_terminal(flags):
            terminal = _terminal(settings, flags, container_id)
        else:
            from engine.runtime.cli.foreground import Pipes

            pipes = Pipes()
    try:
        status = _foreground(settings, flags, container_id, pipes, terminal)
    finally:
        if pipes is not None:
            pipes.close()
        if terminal is not None:
            terminal.close()
    if "exec_error" in status:
        # What start no longer waits for (runc's start neither): run says it.
        sys.stderr.write(f"container {container_id}: {status['exec_error']}\n")
    _discard(settings, container_id, StateDir(settings.root, container_id).file(CONTROL))
    return _status_code(status)


def _wants_terminal(flags: dict[str, object]) -> bool:
    """Whether the bundle's config asks for a terminal (``process.terminal``);
    read here, before create, to choose how the stdio go. A config that
    cannot be read says no: the monitor reports what is wrong with it."""
    from engine import jsonfast

    path = str(flags.get("bundle") or ".") + "/config.json"
    try:
        with open(path, "rb") as fh:
            process = jsonfast.loads(fh.read()).get("process")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(process, dict) and process.get("terminal") is True


def _terminal(settings: Settings, flags: dict[str, object], container_id: str) -> Terminal:
    """The caller's terminal, for a foreground run with ``terminal: true``;
    without one, refused (and recorded) before anything is made, as runc's."""
    from engine.runtime.cli.terminal import Terminal

    try:
        return Terminal()
    except RunlogError as err:
        from engine.runtime.shared import record

        refused = RunlogError(f"container {container_id}: {err}")
        request = {"bundle": str(flags.get("bundle") or ".")}
        try:
            record.rejected(settings, container_id, "create", refused, request)
        except (RunlogError, OSError) as problem:
            record.not_recorded(refused, problem)
        raise refused from None


def _foreground(
    settings: Settings,
    flags: dict[str, object],
    container_id: str,
    pipes: Pipes | None,
    terminal: Terminal | None = None,
) -> dict[str, Any]:
    """Create, start, copy the stdio through ``pipes`` or the pty to
    ``terminal`` (when given) and wait: the init's exit status, its output
    drained."""
    try:
        stdio = pipes.theirs if pipes is not None else None
        console = terminal.theirs if terminal is not None else None
        pid = _create(settings, flags, container_id, "monitor", stdio=stdio, console=console)
    finally:
        if pipes is not None:
            pipes.handed()
        if terminal is not None:
            terminal.handed()
    path = StateDir(settings.root, container_id).file(CONTROL)
    # With a terminal, SIGWINCH resizes the pty rather than reach the init.
    _forward_signals(path, winch=terminal is None)
    try:
        if terminal is not None:
            _receive_or_discard(settings, container_id, path, terminal)
        _start_or_discard(settings, container_id, path)
        if pipes is not None:
            sys.stdout.flush()
            pipes.copy(pid)
        if terminal is not None:
            sys.stdout.flush()
            terminal.copy(pid)
        status: dict[str, Any] = control.call(path, {"op": "wait"}, timeout=None)["exit"]
    finally:
        _forward_signals(None)
    return status


_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def _forward_signals(path: str | None, winch: bool = True, timeout: float = 5) -> None:
    """Forward the signals this process gets to the container's init through
    control.sock ``path`` (Slurm's scancel, a terminal's ^C: runc's signal
    forwarding in foreground run); ``None``: stop, their defaults again.
    Not ``winch``: SIGWINCH is left to the terminal's copy, which resizes.
    ``timeout``: how long one forwarded signal may wait for the monitor."""
    import signal

    def forward(signo: int, _frame: object) -> None:
        try:
            control.call(str(path), {"op": "kill", "signal": signo, "all": False}, timeout=timeout)
        except RunlogError:
            pass

    for name in _FORWARDED:
        if name != "SIGWINCH" or winch:
            signal.signal(getattr(signal, name), signal.SIG_DFL if path is None else forward)


def _receive_or_discard(
    settings: Settings, container_id: str, path: str, terminal: Terminal
) -> None:
    """The pty master from the created init, its window size set before
    the start; without it, the container is deleted and run fails."""
    try:
        terminal.receive(f"container {container_id}: the init")
    except (RunlogError, OSError) as err:
        try:
            _discard(settings, container_id, path)
        except RunlogError:
            pass
        if isinstance(err, RunlogError):
            raise
        raise RunlogError(f"container {container_id}: the pty master: {err}") from None


def _start_or_discard(settings: Settings, container_id: str, path: str) -> None:
    """``run``'s start: a container whose start failed (a poststart hook,
    say, whose failure stopped it) is deleted before the error is raised,
    as runc's run destroys it; nothing of it is left."""
    try:
        control.call(path, {"op": "start"})
    except RunlogError:
        try:
            _discard(settings, container_id, path)
        except RunlogError:
            pass  # the start's error is the one to report
        raise


def _discard(settings: Settings, container_id: str, path: str) -> None:
    """``delete --force``, and wait until the monitor is gone."""
    monitor_pid = _monitor_pid(StateDir(settings.root, container_id))
    control.call(path, {"op": "delete", "force": True})
    if monitor_pid is not None:
        wait_gone(monitor_pid)


def _status_code(status: dict[str, Any]) -> int:
    """A shell's number for how the init ended: its code, or 128 + the signal."""
    if "signal" in status:
        return 128 + int(status["signal"])
    return int(status.get("exit_code", 255))


def wait(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """Block until the container's init has ended; print its exit status and
    exit with it (a signal as 128 + its number, as a shell and podman do).
    ``--bind`` ties the container to this process, for a scheduler that
    signals the processes it started (Slurm's create/start mode: ``start``
    and then ``wait --bind``): the signals it gets are forwarded to the
    init, and if it is killed before the init ends, so is the container."""
    if not flags.get("bind"):
        reply = _call(settings, args[0], "wait", {"op": "wait"}, timeout=None)
    else:
        # Bound: the signals this process gets go to the init, and if it is
        # killed before the init ends, the monitor kills the container.
        _forward_signals(StateDir(settings.root, args[0]).file(CONTROL))
        try:
            request = {"op": "wait", "bind": True}
            reply = _call(settings, args[0], "wait", request, timeout=None)
        finally:
            _forward_signals(None)
    code = _status_code(reply["exit"])
    sys.stdout.write(f"{code}\n")
    return code


def ctl(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """Send one request as it is given (JSON) and print the monitor's reply.

    Through control.sock, or with ``--spool`` through the request spool.
    Exit 0 when the reply is ok, else the reply's exit code with its error
    on stderr; the reply is printed either way, for scripts.
    """
    from engine import jsonfast

    statedir = StateDir(settings.root, args[0])
    if not statedir.exists():
        raise absent(settings, statedir, "ctl")
    text = args[1].strip()
    if "\n" in text:
        # One request per line on the socket: lay out a multi-line document
        # on one (one that does not parse goes as it is, and is refused).
        try:
            text = jsonfast.dumps(jsonfast.loads(text))
        except ValueError:
            pass
    data = (text + "\n").encode()
    timeout = _seconds(flags.get("timeout"))
    monitor_pid = _monitor_pid(statedir)
    if flags.get("spool"):
        from engine.runtime.shared.spool import REQUESTS, SpoolClient

        try:
            with SpoolClient(statedir.file(REQUESTS)) as spool:
                raw = spool.call(data, timeout)
        except OSError as err:
            raise RunlogError(
                f"container {args[0]}: request spool {statedir.file(REQUESTS)}: {err.strerror}"
            ) from err
    else:
        raw = control.call_raw(statedir.file(CONTROL), data, timeout)
    sys.stdout.write(raw.decode(errors="replace").rstrip("\n") + "\n")
    try:
        reply = jsonfast.loads(raw)
    except ValueError:
        return 1
    if not isinstance(reply, dict):
        sys.stderr.write(f"container {args[0]}: the monitor's reply is not a JSON object\n")
        return 1
    if reply.get("ok"):
        if reply.get("status") == "deleted" and monitor_pid is not None:
            wait_gone(monitor_pid)  # as delete: nothing of the container is left
        return 0
    error, code = error_of(reply)
    sys.stderr.write(f"{error}\n")
    return code


def _seconds(value: object) -> float | None:
    text = str(value or "60").rstrip("s")
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"--timeout: not a number of seconds: {value!r}") from None
    return None if seconds <= 0 else seconds


def attach(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    """Copy the container's output (``--log-path``) to stdout and stdin to it,
    until its init has ended (:mod:`engine.runtime.cli.attach`)."""
    from engine.runtime.cli.attach import ATTACH, copy

    statedir = StateDir(settings.root, args[0])
    if not statedir.exists():
        raise absent(settings, statedir, "attach")
    sys.stdout.flush()
    copy(statedir.file(ATTACH), args[0], sys.stdin.fileno(), sys.stdout.fileno())
    return 0
