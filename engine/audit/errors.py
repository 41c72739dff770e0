"""Errors of the audit queries.

RunlogError
└── AuditError              a query cannot be answered
    └── UnknownContainer    an id (or prefix) the log has no events for
"""

from __future__ import annotations

from engine.errors import RunlogError

__all__ = ["AuditError", "UnknownContainer"]


class AuditError(RunlogError):
    """The event log cannot answer this query."""


class UnknownContainer(AuditError):
    """No event in the log names this container (or begins with this prefix)."""

    def __init__(self, container_id: str, location: str, *, prefix: bool = False) -> None:
        self.container_id = container_id
        self.location = location
        self.prefix = prefix
        if prefix:
            what = f"no container id begins with {container_id!r}"
        else:
            what = f"container {container_id}: no such container"
        super().__init__(f"{what} in the event log {location} (runlog audit lists what it holds)")
