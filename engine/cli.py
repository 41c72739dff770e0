"""runlog's command line: runc's global flags and commands, plus runlog's own.

Only this module turns errors into messages and exit codes. It imports
nothing heavy: each command's code is imported when that command runs
(``Cmd.target``), so ``runlog state`` pays for neither SQLAlchemy nor YAML.
"""

from __future__ import annotations

import sys

from engine.cmdline import Cmd, Opt, check_args, parse, usage
from engine.errors import InvalidId, RunlogError, StateDenied, UnsupportedError, UsageError
from engine.layout import FORKS_MONITOR
from engine.oci.errors import SignalError
from engine.runtime.cli import prefork
from engine.settings import DEFAULT_DB, DEFAULT_ROOT, INIT_PARENTS, Settings, environ, log_line
from engine.siteconfig import CGROUP_MANAGERS

__all__ = ["COMMANDS", "GLOBAL_OPTS", "main"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "runlog"

GLOBAL_OPTS = (
    # Defaults live in Settings, so the environment can sit between the two.
    Opt(
        "--root",
        value=True,
        metavar="DIR",
        help=f"state directory root ({DEFAULT_ROOT}; not root: $XDG_RUNTIME_DIR/runlog)",
    ),
    Opt(
        "--db",
        repeat=True,
        metavar="PATH|URL",
        help=f"event log database ({DEFAULT_DB}; not root: ~/.local/state/runlog/events.db); "
        "audit, history and replay read several (--db again, or a glob)",
    ),
    Opt("--machine", value=True, metavar="FILE", help="machine definition (statemachine.yaml)"),
    Opt("--log", value=True, metavar="FILE", help="write runlog's own log lines to FILE"),
    Opt("--log-format", value=True, choices=("text", "json"), default="text", help="log format"),
    Opt("--debug", help="log debug lines"),
    Opt("--systemd-cgroup", help="manage cgroups through systemd (not supported)"),
    Opt(
        "--cgroup-manager",
        value=True,
        choices=CGROUP_MANAGERS,
        help="as crun's: cgroupfs (default); disabled: the container gets no cgroup of its "
        "own, its processes stay in the caller's; systemd is not supported",
    ),
    Opt("--rootless", value=True, metavar="true|false|auto", help="as runc (default: auto)"),
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
# The CRIU flags runc's checkpoint and restore share.
_CRIU = (
    Opt("--work-path", value=True, metavar="DIR", help="CRIU's logs and work files"),
    Opt("--tcp-established", help="allow open tcp connections"),
    Opt("--ext-unix-sk", help="allow external unix sockets"),
    Opt("--shell-job", help="allow shell jobs"),
    Opt("--file-locks", help="handle file locks"),
    Opt("--manage-cgroups-mode", value=True, metavar="MODE", help="soft|full|strict"),
    Opt("--empty-ns", repeat=True, metavar="NS", help="create a namespace, not restore"),
    Opt("--auto-dedup", help="deduplicate with the parent's images"),
    Opt("--lazy-pages", help="use userfaultfd to lazily restore memory pages"),
)

# runc's commands, with runc's names, flags and argument counts.
RUNC_COMMANDS = (
    Cmd("create", _C + "create", "create a container", *_ID, _CREATE_OPTS),
    Cmd(
        "start",
        _C + "start",
        "start the user process of a created container",
        *_ID,
        (
            Opt(
                "--bind",
                help="and wait for it as wait --bind, bound from before the start; "
                "print its status and exit with it",
            ),
        ),
    ),
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
    Cmd(
        "exec",
        "engine.commands.execute:main",
        "run a process in a running container",
        "ID COMMAND [ARGS...] | -p process.json ID",
        1,
        None,
        (
            _CONSOLE,
            Opt("--cwd", value=True, metavar="DIR", help="working directory in the container"),
            Opt("--env", "-e", repeat=True, metavar="NAME=VALUE", help="set environment variables"),
            Opt("--tty", "-t", help="allocate a pseudo-TTY"),
            Opt("--user", "-u", value=True, metavar="UID[:GID]", help="the process's uid and gid"),
            Opt("--additional-gids", "-g", repeat=True, metavar="GID", help="additional gids"),
            Opt("--process", "-p", value=True, metavar="FILE", help="path to the process.json"),
            Opt("--detach", "-d", help="detach from the container's process"),
            Opt("--pid-file", value=True, metavar="FILE", help="write the process's pid here"),
            Opt("--process-label", value=True, metavar="LABEL", help="SELinux label (refused)"),
            Opt("--apparmor", value=True, metavar="PROFILE", help="AppArmor profile (refused)"),
            Opt("--no-new-privs", help="set no_new_privs for the process"),
            Opt("--cap", "-c", repeat=True, metavar="CAP", help="add a capability"),
            Opt("--preserve-fds", value=True, metavar="N", default="0", help="pass N more fds"),
            Opt("--cgroup", repeat=True, metavar="[CTRL:]PATH", help="an existing sub-cgroup"),
            Opt("--ignore-paused", help="allow exec in a paused container"),
        ),
        interleave=False,
    ),
    Cmd(
        "update",
        "engine.commands.update:main",
        "update a container's resource limits",
        *_ID,
        (
            Opt(
                "--resources",
                "-r",
                value=True,
                metavar="FILE",
                help="linux.resources JSON, - stdin",
            ),
            Opt("--blkio-weight", value=True, metavar="N", help="block IO weight (10-1000)"),
            Opt("--cpu-period", value=True, metavar="US", help="CPU CFS period"),
            Opt("--cpu-quota", value=True, metavar="US", help="CPU CFS quota"),
            Opt("--cpu-share", value=True, metavar="N", help="CPU shares (relative weight)"),
            Opt("--cpu-rt-period", value=True, metavar="US", help="CPU realtime period"),
            Opt("--cpu-rt-runtime", value=True, metavar="US", help="CPU realtime runtime"),
            Opt("--cpuset-cpus", value=True, metavar="LIST", help="CPUs to use"),
            Opt("--cpuset-mems", value=True, metavar="LIST", help="memory nodes to use"),
            Opt("--kernel-memory", value=True, metavar="SIZE", help="kernel memory limit"),
            Opt("--kernel-memory-tcp", value=True, metavar="SIZE", help="kernel TCP memory"),
            Opt("--memory", value=True, metavar="SIZE", help="memory limit"),
            Opt("--memory-reservation", value=True, metavar="SIZE", help="memory soft limit"),
            Opt("--memory-swap", value=True, metavar="SIZE", help="memory plus swap limit"),
            Opt("--pids-limit", value=True, metavar="N", help="maximum number of pids"),
            Opt("--l3-cache-schema", value=True, metavar="S", help="Intel RDT (not enabled)"),
            Opt("--mem-bw-schema", value=True, metavar="S", help="Intel RDT (not enabled)"),
        ),
    ),
    Cmd(
        "checkpoint",
        "engine.commands.checkpoint:checkpoint",
        "checkpoint a running container through CRIU",
        *_ID,
        (
            *_CRIU,
            Opt("--image-path", value=True, metavar="DIR", help="where to write the images"),
            Opt("--parent-path", value=True, metavar="DIR", help="a previous dump"),
            Opt("--leave-running", help="leave the process running after checkpointing"),
            Opt("--status-fd", value=True, metavar="FD", help="CRIU's status fd"),
            Opt("--page-server", value=True, metavar="ADDR:PORT", help="CRIU's page server"),
            Opt("--pre-dump", help="dump the memory only, leave the container running"),
        ),
    ),
    Cmd(
        "restore",
        "engine.commands.checkpoint:restore",
        "restore a container from a checkpoint through CRIU",
        *_ID,
        (
            _BUNDLE,
            _CONSOLE,
            _PID_FILE,
            *_CRIU,
            Opt("--image-path", value=True, metavar="DIR", help="where the images are"),
            Opt("--detach", "-d", help="detach from the container's process"),
            Opt("--no-subreaper", help="disable the use of the subreaper"),
            Opt("--no-pivot", help="chroot instead of pivot_root"),
            Opt("--lsm-profile", value=True, metavar="PROFILE", help="LSM profile"),
            Opt("--lsm-mount-context", value=True, metavar="CTX", help="LSM mount context"),
        ),
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
        "the container's processes; ps options after the ID go to ps (default -ef)",
        "ID [PS-OPTIONS...]",
        1,
        None,
        (Opt("--format", "-f", value=True, choices=("table", "json"), default="table"),),
        interleave=False,
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
    Cmd(
        "help",
        "engine.cli:help_command",
        "shows a list of commands or help for one command",
        "[COMMAND]",
        0,
        1,
    ),
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
            (
                Opt(
                    "--bind",
                    help="forward the signals it gets to the init; if it is killed, kill the "
                    "container",
                ),
            ),
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
            (
                Opt(
                    "--format",
                    "-f",
                    value=True,
                    choices=("mermaid", "dot"),
                    default="mermaid",
                    help="of graph",
                ),
            ),
        ),
        Cmd(
            "db",
            "engine.commands.db:main",
            "upgrade the event log's schema, show its revision, or prune old events",
            "upgrade|current|prune",
            1,
            1,
            (
                Opt("--before", value=True, metavar="DATE", help="prune: events before DATE"),
                Opt("--node", value=True, metavar="NAME", help="upgrade: older events' node"),
            ),
        ),
        Cmd(
            "ship",
            "engine.commands.ship:main",
            "send this node's event logs to the cluster's PostgreSQL database",
            "",
            0,
            0,
            (
                Opt("--to", value=True, metavar="URL", help="postgresql://USER@HOST/DB"),
                Opt("--log", repeat=True, metavar="PATH", help="a log to send (default: --db)"),
                Opt("--node", value=True, metavar="NAME", help="this node's name (hostname)"),
                Opt("--follow", help="keep sending as events are recorded"),
            ),
        ),
        Cmd(
            "witness",
            "engine.commands.witness:main",
            "record each node log's event hashes where its owner cannot write (root)",
            "",
            0,
            0,
            (
                Opt("--log", repeat=True, metavar="PATH", help="a log to witness (default: all)"),
                Opt("--witness", value=True, metavar="DIR", help="where (/var/lib/runlog/witness)"),
                Opt("--follow", help="keep recording as events are recorded"),
            ),
        ),
        Cmd(
            "history",
            "engine.commands.history:main",
            "one container's life: transitions, action results, rejected requests",
            "ID",
            1,
            1,
            (
                FORMAT,
                Opt("--all", help="every life of the id, not only the latest"),
                Opt("--node", value=True, metavar="NAME", help="cluster database: this node's"),
            ),
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
                Opt("--node", repeat=True, metavar="NAME", help="events of this node"),
                Opt("--user", repeat=True, metavar="NAME", help="requests by this user name"),
                Opt("--job", repeat=True, metavar="ID", help="requests from this Slurm job"),
                Opt("--limit", value=True, metavar="N", help="the latest N (summary: top N)"),
                Opt("--summary", help="counts by trigger, state, hook point; slowest transitions"),
                Opt("--verify", help="check the hash chain; name the first broken link"),
                Opt("--witness", value=True, metavar="DIR", help="--verify: the witness's records"),
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
                Opt("--node", repeat=True, metavar="NAME", help="histories of this node"),
                Opt("--user", repeat=True, metavar="NAME", help="requests by this user name"),
                Opt("--job", repeat=True, metavar="ID", help="requests from this Slurm job"),
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


def _version() -> str:
    """As runc prints it: version, commit, spec, then the language and libseccomp."""
    import platform

    from engine.linux.libseccomp import library_version
    from engine.oci.version import OCI_VERSION, RUNLOG_VERSION, commit

    lines = [
        f"{PROG} version {RUNLOG_VERSION}",
        f"commit: {commit()}",
        f"spec: {OCI_VERSION}",
        f"python: {platform.python_version()}",
    ]
    seccomp = library_version()
    if seccomp is not None:
        lines.append(f"libseccomp: {seccomp}")
    return "\n".join(lines) + "\n"


def _help(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        args = ["help"]
    if not args:
        sys.stdout.write(usage(PROG, None, list(COMMANDS.values()), GLOBAL_OPTS) + "\n")
        return 0
    cmd = COMMANDS.get(args[0])
    if cmd is None:
        raise UsageError(f"No help topic for '{args[0]}'")
    sys.stdout.write(usage(PROG, cmd, (), ()) + "\n")
    return 0


def help_command(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    return _help(args)


def _log_line(settings_log: str | None, fmt: str, level: str, msg: str) -> None:
    """Append a logrus-style line to ``--log``, as runc writes its own log."""
    log_line(settings_log, fmt, level, msg)


def _refused(gflags: dict[str, object], words: list[str], err: RunlogError) -> None:
    """Record a refusal made here, before any monitor was asked."""
    from engine.runtime.shared.record import command_refused

    try:
        settings = Settings.from_flags(gflags, environ())
    except RunlogError:
        return
    command_refused(settings, words[0], words[1:], err)


#: The commands that read several logs in one go (--db given more than once,
#: or a glob: engine.audit.multi); others take the last --db, as runc takes
#: a repeated flag.
READS_SEVERAL = ("audit", "history", "replay")
# What touches neither the root nor the log (runc's spec and features neither).
NO_PLACES = ("spec", "features")


def _parse_globals(args: list[str]) -> tuple[dict[str, object], list[str]]:
    """The global flags and the rest; ``db`` is the last ``--db`` given (or
    None), ``dbs`` every one."""
    gflags, rest = parse(GLOBAL_OPTS, args, interleave=False, where=PROG)
    given = gflags.get("db")
    dbs = [str(d) for d in given] if isinstance(given, list) else []
    gflags["db"], gflags["dbs"] = (dbs[-1] if dbs else None), dbs
    return gflags, rest


def _handler(target: str) -> Callable[[Settings, dict[str, object], list[str]], int]:
    module, _, func = target.partition(":")
    handler: Callable[[Settings, dict[str, object], list[str]], int]
    handler = getattr(__import__(module, fromlist=[func]), func)
    return handler


def _own_places(settings: Settings, command: str) -> None:
    """The caller's default places, made and checked, unless the command
    touches none."""
    if command not in NO_PLACES:
        settings.own_places()


def _run(
    name: str, target: str, settings: Settings, flags: dict[str, object], args: list[str]
) -> int:
    """The command's handler. A file of another user's container that could
    not be opened: the refusal is recorded as a missing container's is, or
    its one line says it is not (engine.commands.container.absent)."""
    try:
        return _handler(target)(settings, flags, args)
    except StateDenied as err:
        if not err.tried:
            from engine.commands.container import absent
            from engine.runtime.shared.statedir import StateDir

            absent(settings, StateDir(settings.root, err.container_id), name, err)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    gflags: dict[str, object] = {}
    words: list[str] = []
    parsed = False
    try:
        gflags, rest = _parse_globals(args)
        if gflags["version"]:
            sys.stdout.write(_version())
            return 0
        if not rest or gflags["help"]:
            sys.stdout.write(usage(PROG, None, list(COMMANDS.values()), GLOBAL_OPTS) + "\n")
            return 0
        name, cargs = rest[0], rest[1:]
        if name in ("help", "h"):
            # runc's help [COMMAND]
            return _help(cargs)
        words = list(rest)
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UsageError(f"{PROG}: unknown command {name!r}; see '{PROG} --help'")
        cflags, positionals = parse(
            cmd.opts + HELP, cargs, interleave=cmd.interleave, where=f"{PROG} {name}"
        )
        if cflags["help"]:
            sys.stdout.write(usage(PROG, cmd, (), ()) + "\n")
            return 0
        check_args(cmd, positionals, PROG)
        if name in READS_SEVERAL:
            cflags["db"] = gflags["dbs"]
        settings = Settings.from_flags(gflags, environ())
        parsed = True
        _own_places(settings, name)
        if settings.systemd_cgroup:
            raise _no_systemd(settings, bool(gflags["systemd_cgroup"]))
        if settings.debug:
            for line in [f"{name} {' '.join(cargs)}", *settings.origins()]:
                if settings.log:
                    _log_line(settings.log, settings.log_format, "debug", line)
                else:
                    sys.stderr.write(f"debug: {line}\n")
        if name in FORKS_MONITOR:
            # Forked already by engine.quick, as a rule; its imports overlap
            # the handler's (engine.runtime.cli.prefork).
            prefork.start()
        return _run(name, cmd.target, settings, cflags, positionals)
    except RunlogError as err:
        message = str(err)
        sys.stderr.write(message + "\n")
        # Refused on the command line (a flag, a value, an id, a signal),
        # before any monitor was asked: recorded for the container it names.
        if words and (not parsed or isinstance(err, (InvalidId, SignalError, UsageError))):
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


def _no_systemd(settings: Settings, flag: bool) -> UnsupportedError:
    """The refusal of ``--systemd-cgroup`` (``flag``) or of the systemd
    cgroup manager (``--cgroup-manager``, its variable, the site file)."""
    import os

    source = settings.sources.get("cgroup_manager", "")
    if flag or source == "--cgroup-manager":
        name, undo = ("--systemd-cgroup" if flag else "--cgroup-manager=systemd"), "the flag"
    else:
        name, undo = f"cgroup manager systemd (from {source})", "that setting"
    why = "" if os.path.isdir("/run/systemd/system") else " (and systemd is not running here)"
    return UnsupportedError(
        f"{name}: runlog manages cgroups through cgroupfs only{why}; drop {undo}"
    )
