"""Settings: what the global flags and the environment say, built once in ``cli.main``.

A slotted class, not a dataclass: it is built on every scheduler call.

The scheduler's commands other than ``create`` do without :mod:`os`: with
``-S`` nothing has imported it, and it costs 1 ms (``_collections_abc``),
a sixth of the interpreter's start. They use :mod:`posix`, the C module
``os`` wraps, and :func:`environ` here for ``os.environ``.
"""

import posix
import sys

from engine.layout import DEFAULT_ROOT, default_root, exists

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_ROOT",
    "INIT_PARENTS",
    "MONITOR_REST",
    "MONITOR_REST_ENV",
    "Settings",
    "environ",
    "log_line",
]

#: Who reaps the container's init (engine.runtime.cli.launch.init_parent).
INIT_PARENTS = ("auto", "monitor", "caller")
DEFAULT_DB = "/var/lib/runlog/events.db"
#: Seconds of idleness after which a container's monitor rests
#: (engine.runtime.monitor.lean), or ``off``: well past the moment between
#: a scheduler's ``create`` and its ``start`` (milliseconds), so a
#: lifecycle never wakes a rested monitor (docs/monitor-cost.md). The
#: variable, then the site configuration's ``monitor_rest``, say otherwise.
MONITOR_REST = "5"
MONITOR_REST_ENV = "RUNLOG_MONITOR_LEAN"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def parse_rootless(value: str) -> bool | None:
    """``--rootless``'s value as runc reads it: ``auto`` (or empty) is
    ``None`` - rootless when not root -, else a Go boolean."""
    text = value.strip()
    if text in ("", "auto", "AUTO", "Auto"):
        return None
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    from engine.errors import UsageError

    raise UsageError(f"--rootless: invalid value {value!r}: one of true, false, auto")


def environ() -> dict[str, str]:
    """The environment, decoded as ``os.environ`` decodes it."""
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {
        key.decode(encoding, errors): value.decode(encoding, errors)
        for key, value in posix.environ.items()
    }


#: engine.siteconfig.CONFIG, without importing it where there is no file.
_CONFIG = "/etc/runlog/runlog.toml"


def _user_db(env: "Mapping[str, str]", uid: int) -> str:
    from engine.places import default_db

    return default_db(env, uid)


def _checked_rootless(value: str) -> str:
    parse_rootless(value)
    return value


def _check_manager_variable(value: str) -> None:
    """RUNLOG_CGROUP_MANAGER: one of engine.siteconfig's ``CGROUP_MANAGERS`` (the flag's
    value is checked by the command line, the file's by engine.siteconfig)."""
    from engine.siteconfig import CGROUP_MANAGERS, ConfigError

    if value not in CGROUP_MANAGERS:
        raise ConfigError(
            f"RUNLOG_CGROUP_MANAGER={value!r}: not one of {', '.join(CGROUP_MANAGERS)}"
        )


class Settings:
    __slots__ = (
        "cgroup_manager",
        "db",
        "debug",
        "defaulted",
        "init_parent",
        "log",
        "log_format",
        "log_group",
        "machine",
        "monitor_rest",
        "root",
        "rootless",
        "sources",
        "systemd_cgroup",
    )

    def __init__(
        self,
        *,
        root: str = DEFAULT_ROOT,
        db: str = DEFAULT_DB,
        machine: str | None = None,
        log: str | None = None,
        log_format: str = "text",
        log_group: str | None = None,
        debug: bool = False,
        systemd_cgroup: bool = False,
        rootless: str = "auto",
        init_parent: str = "auto",
        monitor_rest: str = MONITOR_REST,
        cgroup_manager: str = "cgroupfs",
        defaulted: "Sequence[str]" = (),
        sources: "Mapping[str, str] | None" = None,
    ) -> None:
        self.root = root
        self.db = db
        self.machine = machine
        self.log = log
        self.log_format = log_format
        #: The group that may read the event log (engine.eventlog.open_store).
        self.log_group = log_group
        self.debug = debug
        #: ``--cgroup-manager=systemd`` is ``--systemd-cgroup`` (refused).
        self.systemd_cgroup = systemd_cgroup or cgroup_manager == "systemd"
        self.cgroup_manager = cgroup_manager
        self.rootless = rootless
        self.init_parent = init_parent
        #: Seconds of idleness before a monitor rests, or ``off``: what
        #: create hands its monitor (:meth:`rest_after`).
        self.monitor_rest = monitor_rest
        #: The places taken from the defaults, not the flags or the environment.
        self.defaulted = tuple(defaulted)
        #: Setting -> where it came from (a flag, a variable, the site
        #: configuration's file); absent: runlog's default.
        self.sources: dict[str, str] = dict(sources or {})

    @classmethod
    def from_flags(cls, flags: "Mapping[str, object]", env: "Mapping[str, str]") -> "Settings":
        """Flags win over the environment (RUNLOG_ROOT, RUNLOG_DB, ...), which
        wins over the site configuration (engine.siteconfig), which wins
        over the defaults; ``sources`` says where each came from."""
        uid = posix.geteuid()
        site = None
        if "RUNLOG_CONFIG" in env or exists(_CONFIG):
            from engine.siteconfig import load

            site = load(env, uid)
        config_file, config = site if site is not None else ("", {})
        sources: dict[str, str] = {}

        def pick(flag: str, var: str | None) -> str | None:
            value = flags.get(flag)
            if isinstance(value, str) and value:
                sources[flag] = "--" + flag.replace("_", "-")
                return value
            if var is not None and env.get(var):
                sources[flag] = var
                return env[var]
            if config.get(flag):
                sources[flag] = config_file
                return config[flag]
            return None

        root = pick("root", "RUNLOG_ROOT")
        db = pick("db", "RUNLOG_DB")
        rootless = pick("rootless", None)
        init_parent = pick("init_parent", "RUNLOG_INIT_PARENT")
        monitor_rest = pick("monitor_rest", MONITOR_REST_ENV)
        if monitor_rest is not None and sources["monitor_rest"] == MONITOR_REST_ENV:
            _check_rest_variable(monitor_rest)
        manager = pick("cgroup_manager", "RUNLOG_CGROUP_MANAGER")
        if manager is not None and sources["cgroup_manager"] == "RUNLOG_CGROUP_MANAGER":
            _check_manager_variable(manager)
        settings = cls(
            root=root or default_root(uid, env.get("XDG_RUNTIME_DIR")),
            db=db or (DEFAULT_DB if uid == 0 else _user_db(env, uid)),
            machine=pick("machine", "RUNLOG_MACHINE"),
            log=pick("log", "RUNLOG_LOG"),
            log_format=str(flags.get("log_format") or "text"),
            log_group=pick("log_group", "RUNLOG_LOG_GROUP"),
            debug=bool(flags.get("debug")),
            systemd_cgroup=bool(flags.get("systemd_cgroup")),
            rootless=_checked_rootless(rootless or "auto"),
            init_parent=init_parent or "auto",
            monitor_rest=monitor_rest or MONITOR_REST,
            cgroup_manager=manager or "cgroupfs",
        )
        settings.defaulted = tuple(
            name for name, value in (("root", root), ("db", db)) if not value
        )
        settings.sources = sources
        return settings

    def origins(self) -> list[str]:
        """For --debug: each setting, its value, and where it came from."""
        from engine.siteconfig import SETTINGS

        return [
            f"setting {name}={getattr(self, name)!r} from {self.sources.get(name, 'the default')}"
            for name in SETTINGS
        ]

    def rest_after(self) -> float | None:
        """Seconds of idleness after which the monitor rests; ``None``:
        never. The value was checked where it was read (the site file, the
        variable)."""
        from engine.siteconfig import rest_seconds

        return rest_seconds(self.monitor_rest)

    def own_places(self) -> None:
        """Not root: make and check the directories of runlog's own that
        the defaults chose (engine.places); given places are the caller's."""
        uid = posix.geteuid()
        if uid == 0 or not self.defaulted:
            return
        from engine.places import private_dir

        if "root" in self.defaulted:
            private_dir(self.root, uid)
        if "db" in self.defaulted:
            private_dir(self.db.rsplit("/", 1)[0], uid)

    def no_cgroup(self) -> bool:
        """``--cgroup-manager=disabled``: the container gets no cgroup."""
        return self.cgroup_manager == "disabled"

    def is_rootless(self) -> bool:
        """Rootless cgroups (runc's ``--rootless``): asked for, or ``auto``
        and not root."""
        wanted = parse_rootless(self.rootless)
        return posix.geteuid() != 0 if wanted is None else wanted

    def cache_dir(self) -> str | None:
        """Where runlog may keep derived data (validated machines): next to
        an SQLite event log; none for a database behind a URL."""
        import os

        from engine.eventlog import sqlite_file

        db = sqlite_file(self.db)
        if db is None or db == ":memory:":
            return None
        return os.path.join(os.path.dirname(os.path.abspath(db)), "cache")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Settings({fields})"


def log_line(path: str | None, fmt: str, level: str, msg: str) -> None:
    """Append a logrus-style line to runlog's ``--log`` (``path``), as runc
    writes its own log; nothing without one."""
    if not path:
        return
    import time

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if fmt == "json":
        from engine import jsonfast

        line = jsonfast.dumps({"level": level, "msg": msg, "time": now})
    else:
        quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
        line = f'time="{now}" level={level} msg="{quoted}"'
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as err:
        sys.stderr.write(f"runlog: cannot write log {path}: {err.strerror}\n")


def _check_rest_variable(value: str) -> None:
    """RUNLOG_MONITOR_LEAN: seconds (0 or more) or ``off``; a typo is an
    error, not a monitor that silently never rests."""
    from engine.siteconfig import ConfigError, rest_seconds

    try:
        rest_seconds(value)
    except ValueError:
        raise ConfigError(
            f'{MONITOR_REST_ENV}={value!r}: neither seconds (0 or more) nor "off"'
        ) from None
