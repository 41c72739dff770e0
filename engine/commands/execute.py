"""``runlog exec``: runc 1.1's exec, every flag.

The monitor is asked first (the machine's ``exec``: refused for a stopped
container, and for a paused one without ``--ignore-paused``; the event
records the process, who asked, tty and detach); then this process makes
the exec'd one (:mod:`engine.runtime.cli.execute`). In the foreground it
forwards signals to it, waits, records its end (``exec_exit``, linked to the
``exec`` event by the exec's id) and exits with its status (128 + N for signal N).
With ``--detach`` it writes ``--pid-file`` and returns; the monitor then
watches the process on a pidfd and records its end, with its status when
it can still read it. As runc, every error is ``exec failed: ...`` with
exit status 255.

A scheduler calls this: nothing heavy is imported (no event log code; the
monitor records).
"""

from __future__ import annotations

import os

from engine.commands.container import _call, _status_code, _write_pid_file, absent
from engine.errors import (
    ContainerNotFound,
    RunlogError,
    StateDenied,
    UnsupportedError,
    UsageError,
)
from engine.frozen import replace
from engine.runtime.shared.statedir import CONTROL, StateDir
from engine.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from engine.oci.model import Config, Process
    from engine.runtime.cli.terminal import Terminal

__all__ = ["ExecFailed", "main"]


class ExecFailed(RunlogError):
    """runc's ``exec failed: ...``, exit status 255."""

    exit_code = 255


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    if not flags.get("process") and len(args) < 2:
        raise UsageError("runlog: process args cannot be empty")
    asked: list[bool] = []
    try:
        return _exec(settings, flags, args[0], args[1:], asked)
    except ExecFailed:
        raise
    except RunlogError as err:
        if not asked and not isinstance(err, (ContainerNotFound, StateDenied)):
            # Refused here, before the monitor was asked (which records its
            # own refusals): recorded all the same (absent records its own).
            from engine.runtime.shared import record

            request = {"args": args[1:], **{k: v for k, v in flags.items() if v}}
            try:
                record.rejected(settings, args[0], "exec", err, request)
            except (RunlogError, OSError) as problem:  # said, never instead of the error
                record.not_recorded(err, problem)
        raise ExecFailed(f"exec failed: {err}") from err


def _exec(
    settings: Settings, flags: dict[str, object], cid: str, argv: list[str], asked: list[bool]
) -> int:
    from engine.oci.config import load_bundle
    from engine.runtime.cli import execute

    statedir = StateDir(settings.root, cid)
    if not statedir.exists():
        raise absent(settings, statedir, "exec")
    try:
        info = statedir.runtime()
    except ContainerNotFound:
        raise absent(settings, statedir, "exec") from None
    except StateDenied as denied:
        raise absent(settings, statedir, "exec", denied) from None
    config = load_bundle(str(info.get("bundle") or "."))
    process = _process(flags, argv, config)
    _refuse_labels(flags)
    detach = bool(flags.get("detach"))
    console_socket = str(flags.get("console_socket") or "")
    if process.terminal and detach and not console_socket:
        raise UsageError("cannot allocate tty if runlog will detach without setting console socket")
    if console_socket and not process.terminal:
        raise UsageError("cannot use console socket if runlog will not allocate tty")
    # runc's exec passes no socket-activation descriptors (LISTEN_FDS is
    # create's and run's): the process gets stdio and --preserve-fds alone.
    preserve = _count(flags.get("preserve_fds"))
    cgroups = execute.cgroup_entry(
        dict(info.get("cgroup_paths") or {}), _sub_cgroups(flags.get("cgroup"))
    )
    request = {
        "op": "exec",
        "args": list(process.args),
        "user": f"{process.user.uid}:{process.user.gid}",
        "cwd": process.cwd,
        "tty": process.terminal,
        "detach": detach,
        "ignore_paused": bool(flags.get("ignore_paused")),
    }
    pump = _terminal(process, console_socket)
    # The machine says whether it may be; the reply names the init to join.
    asked.append(True)
    try:
        reply = _call(settings, cid, "exec", request)
    except BaseException:
        if pump is not None:
            pump.close()
        raise
    exec_id, init_pid = int(reply["exec"]), int(reply["pid"])
    console = _console(pump, console_socket if process.terminal else "")
    spawned = execute.spawn(
        config, process, init_pid, cgroups, console=console, preserve_fds=preserve
    )
    control = statedir.file(CONTROL)
    if spawned.error is not None:
        if pump is not None:
            pump.close()
        _report(control, {"exec": exec_id, "pid": spawned.pid, "exec_error": spawned.error})
        raise ExecFailed(f"exec failed: unable to start container process: {spawned.error}")
    pid_file = flags.get("pid_file")
    if pid_file:
        _write_pid_file(os.path.abspath(str(pid_file)), spawned.pid)
    if detach:
        _report(control, {"exec": exec_id, "pid": spawned.pid, "watch": True})
        return 0
    status = _foreground(spawned.pid, pump)
    _report(control, {"exec": exec_id, "pid": spawned.pid, **status})
    return _status_code(status)


#: How long exec waits for the monitor to record what it reports.
REPORT_WAIT = 5.0


def _report(control: str, fields: dict[str, Any]) -> None:
    """The exec'd process's end (or, ``watch``, its pid) to the monitor,
    which records it; exec returns once the monitor has answered, so the
    log holds the exec and this report when the command ends (the monitor
    records the exec itself right after answering it, before it reads
    this). A container deleted meanwhile has no monitor to tell; a monitor
    that cannot record, or does not answer within ``REPORT_WAIT``, leaves
    the exec's own result unchanged."""
    from engine.control import NoMonitor, exchange, request_line

    try:
        exchange(control, request_line("exec_exit", **fields), REPORT_WAIT)
    except (NoMonitor, OSError):
        pass


def _process(flags: dict[str, object], argv: list[str], config: Config) -> Process:
    """runc's getProcess: ``--process FILE`` as it is, else the config's
    process with the command line's changes."""
    from engine.oci.model import Capabilities, User

    path = flags.get("process")
    if path:
        from engine import jsonfast
        from engine.oci.config import parse_process

        try:
            with open(str(path), "rb") as fh:
                doc = jsonfast.loads(fh.read())
        except OSError as err:
            raise RunlogError(f"open {path}: {err.strerror}") from None
        except ValueError as err:
            raise RunlogError(f"{path}: invalid JSON: {err}") from None
        return parse_process(doc, str(path), bundle=config.bundle)
    base = config.process
    user = base.user
    spec = str(flags.get("user") or "")
    if spec:
        uid_text, colon, gid_text = spec.partition(":")
        uid = _int(uid_text, "uid")
        gid = _int(gid_text, "gid") if colon else user.gid
        user = User(uid=uid, gid=gid, umask=user.umask, additional_gids=user.additional_gids)
    gids = [_int(str(g), "additional gid") for g in _list(flags.get("additional_gids"))]
    if gids:
        user = replace(user, additional_gids=(*user.additional_gids, *gids))
    caps = base.capabilities
    added = tuple(_cap(c) for c in _list(flags.get("cap")))
    if added:
        caps = caps or Capabilities()
        caps = replace(
            caps,
            bounding=(*caps.bounding, *added),
            effective=(*caps.effective, *added),
            permitted=(*caps.permitted, *added),
            # runc adds them to the ambient set too, where the kernel keeps
            # only those also inheritable (the rest are dropped, as runc does).
            ambient=(*caps.ambient, *(c for c in added if c in caps.inheritable)),
        )
    env = tuple(_list(flags.get("env")))
    for entry in env:
        if "=" not in entry or entry.startswith("="):
            raise UsageError(f"--env {entry!r}: not NAME=VALUE")
    cwd = str(flags.get("cwd") or base.cwd)
    if not cwd.startswith("/"):
        raise UsageError(f"--cwd {cwd!r}: cwd must be an absolute path")
    nnp = flags.get("no_new_privs")
    return replace(
        base,
        args=tuple(argv),
        cwd=cwd,
        env=(*base.env, *env),
        terminal=bool(flags.get("tty")),
        user=user,
        capabilities=caps,
        no_new_privileges=base.no_new_privileges if nnp is None else bool(nnp),
    )


def _cap(name: str) -> str:
    from engine.oci.names import CAPABILITIES

    cap = name.upper()
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in CAPABILITIES:
        raise UsageError(f"--cap {name!r}: unknown capability")
    return cap


def _int(text: str, what: str) -> int:
    if not text.isdigit():
        raise UsageError(f"parsing {text} as int for {what} failed")
    return int(text)


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _count(value: object) -> int:
    text = str(value or "0")
    if not text.isdigit():
        raise UsageError(f"--preserve-fds: not a number: {text!r}")
    return int(text)


def _sub_cgroups(value: object) -> dict[str, str] | None:
    """runc's ``--cgroup [CONTROLLER[,CONTROLLER]:]PATH``, repeatable."""
    items = _list(value)
    if not items:
        return None
    paths: dict[str, str] = {}
    for item in items:
        parts = item.split(":")
        if len(parts) > 2:
            raise UsageError(f"invalid --cgroup argument: {item}")
        if len(parts) == 1:
            if len(items) != 1:
                raise UsageError(
                    f"invalid --cgroup argument: {item} (missing <controller>: prefix)"
                )
            paths[""] = item
        else:
            for controller in parts[0].split(","):
                paths[controller] = parts[1]
    return paths


def _refuse_labels(flags: dict[str, object]) -> None:
    """runlog applies no LSM label: asked for one, it says why rather than
    run the process unconfined (as at create, engine.linux.lsm)."""
    from engine.linux import lsm

    profile = flags.get("apparmor")
    if profile:
        why = (
            "runlog does not apply AppArmor profiles"
            if lsm.apparmor_enabled()
            else "AppArmor is not enabled on this host"
        )
        raise UnsupportedError(f"--apparmor {profile!r}: {why}")
    label = flags.get("process_label")
    if label:
        why = (
            "runlog does not apply SELinux labels"
            if lsm.selinux_enabled()
            else "SELinux is not enabled on this host"
        )
        raise UnsupportedError(f"--process-label {label!r}: {why}")


def _terminal(process: Process, console_socket: str) -> Terminal | None:
    """The caller's terminal, for ``-t`` without ``--console-socket``:
    found (or the exec refused) before the monitor is asked, as runc's."""
    if not process.terminal or console_socket:
        return None
    from engine.runtime.cli.terminal import Terminal

    return Terminal()


def _console(pump: Terminal | None, path: str) -> int | None:
    """A socket for the pty master, for spawn to give the process: the end
    of ``pump``'s pair, or one connected to ``--console-socket`` ``path``."""
    import _socket

    from engine.runtime.shared.statedir import SocketAddress

    if pump is not None:
        console, pump.theirs = pump.theirs, None  # spawn's now
        return console
    if not path:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        with SocketAddress(path) as address:
            sock.connect(address)
    except OSError as err:
        sock.close()
        raise RunlogError(f"console socket {path}: {err.strerror or err}") from None
    return sock.detach()


def _foreground(pid: int, pump: Terminal | None) -> dict[str, int]:
    """Forward signals to the process, copy its terminal, wait; how it ended.
    On ``_signal``: ``signal`` would load ``enum`` (about 1 ms)."""
    import _signal  # type: ignore[import-not-found]  # signal's C module: no stub

    def forward(signo: int, _frame: object) -> None:
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass

    skip = {_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD, _signal.SIGURG}
    if pump is not None:
        skip.add(_signal.SIGWINCH)
    for signo in range(1, _signal.SIGRTMIN):
        if signo not in skip:
            try:
                _signal.signal(signo, forward)
            except (OSError, ValueError):
                pass
    if pump is not None:
        pump.receive("the process")
        pump.copy(pid)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit_code": os.waitstatus_to_exitcode(status)}
