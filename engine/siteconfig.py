"""The site configuration: ``/etc/runlog/runlog.toml`` (``RUNLOG_CONFIG``
names another file), where an admin sets the root, the log and defaults
for everyone on a node::

    root = "/run/runlog-{uid}"
    db = "/var/lib/runlog/{user}/events.db"
    rootless = "auto"
    log_group = "adm"   # may read the log: 0640/0750, this group's
    witness = "/var/lib/runlog/witness"   # runlog witness's records
    monitor_rest = "5"   # seconds idle before a monitor rests, or "off"
    cgroup_manager = "disabled"   # containers get no cgroup of their own

``{uid}`` and ``{user}`` are the caller's uid and user name. A command-line
flag wins over a ``RUNLOG_*`` variable, which wins over the file, which
wins over runlog's defaults (engine.settings); ``--debug`` says where each
setting came from. The file is read only where it exists, and
:mod:`tomllib` is imported only then. A malformed file is an error naming
the file, the line and the key.
"""

from __future__ import annotations

from engine.errors import RunlogError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CGROUP_MANAGERS",
    "CONFIG",
    "KEYS",
    "SETTINGS",
    "ConfigError",
    "config_path",
    "load",
    "rest_seconds",
]

CONFIG = "/etc/runlog/runlog.toml"
#: The settings the file may give (as Settings names them), which --debug
#: says the origin of.
SETTINGS = (
    "root",
    "db",
    "rootless",
    "machine",
    "log",
    "init_parent",
    "log_group",
    "monitor_rest",
    "cgroup_manager",
)
#: ``cgroup_manager``'s values (and ``--cgroup-manager``'s), as crun's:
#: cgroupfs (runlog's own), systemd (refused, as ``--systemd-cgroup``),
#: disabled (no cgroup of the container's own:
#: :func:`engine.cgroups.rootless.disabled`).
CGROUP_MANAGERS = ("cgroupfs", "systemd", "disabled")
#: The keys the file may give: the settings, and runlog witness's records.
KEYS = (*SETTINGS, "witness")


class ConfigError(RunlogError):
    """The site configuration cannot be used."""


def config_path(env: Mapping[str, str]) -> str:
    return env.get("RUNLOG_CONFIG") or CONFIG


def load(
    env: Mapping[str, str], uid: int, *, every_user: bool = False
) -> tuple[str, dict[str, str]] | None:
    """(the file, its settings with the placeholders filled), or ``None``
    where there is no file. ``every_user``: ``{uid}`` and ``{user}`` become
    ``*``, a glob for what the file names for every user (``runlog ship``
    finds each user's log so)."""
    path = config_path(env)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"site configuration {path}: cannot be read: {err.strerror}") from err
    import tomllib

    text = data.decode("utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = _error_line(str(err))
        key = _key_at(text, line)
        where = f"line {line}" + (f", key {key!r}" if key else "") if line else "?"
        raise ConfigError(f"site configuration {path}: {where}: {err}") from None
    settings: dict[str, str] = {}
    user = "*" if every_user else _user(uid)
    uid_text = "*" if every_user else str(uid)
    for key, given in doc.items():
        line = _line_of(text, key)
        if key not in KEYS:
            raise ConfigError(
                f"site configuration {path}: line {line}, key {key!r}: unknown; "
                f"known keys: {', '.join(KEYS)}"
            )
        value = _text(key, given)
        if value is None:
            raise ConfigError(
                f"site configuration {path}: line {line}, key {key!r}: a string is needed, "
                f"not {type(given).__name__}"
            )
        if key == "monitor_rest":
            _check_rest(path, line, value)
        if key == "cgroup_manager":
            _check_manager(path, line, value)
        settings[key] = value.replace("{uid}", uid_text).replace("{user}", user)
    return path, settings


def _text(key: str, given: object) -> str | None:
    """A key's value as the settings hold it (text), or ``None`` if it is
    not of the key's type: a string; for ``rootless`` a boolean too, for
    ``monitor_rest`` a number of seconds too."""
    if isinstance(given, bool):
        return ("true" if given else "false") if key == "rootless" else None
    if isinstance(given, (int, float)) and key == "monitor_rest":
        return str(given)
    return given if isinstance(given, str) else None


def rest_seconds(value: str) -> float | None:
    """``monitor_rest``'s value: seconds (0 or more), or ``None`` for
    ``off`` (never rest); ``ValueError`` for anything else."""
    text = value.strip()
    if text.lower() == "off":
        return None
    seconds = float(text)  # ValueError: not a number
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{value!r}: not 0 seconds or more")
    return seconds


def _check_rest(path: str, line: int, value: str) -> None:
    try:
        rest_seconds(value)
    except ValueError:
        raise ConfigError(
            f"site configuration {path}: line {line}, key 'monitor_rest': {value!r} is "
            'neither seconds (0 or more) nor "off"'
        ) from None


def _check_manager(path: str, line: int, value: str) -> None:
    if value not in CGROUP_MANAGERS:
        raise ConfigError(
            f"site configuration {path}: line {line}, key 'cgroup_manager': "
            f"{value!r} is not one of {', '.join(CGROUP_MANAGERS)}"
        )


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _error_line(message: str) -> int | None:
    marker = "(at line "
    if marker not in message:
        return None
    number = message.split(marker, 1)[1].split(",", 1)[0].rstrip(")")
    return int(number) if number.isdigit() else None


def _key_at(text: str, line: int | None) -> str | None:
    if line is None:
        return None
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    key = lines[line - 1].split("=", 1)[0].strip()
    return key or None


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if line.split("=", 1)[0].strip().strip('"') == key:
            return number
    return 0
