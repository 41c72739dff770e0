"""The runlog error hierarchy.

Only the CLI turns these into messages and exit codes; everything below it
raises. Each class carries its context as attributes and an ``exit_code``.

    RunlogError
    ├── UsageError              bad command line
    │   └── InvalidId           a container id runc's rules refuse
    ├── UnsupportedError        a feature this host or build cannot offer
    ├── MachineError            statemachine.yaml does not load (file, line, key)
    ├── EventLogError           the event log
    │   ├── SchemaError         not a database, unknown or newer schema
    │   ├── ConcurrencyError    another writer appended first (seq conflict)
    │   ├── StoreBusyError      the database stayed locked past the retry budget
    │   └── StoreWriteError     SQLite refused the write (disk full, read-only, ...)
    ├── LifecycleError          a container operation
    │   ├── ContainerNotFound   no such container
    │   ├── StateDenied         another user's root: not this user's to look into
    │   ├── ContainerExists     create with an id in use
    │   ├── TransitionRejected  trigger not allowed in the current state
    │   ├── ConcurrentChange    another writer changed the container meanwhile
    │   ├── TransitionFailed    an action failed; the transition was undone
    │   └── NotRecorded         the actions ran but the log refused their event
    ├── ControlError            talking to a container's monitor (engine.control)
    │   ├── MonitorGone         nobody answers on its control socket
    │   ├── MonitorBusy         the monitor took the request, did not answer in time
    │   ├── ControlDenied       the control socket is not ours to connect to
    │   └── RequestFailed       the monitor refused or failed the request
    └── ActionError             raised by an action; the engine wraps it
"""

from __future__ import annotations

__all__ = [
    "ActionError",
    "ConcurrencyError",
    "ConcurrentChange",
    "ContainerExists",
    "ContainerNotFound",
    "ControlDenied",
    "ControlError",
    "EventLogError",
    "InvalidId",
    "LifecycleError",
    "MachineError",
    "MonitorBusy",
    "MonitorGone",
    "NotRecorded",
    "RequestFailed",
    "RunlogError",
    "SchemaError",
    "StateDenied",
    "StoreBusyError",
    "StoreWriteError",
    "TransitionFailed",
    "TransitionRejected",
    "UnsupportedError",
    "UsageError",
]


class RunlogError(Exception):
    """Root of every error runlog raises on purpose."""

    exit_code = 1


class UsageError(RunlogError):
    """The command line does not parse. Exit 1, as runc's usage errors."""


class InvalidId(UsageError):
    """A container id runc's rules refuse; refused before any monitor."""

    def __init__(self, container_id: str, problem: str) -> None:
        self.container_id = container_id
        shown = container_id if len(container_id) <= 64 else container_id[:64] + "..."
        super().__init__(f"invalid container id {shown!r}: {problem}")


class UnsupportedError(RunlogError):
    """Something asked for that this host or this runlog cannot do."""


class MachineError(RunlogError):
    """A machine definition (statemachine.yaml) failed validation."""

    def __init__(self, path: str, line: int | None, key: str | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        what = f" {key}:" if key else ""
        super().__init__(f"{where}:{what} {problem}")


class EventLogError(RunlogError):
    """The event log could not be read or written."""


class SchemaError(EventLogError):
    """The database is not one runlog can use as it is."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"event log {location}: {problem}")


class ConcurrencyError(EventLogError):
    """Another writer appended to this container's history first."""

    def __init__(self, container_id: str, expected_seq: int, actual_seq: int) -> None:
        self.container_id = container_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        super().__init__(
            f"container {container_id}: history moved on (expected seq {expected_seq}, "
            f"found {actual_seq}); retry the operation"
        )


class StoreBusyError(EventLogError):
    """The database stayed locked for longer than the retry budget."""


class StoreWriteError(EventLogError):
    """SQLite refused a write: the disk is full, the file read-only, ...

    The message is SQLite's own error, never what a rollback after it said."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"event log {location}: cannot write: {problem}")


class LifecycleError(RunlogError):
    """A container operation did not happen."""

    def __init__(self, container_id: str, message: str) -> None:
        self.container_id = container_id
        super().__init__(message)


class ContainerNotFound(LifecycleError):
    def __init__(self, container_id: str) -> None:
        # runc: "container does not exist"
        super().__init__(container_id, f"container {container_id}: container does not exist")


class StateDenied(LifecycleError):
    """Another user's state directory root, which this user may not look
    into (0700): whether there is such a container is not theirs to know;
    runc says "permission denied" too."""

    def __init__(self, container_id: str, path: str, call: str = "stat") -> None:
        super().__init__(
            container_id, f"container {container_id}: {call} {path}: permission denied"
        )
        #: Whether its recording was tried (engine.commands.container.absent).
        self.tried = False


class ContainerExists(LifecycleError):
    def __init__(self, container_id: str) -> None:
        # runc: "container with id exists: ID"
        super().__init__(container_id, f"container with id exists: {container_id}")


class TransitionRejected(LifecycleError):
    """The machine does not allow ``trigger`` in ``state``."""

    def __init__(self, container_id: str, trigger: str, state: str, reason: str) -> None:
        self.trigger = trigger
        self.state = state
        self.reason = reason
        super().__init__(container_id, f"{trigger} {container_id}: {reason} (state: {state})")


class ConcurrentChange(LifecycleError):
    """Another writer recorded an event for the container after this
    request read its state: the request is refused, not recorded twice."""

    def __init__(self, container_id: str, trigger: str, expected_seq: int, actual_seq: int) -> None:
        self.trigger = trigger
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        super().__init__(
            container_id,
            f"{trigger} {container_id}: the container changed while this request was "
            f"handled (seq {actual_seq}, not {expected_seq}); ask again",
        )


class TransitionFailed(LifecycleError):
    """An action failed; the actions done before it were undone."""

    def __init__(
        self,
        container_id: str,
        trigger: str,
        action: str,
        cause: str,
        undone: list[str],
    ) -> None:
        self.trigger = trigger
        self.action = action
        self.cause = cause
        self.undone = undone
        super().__init__(container_id, f"{trigger} {container_id}: {action}: {cause}")


class NotRecorded(LifecycleError):
    """The actions ran, then the log refused their event: what could be
    undone was (``undone``), and the transition did not happen."""

    def __init__(
        self, container_id: str, trigger: str, cause: EventLogError, undone: list[str]
    ) -> None:
        self.trigger = trigger
        self.cause = cause
        self.undone = undone
        what = f"undone: {', '.join(undone)}" if undone else "nothing to undo"
        super().__init__(
            container_id,
            f"{trigger} {container_id}: not done, the event log cannot take it ({what}): {cause}",
        )


class ControlError(RunlogError):
    """Talking to a container's monitor over its control socket (engine.control)."""


class MonitorGone(ControlError):
    """Nobody listens on the container's control socket."""


class MonitorBusy(ControlError):
    """The monitor took the request but did not answer in time."""


class ControlDenied(ControlError):
    """The control socket is not ours to connect to (mode 0600, root's or the owner's)."""


class RequestFailed(ControlError):
    """The monitor refused or failed the request: its message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ActionError(RunlogError):
    """Raised by an action; ``details`` goes into the failed event's payload."""

    def __init__(self, message: str, **details: object) -> None:
        self.details = details
        super().__init__(message)
