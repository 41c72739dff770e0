"""runlog's command line: runc's global flags and commands, plus runlog's own.

Only this module turns errors into messages and exit codes. It imports
nothing heavy: each command's code is imported when that command runs
(``Cmd.target``), so ``runlog state`` pays for neither SQLAlchemy nor YAML.
"""

from __future__ import annotations

import os
import sys
import time

from engine.cmdline import Cmd, Opt, check_args, parse, usage
from engine.errors import RunlogError, UnsupportedError, UsageError
from engine.settings import DEFAULT_DB, DEFAULT_ROOT, Settings

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
    Opt("-h", "--help", help="show help"),
    Opt("-v", "--version", help="print the version"),
)
HELP = (Opt("-h", "--help", help="show help"),)
FORMAT = Opt("--format", "-f", value=True, choices=("table", "jsonl"), default="table")

COMMANDS = {
    c.name: c
    for c in (
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
            "one container's events, in order",
            "ID",
            1,
            1,
            (FORMAT,),
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


def _handler(target: str) -> Callable[[Settings, dict[str, object], list[str]], int]:
    module, _, func = target.partition(":")
    handler: Callable[[Settings, dict[str, object], list[str]], int]
    handler = getattr(__import__(module, fromlist=[func]), func)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    gflags: dict[str, object] = {}
    try:
        gflags, rest = parse(GLOBAL_OPTS, args, interleave=False, where=PROG)
        if gflags["version"]:
            sys.stdout.write(f"{PROG} version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if not rest or gflags["help"]:
            sys.stdout.write(usage(PROG, None, list(COMMANDS.values()), GLOBAL_OPTS) + "\n")
            return 0
        name, cargs = rest[0], rest[1:]
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UsageError(f"{PROG}: unknown command {name!r}; see '{PROG} --help'")
        cflags, positionals = parse(cmd.opts + HELP, cargs, interleave=True, where=f"{PROG} {name}")
        if cflags["help"]:
            sys.stdout.write(usage(PROG, cmd, (), ()) + "\n")
            return 0
        check_args(cmd, positionals, PROG)
        settings = Settings.from_flags(gflags, os.environ)
        if settings.systemd_cgroup:
            raise UnsupportedError(
                "--systemd-cgroup: runlog manages cgroups through cgroupfs only "
                "(and systemd is not running here); drop the flag"
                if not os.path.isdir("/run/systemd/system")
                else "--systemd-cgroup: runlog manages cgroups through cgroupfs only; drop the flag"
            )
        if settings.debug:
            _log_line(settings.log, settings.log_format, "debug", f"{name} {' '.join(cargs)}")
        return _handler(cmd.target)(settings, cflags, positionals)
    except RunlogError as err:
        message = str(err)
        sys.stderr.write(message + "\n")
        log = gflags.get("log") or os.environ.get("RUNLOG_LOG")
        _log_line(
            str(log) if log else None, str(gflags.get("log_format") or "text"), "error", message
        )
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `runlog history x | head`: the reader left; not an error.
        return 0
