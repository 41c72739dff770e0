"""Errors of the OCI layer: a bundle's configuration and signal names.

RunlogError
├── ConfigError      config.json missing, unreadable, malformed or invalid
└── SignalError      a signal name or number that is not a Linux signal
"""

from __future__ import annotations

from engine.errors import RunlogError

__all__ = ["ConfigError", "SignalError"]


class ConfigError(RunlogError):
    """A bundle's ``config.json`` cannot be used.

    ``path`` is the configuration file, ``field`` a JSON path into it such as
    ``process.rlimits[1].type`` (``None`` when the whole file is at fault), and
    ``line``/``col`` the 1-based position of a JSON syntax error.
    """

    def __init__(
        self,
        path: str,
        field: str | None,
        problem: str,
        *,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        self.line = line
        self.col = col
        if line is not None:
            where = f"{path}:{line}:{col}"
        elif field:
            where = f"{path}: {field}"
        else:
            where = path
        super().__init__(f"{where}: {problem}")


class SignalError(RunlogError):
    """``text`` names no signal runlog knows."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"unknown signal: {text}")
