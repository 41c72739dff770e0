"""runlog's command line: runc's global flags and commands, plus runlog's own.

Only this module turns errors into messages and exit codes. It imports
nothing heavy: each command's code is imported when that command runs
(``Cmd.target``), so ``runlog state`` pays for neither SQLAlchemy nor YAML.
"""

from __future__ import annotations

import sys
import time

from engine.cmdline import Cmd, Opt, check_args, parse, usage
from engine.errors import InvalidId, RunlogError, UnsupportedError, UsageError
from engine.oci.errors import SignalError
from engine.quick import FORKS_MONITOR
from engine.runtime import prefork
from engine.settings import DEFAULT_DB, DEFAULT_ROOT, INIT_PARENTS, Settings, environ

__all__ = ["COMMANDS", "GLOBAL_OPTS", "main"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "runlog"
VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"

GLOBAL_OPTS = (
    # Defaults live in Settings, so the environment can sit between the two.
    Opt("--root", value=True, metavar="DIR", help=f"state directory root ({DEFAULT_ROOT})"),
    Opt("--db", value=True, metavar="PATH|URL", help=f"event log database ({DEFAULT_DB})"),
    Opt("--machine", value=True, metavar="FILE", help="machine definition (statemachine.yaml)"),
    Opt("--log", value=True, metavar="FILE", help="write runlog's own log lines to FILE"),
    Opt("--log-format", value=True, choices=("text", "json"), default="text", help="log format"),
    Opt("--debug", help="log debug lines"),
    Opt("--systemd-cgroup", help="manage cgroups through systemd (not supported)"),
    Opt("--rootless", value=True, metavar="true|false|auto", default="auto", help="as runc"),
    Opt(
        "--init-parent",
        value=True,
        choices=INIT_PARENTS,
        help="who reaps the container's init: its monitor, or (as with runc) the caller "
        "of create; auto: the caller when it is a child subreaper (default: auto)",
    ),
    Opt("-h", "--help", help="show help"),
    Opt("-v", "--version", help="print the version"),
)
HELP = (Opt("-h", "--help", help="show help"),)
FORMAT = Opt("--format", "-f", value=True, choices=("table", "jsonl"), default="table")

_C = "engine.commands.container:"
_I = "engine.commands.info:"
_BUNDLE = Opt("--bundle", "-b", value=True, metavar="DIR", help="the bundle (default: .)")
_PID_FILE = Opt("--pid-file", value=True, metavar="FILE", help="write the init's pid here")
_CONSOLE = Opt("--console-socket", value=True, metavar="PATH", help="send the pty master here")
_CREATE_OPTS = (
    _BUNDLE,
    _PID_FILE,
    _CONSOLE,
    Opt("--no-pivot", help="chroot instead of pivot_root"),
    Opt("--no-new-keyring", help="accepted (no keyrings are created)"),
    Opt("--preserve-fds", value=True, metavar="N", default="0", help="accepted"),
    Opt("--log-path", value=True, metavar="FILE", help="the container's stdout/stderr to FILE"),
    Opt(
        "--log-format",
        value=True,
        choices=("basic", "kubernetes", "json"),
        default="basic",
        help="of --log-path",
    ),
)
_ID = ("ID", 1, 1)

# runc's commands, with runc's names, flags and argument counts.
RUNC_COMMANDS = (
    Cmd("create", _C + "create", "create a container", *_ID, _CREATE_OPTS),
    Cmd("start", _C + "start", "start the user process of a created container", *_ID),
    Cmd("state", _C + "state", "print the state of a container", *_ID),
    Cmd(
        "kill",
        _C + "kill",
        "send a signal (default TERM) to the container's init",
        "ID [SIGNAL]",
        1,
        2,
        (Opt("--all", "-a", help="to every process of the container"),),
    ),
    Cmd(
        "delete",
        _C + "delete",
        "delete a stopped container",
        *_ID,
        (Opt("--force", "-f", help="kill it first if it is running"),),
    ),
    Cmd(
        "run",
        _C + "run",
        "create and start a container; in the foreground, wait for it",
        *_ID,
        (*_CREATE_OPTS, Opt("--detach", "-d", help="do not wait")),
    ),
    Cmd("pause", _C + "pause", "freeze every process of a container", *_ID),
    Cmd("resume", _C + "resume", "thaw a paused container", *_ID),
    Cmd(
        "list",
        _I + "list_",
        "list containers",
        opts=(
            Opt("--quiet", "-q", help="ids only"),
            Opt("--format", "-f", value=True, choices=("table", "json"), default="table"),
        ),
    ),
    Cmd(
        "ps",
        _I + "ps",
        "the container's processes",
        "ID [PS-ARGS...]",
        1,
        None,
        (Opt("--format", "-f", value=True, choices=("table", "json"), default="table"),),
    ),
    Cmd(
        "events",
        "engine.commands.events:main",
        "resource statistics of a container; --follow: its events, live",
        *_ID,
        (
            Opt("--stats", help="one sample, then exit"),
            Opt("--interval", value=True, default="5s", help="between samples"),
            Opt("--follow", help="the container's events as JSON lines, until it is deleted"),
        ),
    ),
    Cmd(
        "spec",
        _I + "spec",
        "write a default config.json",
        opts=(_BUNDLE, Opt("--rootless", help="for a rootless container")),
    ),
    Cmd("features", _I + "features", "what this runtime supports, as JSON"),
)

COMMANDS = {
    c.name: c
    for c in (
        *RUNC_COMMANDS,
        Cmd(
            "wait",
            _C + "wait",
            "wait for the container's init to end; print its status and exit with it",
            *_ID,
        ),
        Cmd(
            "attach",
            _C + "attach",
            "attach to a container created with --log-path: its output here, stdin to it",
            *_ID,
        ),
        Cmd(
            "ctl",
            _C + "ctl",
            "send one control request (JSON) to the container's monitor; print the reply",
            "ID REQUEST-JSON",
            2,
            2,
            (
                Opt("--spool", help="through the request spool rather than control.sock"),
                Opt("--timeout", value=True, metavar="SECONDS", default="60", help="0: none"),
            ),
        ),
        Cmd(
            "machine",
            "engine.commands.machine:main",
            "check, show or graph a machine definition",
            "check|show|graph [FILE]",
            1,
            2,
        ),
        Cmd(
            "db",
            "engine.commands.db:main",
            "upgrade the event log's schema, or show its revision",
            "upgrade|current",
            1,
            1,
        ),
        Cmd(
            "history",
            "engine.commands.history:main",
            "one container's life: transitions, action results, rejected requests",
            "ID",
            1,
            1,
            (FORMAT,),
        ),
        Cmd(
            "audit",
            "engine.commands.audit:main",
            "events across containers, filtered; --summary counts a time window",
            "",
            0,
            0,
            (
                Opt("--id", repeat=True, metavar="ID", help="this container; ID* for a prefix"),
                Opt("--since", value=True, metavar="TIME", help="ISO 8601, or an age: 2h, 7d"),
                Opt("--until", value=True, metavar="TIME", help="events before TIME, as --since"),
                Opt("--trigger", repeat=True, metavar="NAME", help="events of this trigger"),
                Opt("--outcome", repeat=True, metavar="OUTCOME", help="ok, rejected or failed"),
                Opt("--actor-uid", repeat=True, metavar="UID", help="requests by this uid"),
                Opt("--transport", repeat=True, metavar="NAME", help="cli, socket, spool, ..."),
                Opt("--state", repeat=True, metavar="STATE", help="containers now in STATE"),
                Opt("--limit", value=True, metavar="N", help="the latest N (summary: top N)"),
                Opt("--summary", help="counts by trigger, state, hook point; slowest transitions"),
                Opt(
                    "--format",
                    "-f",
                    value=True,
                    choices=("table", "jsonl", "csv"),
                    help="default: table on a terminal, else jsonl",
                ),
            ),
        ),
        Cmd(
            "replay",
            "engine.commands.replay:main",
            "replay recorded histories through a machine definition",
            "",
            0,
            0,
            (
                Opt("--id", repeat=True, metavar="ID", help="this container; ID* for a prefix"),
                Opt("--until", value=True, metavar="SEQ|TIME", help="--id: the state then"),
                Opt("--all", help="verify every history (or those the filters select)"),
                Opt("--machine", value=True, metavar="FILE", help="instead of the recorded one"),
                Opt("--export", value=True, metavar="DIR", help="write histories as fixtures"),
                Opt("--fixtures", value=True, metavar="DIR", help="verify fixture files, no db"),
                Opt("--since", value=True, metavar="TIME", help="histories with events since"),
                Opt("--trigger", repeat=True, metavar="NAME", help="histories with this trigger"),
                Opt("--outcome", repeat=True, metavar="OUTCOME", help="ok, rejected or failed"),
                Opt("--actor-uid", repeat=True, metavar="UID", help="requests by this uid"),
                Opt("--transport", repeat=True, metavar="NAME", help="cli, socket, spool, ..."),
                Opt("--state", repeat=True, metavar="STATE", help="containers now in STATE"),
                Opt("--verbose", "-v", help="list the histories that agree too"),
                Opt(
                    "--format",
                    "-f",
                    value=True,
                    choices=("table", "jsonl"),
                    default="table",
                    help="output",
                ),
            ),
        ),
    )
}


def _log_line(settings_log: str | None, fmt: str, level: str, msg: str) -> None:
    """Append a logrus-style line to ``--log``, as runc writes its own log."""
    if not settings_log:
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if fmt == "json":
        from engine import jsonfast

        line = jsonfast.dumps({"level": level, "msg": msg, "time": now})
    else:
        quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
        line = f'time="{now}" level={level} msg="{quoted}"'
    try:
        with open(settings_log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as err:
        sys.stderr.write(f"{PROG}: cannot write log {settings_log}: {err.strerror}\n")


def _refused(gflags: dict[str, object], words: list[str], err: RunlogError) -> None:
    """Record a refusal made here, before any monitor was asked."""
    from engine.runtime.record import command_refused

    try:
        settings = Settings.from_flags(gflags, environ())
    except RunlogError:
        return
    command_refused(settings, words[0], words[1:], err)


def _handler(target: str) -> Callable[[Settings, dict[str, object], list[str]], int]:
    module, _, func = target.partition(":")
    handler: Callable[[Settings, dict[str, object], list[str]], int]
    handler = getattr(__import__(module, fromlist=[func]), func)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    gflags: dict[str, object] = {}
    words: list[str] = []
    parsed = False
    try:
        gflags, rest = parse(GLOBAL_OPTS, args, interleave=False, where=PROG)
        if gflags["version"]:
            sys.stdout.write(f"{PROG} version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if not rest or gflags["help"]:
            sys.stdout.write(usage(PROG, None, list(COMMANDS.values()), GLOBAL_OPTS) + "\n")
            return 0
        name, cargs = rest[0], rest[1:]
        words = list(rest)
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UsageError(f"{PROG}: unknown command {name!r}; see '{PROG} --help'")
        cflags, positionals = parse(cmd.opts + HELP, cargs, interleave=True, where=f"{PROG} {name}")
        if cflags["help"]:
            sys.stdout.write(usage(PROG, cmd, (), ()) + "\n")
            return 0
        check_args(cmd, positionals, PROG)
        settings = Settings.from_flags(gflags, environ())
        parsed = True
        if settings.systemd_cgroup:
            import os

            raise UnsupportedError(
                "--systemd-cgroup: runlog manages cgroups through cgroupfs only "
                "(and systemd is not running here); drop the flag"
                if not os.path.isdir("/run/systemd/system")
                else "--systemd-cgroup: runlog manages cgroups through cgroupfs only; drop the flag"
            )
        if settings.debug:
            _log_line(settings.log, settings.log_format, "debug", f"{name} {' '.join(cargs)}")
        if name in FORKS_MONITOR:
            # Forked already by engine.quick, as a rule; its imports overlap
            # the handler's (engine.runtime.prefork).
            prefork.start()
        return _handler(cmd.target)(settings, cflags, positionals)
    except RunlogError as err:
        message = str(err)
        sys.stderr.write(message + "\n")
        if words and (not parsed or isinstance(err, (InvalidId, SignalError))):
            _refused(gflags, words, err)
        log = gflags.get("log") or environ().get("RUNLOG_LOG")
        _log_line(
            str(log) if log else None, str(gflags.get("log_format") or "text"), "error", message
        )
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `runlog history x | head`: the reader left; not an error.
        return 0
    finally:
        early = prefork.take()
        if early is not None:  # the handler failed before it needed the monitor
            early.abandon()
