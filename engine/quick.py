"""What a scheduler calls on every step, the short way: ``state``, ``start``,
``pause``, ``resume``, ``kill`` and ``delete``.

Each call pays the interpreter's start (about 6 ms here) and what runlog
loads on top of it, and Slurm polls ``state``. For the usual call - global
flags among ``--root``, ``--db`` and ``--rootless``, the command, one
container id (and ``--force`` for ``delete``; ``--all`` and a signal for
``kill``, as Slurm's RunTimeKill and conmon give them), a monitor that answers -
this module gives what :mod:`engine.cli` gives, with the one control
client (:mod:`engine.control`, which speaks :mod:`engine.wire`'s format)
and :mod:`engine.layout`: about 2 ms less a call. The usual reply is read
as it is (:func:`engine.control.state_text_of`, :func:`engine.control.is_ok`); the
JSON scanner, a shared library, loads only for another. The entry stub
and ``python -m engine`` start here.

Everything else goes to :mod:`engine.cli` before a request is sent: other
flags, help, an id runc would refuse, ``RUNLOG_LOG`` (the full path writes
that log), a container without a state directory or without a monitor (the
full path records the refusal, or reconciles). Once a request is sent, its
answer is given here, with engine.cli's words and exit codes; only an
answer that never came - the monitor died - goes to the full path, which
finds no monitor and reconciles. A monitor that answers is asked once.
"""

import posix
import sys

from engine.layout import (
    CONTROL,
    FORKS_MONITOR,
    REQUEST_TIMEOUT,
    RUNTIME,
    STATE,
    STATE_TIMEOUT,
    container_path,
    default_root,
    is_valid_id,
    private,
)

__all__ = [
    "COMMANDS",
    "FORKS_MONITOR",
    "GLOBAL_SWITCHES",
    "GLOBAL_VALUE_FLAGS",
    "Call",
    "command_of",
    "console",
    "main",
    "recognize",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

COMMANDS = frozenset({"state", "start", "pause", "resume", "kill", "delete"})
#: engine.cli's global flags, by whether they take a value (a test holds
#: these to engine.cli.GLOBAL_OPTS).
GLOBAL_VALUE_FLAGS = frozenset(
    {
        "--root",
        "--db",
        "--machine",
        "--log",
        "--log-format",
        "--rootless",
        "--init-parent",
        "--cgroup-manager",
    }
)
GLOBAL_SWITCHES = frozenset({"--debug", "--systemd-cgroup", "--help", "-h", "--version", "-v"})
_GLOBAL_FLAGS = GLOBAL_VALUE_FLAGS | GLOBAL_SWITCHES
# Global flags with a value; --db, --rootless and --cgroup-manager do not
# change these calls (the monitor knows what create was given).
_GLOBALS = frozenset({"--root", "--db", "--rootless", "--cgroup-manager"})
# --cgroup-manager's values that these calls take (engine.settings); systemd
# and another are refused by engine.cli.
_MANAGERS = frozenset({"cgroupfs", "disabled"})
_FORCE = ("--force", "-f")
_ALL = ("--all", "-a")
#: runc kill's default signal, SIGTERM; the highest signal number.
_TERM = 15
_SIGRTMAX = 64
# --rootless's values (engine.settings.parse_rootless); another is refused there.
_ROOTLESS = frozenset(
    {"", "auto", "AUTO", "Auto", "1", "t", "T", "true", "TRUE", "True"}
    | {"0", "f", "F", "false", "FALSE", "False"}
)


class Call:
    """A command line :func:`recognize` took: one request to one monitor."""

    __slots__ = ("command", "container_id", "db", "everyone", "force", "root", "signal")

    def __init__(
        self,
        root: str,
        db: str,
        command: str,
        container_id: str,
        force: bool = False,
        signal: int = _TERM,
        everyone: bool = False,
    ) -> None:
        self.root = root
        self.db = db  # as given ("" if not), for what engine.cli records
        self.command = command
        self.container_id = container_id
        self.force = force
        self.signal = signal  # kill's
        self.everyone = everyone  # kill's --all

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Call({fields})"

    def run(self) -> "int | None":
        """Ask the monitor; the exit code, or ``None`` for engine.cli to answer."""
        # Here, not at the top: create's and run's monitor is forked before
        # the client loads (0.25 ms sooner), and they never ask this way.
        from engine.control import (
            NoMonitor,
            error_of,
            exchange,
            is_ok,
            reply_of,
            request_line,
            state_text,
            state_text_of,
            wait_gone,
        )

        path = container_path(self.root, self.container_id, CONTROL)
        monitor = self._monitor_pid() if self.command == "delete" else None
        if self.command == "delete":
            request = request_line(self.command, force=self.force)
        elif self.command == "kill":
            request = request_line(self.command, signal=self.signal, all=self.everyone)
        else:
            request = request_line(self.command)
        timeout = STATE_TIMEOUT if self.command == "state" else REQUEST_TIMEOUT
        try:
            data = exchange(path, request, timeout)
        except NoMonitor:
            return None
        except TimeoutError:
            if self.command == "state":
                return self._state_json()
            return _fail(f"the monitor at {path} did not answer within {timeout:g} s", 1)
        if not data:
            return None  # the monitor died before it answered
        # The usual answer, read without the JSON scanner (engine.control).
        if self.command == "state":
            text = state_text_of(data)
            if text is not None:
                sys.stdout.buffer.write(text + b"\n")
                return 0
        elif is_ok(data):
            if monitor is not None:
                wait_gone(monitor)
            return 0
        try:
            reply = reply_of(path, data)
        except ValueError as err:
            return _fail(str(err), 1)
        if not reply.get("ok"):
            return _fail(*error_of(reply))
        if self.command == "state":
            sys.stdout.buffer.write(state_text(reply) + b"\n")
            return 0
        if monitor is not None:
            wait_gone(monitor)
        return 0

    def _monitor_pid(self) -> "int | None":
        """runtime.json's monitor, whose exit ``delete`` waits for."""
        try:
            data = _read(container_path(self.root, self.container_id, RUNTIME))
        except OSError:
            return None
        # The monitor writes it compact, its own pid first.
        head = b'{"monitor_pid":'
        if data.startswith(head):
            digits = data[len(head) : data.find(b",", len(head))]
            if digits.isdigit():
                return int(digits)
        from engine import jsonfast

        try:
            info = jsonfast.loads(data)
        except ValueError:
            return None
        pid = info.get("monitor_pid") if isinstance(info, dict) else None
        return pid if isinstance(pid, int) else None

    def _state_json(self) -> int:
        """A monitor too busy to answer (a long hook): ``state.json`` answers."""
        try:
            data = _read(container_path(self.root, self.container_id, STATE))
        except FileNotFoundError:
            # Deleted meanwhile: refused and recorded as engine.cli does it.
            from engine.commands.container import absent
            from engine.runtime.shared.statedir import StateDir
            from engine.settings import Settings, environ

            settings = Settings.from_flags({"root": self.root, "db": self.db}, environ())
            error = absent(settings, StateDir(self.root, self.container_id), "state")
            return _fail(str(error), error.exit_code)
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        from engine.commands.container import answered_from_file

        answered_from_file(self.root, self.db, self.container_id, data)
        return 0


def recognize(argv: "Sequence[str]", env: "Mapping[bytes, bytes]") -> "Call | None":
    """The call ``argv`` makes, if this module answers it; else ``None``.

    ``env``: the environment as :data:`posix.environ` has it.
    """
    if b"RUNLOG_LOG" in env or b"RUNLOG_CONFIG" in env or _site_config():
        return None  # engine.cli reads them
    given = {"--root": "", "--db": ""}
    i, n = 0, len(argv)
    while i < n and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name not in _GLOBALS:
            return None
        if not eq:
            if i + 1 >= n:
                return None
            i += 1
            value = argv[i]
        if name == "--rootless" and value.strip() not in _ROOTLESS:
            return None
        if name == "--cgroup-manager" and value not in _MANAGERS:
            return None
        given[name] = value
        i += 1
    if i >= n or argv[i] not in COMMANDS:
        return None
    command, rest = argv[i], list(argv[i + 1 :])
    force, signal, everyone = False, _TERM, False
    if command == "delete" and len(rest) == 2 and (rest[0] in _FORCE or rest[1] in _FORCE):
        force = True
        rest.remove(rest[0] if rest[0] in _FORCE else rest[1])
    if command == "kill":
        # kill [--all] ID [SIGNAL], the flag first (runc's order); a signal
        # this does not know, or another shape, is engine.cli's to read.
        if rest and rest[0] in _ALL:
            everyone = True
            rest = rest[1:]
        if len(rest) == 2:
            number = _signal(rest.pop())
            if number is None:
                return None
            signal = number
    if len(rest) != 1 or rest[0].startswith("-") or not is_valid_id(rest[0]):
        return None
    decode = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    root = given["--root"] or env.get(b"RUNLOG_ROOT", b"").decode(*decode)
    if not root:
        uid = posix.geteuid()
        root = default_root(uid, env.get(b"XDG_RUNTIME_DIR", b"").decode(*decode))
        if uid != 0 and not private(root, uid):
            return None  # engine.cli says what is wrong with it
    return Call(root, given["--db"], command, rest[0], force, signal, everyone)


def _signal(text: str) -> "int | None":
    """The signal ``text`` names, as engine.cli reads it; ``None`` if it
    names none (engine.cli says so). A number (conmon's) needs no table."""
    if text.isdigit() and text.isascii():
        return int(text) if int(text) <= _SIGRTMAX else None
    from engine.oci.errors import SignalError
    from engine.oci.signals import parse_signal

    try:
        return parse_signal(text)
    except SignalError:
        return None


def _site_config() -> bool:
    """Whether /etc/runlog/runlog.toml (engine.siteconfig) is there: one stat."""
    try:
        posix.stat("/etc/runlog/runlog.toml")
    except OSError:
        return False
    return True


def main(argv: "Sequence[str] | None" = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    call = recognize(args, posix.environ)
    if call is not None:
        try:
            code = call.run()
        except BrokenPipeError:
            return 0  # `runlog state x | head -c1`: the reader left, as engine.cli
        if code is not None:
            return code
    if command_of(args) in FORKS_MONITOR:
        # Before engine.cli loads: the monitor's imports start 1.5 ms sooner.
        from engine.runtime.cli import prefork

        prefork.start()
    from engine.cli import main as full

    return full(args)


def console() -> None:
    """The ``runlog`` command (the stub of :mod:`engine.entry`, and pip's
    ``scripts/runlog``): :func:`main`, then out with the streams flushed
    and ``posix._exit``, without the interpreter's teardown."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    posix._exit(code)


def command_of(argv: "Sequence[str]") -> "str | None":
    """The command word of ``argv`` as engine.cli reads it (the first word
    after the global flags and their values), or ``None`` if there is none
    or a flag this does not know comes first."""
    i, n = 0, len(argv)
    while i < n and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--":
            return None
        name, eq, _ = argv[i].partition("=")
        if name not in _GLOBAL_FLAGS and not name.startswith("--"):
            name = "-" + name  # Go's -flag, as engine.cmdline reads it
        if name in GLOBAL_VALUE_FLAGS:
            i += 1 if eq else 2
        elif name in GLOBAL_SWITCHES:
            i += 1
        else:
            return None
    return argv[i] if i < n else None


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _fail(message: str, code: int) -> int:
    sys.stderr.write(message + "\n")
    return code
