"""Errors of replay.

RunlogError
└── ReplayError             a replay cannot run
    └── FixtureError        a fixture file is not a readable history (file, line)
"""

from __future__ import annotations

from engine.errors import RunlogError

__all__ = ["FixtureError", "ReplayError"]


class ReplayError(RunlogError):
    """Replay cannot run with what it was given."""


class FixtureError(ReplayError):
    """A fixture file does not hold a history in runlog's JSON-lines format."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {problem}")
