"""Lifecycle statuses, event outcomes and actors: the vocabulary every layer shares.

This module is on the hot path of every scheduler call, so it uses plain
string constants and a slotted class rather than ``enum`` and
``dataclasses`` (together ~25 ms of imports against a 7 ms interpreter
start).
"""

from __future__ import annotations

import posix

__all__ = ["OUTCOMES", "STATUSES", "TRANSPORTS", "Actor", "Outcome", "Status", "Transport"]


class Status:
    """Container statuses: the runtime-spec's values, ``paused`` as runc has
    it, and ``deleted``, which exists only in the event log."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"


STATUSES = (
    Status.CREATING,
    Status.CREATED,
    Status.RUNNING,
    Status.PAUSED,
    Status.STOPPED,
    Status.DELETED,
)


class Outcome:
    OK = "ok"
    REJECTED = "rejected"
    FAILED = "failed"


OUTCOMES = (Outcome.OK, Outcome.REJECTED, Outcome.FAILED)


class Transport:
    """How a request reached runlog."""

    CLI = "cli"
    SOCKET = "socket"
    SPOOL = "spool"
    MONITOR = "monitor"
    EXTERNAL = "external"
    REPLAY = "replay"


TRANSPORTS = (
    Transport.CLI,
    Transport.SOCKET,
    Transport.SPOOL,
    Transport.MONITOR,
    Transport.EXTERNAL,
    Transport.REPLAY,
)


class Actor:
    """Who asked: a uid and pid, and the transport the request came by; where
    known, the uid's user name, the audit login uid, and the scheduler's
    context (``slurm_job``, ``slurm_step``, ``slurm_user``, ``podman_name``,
    ``podman_id``: engine.identity)."""

    __slots__ = ("context", "loginuid", "pid", "transport", "uid", "user")

    def __init__(
        self,
        uid: int | None,
        pid: int | None,
        transport: str,
        user: str | None = None,
        loginuid: int | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        self.uid = uid
        self.pid = pid
        self.transport = transport
        self.user = user
        self.loginuid = loginuid
        self.context = context or None

    @classmethod
    def current(cls, transport: str = Transport.CLI) -> Actor:
        return cls(posix.getuid(), posix.getpid(), transport)

    @property
    def job(self) -> str | None:
        """The caller's Slurm job id, if it has one."""
        return None if self.context is None else self.context.get("slurm_job")

    def _key(self) -> tuple[object, ...]:
        context = None if self.context is None else sorted(self.context.items())
        return (self.uid, self.pid, self.transport, self.user, self.loginuid, context)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Actor):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.uid, self.pid, self.transport))

    def __repr__(self) -> str:
        return f"Actor(uid={self.uid}, pid={self.pid}, transport={self.transport!r})"
