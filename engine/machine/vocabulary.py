"""The triggers and states runlog's code relies on, named once.

``statemachine.yaml`` decides what is allowed and what each transition
does; the code still has to name some of its triggers and states - a
request's op is a trigger, the init's end is recorded as ``exit``, a hook
is given the state the runtime-spec says it sees, a freezer written by hand
is recorded as ``pause`` or ``resume``. Those names live here, each with
who relies on it, and :func:`require` refuses a machine without them when
it is loaded to be run (:func:`engine.machine.definition.load`), naming the
file and the line. A replay of an archived machine does not ask: it runs no
code that needs them.

A new trigger the code relies on (``exec``, say) is one constant and one
line in :data:`TRIGGERS`.
"""

from __future__ import annotations

from engine.errors import MachineError
from engine.status import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.machine.definition import MachineDefinition

__all__ = [
    "CHECKPOINT",
    "CREATE",
    "DELETE",
    "EXEC",
    "EXEC_EXIT",
    "EXIT",
    "FREEZER",
    "KILL",
    "OPTIONAL",
    "PAUSE",
    "RESTORE",
    "RESUME",
    "START",
    "STARTED",
    "STATES",
    "TRIGGERS",
    "UPDATE",
    "require",
]

CREATE = "create"
START = "start"
PAUSE = "pause"
RESUME = "resume"
KILL = "kill"
EXIT = "exit"
DELETE = "delete"
#: Fired by name too, but optional: a machine without one of these refuses
#: the command ("this machine has no trigger ...") and nothing else breaks.
EXEC = "exec"
EXEC_EXIT = "exec_exit"
STARTED = "started"
UPDATE = "update"
CHECKPOINT = "checkpoint"
RESTORE = "restore"

#: Each trigger the code fires by name, and where.
TRIGGERS: dict[str, str] = {
    CREATE: "runlog create, in engine/runtime/monitor/main.py",
    START: "runlog start, in engine/wire.py",
    PAUSE: "runlog pause and a freezer frozen by hand, in engine/runtime/monitor/dispatch.py",
    RESUME: "runlog resume and a freezer thawed by hand, in engine/runtime/monitor/dispatch.py",
    KILL: "runlog kill and delete --force, in engine/wire.py",
    EXIT: "the init's end, in engine/service.py",
    DELETE: "runlog delete, in engine/wire.py and engine/runtime/cli/reconcile.py",
}

#: Triggers the code fires by name that a machine may leave out: the
#: command is then refused ("this machine has no trigger ...").
OPTIONAL: dict[str, str] = {
    EXEC: "runlog exec, in engine/runtime/monitor/dispatch.py",
    EXEC_EXIT: "the end of an exec'd process, in engine/runtime/monitor/dispatch.py",
    UPDATE: "runlog update, in engine/runtime/monitor/dispatch.py",
    CHECKPOINT: "runlog checkpoint, in engine/runtime/monitor/dispatch.py",
    RESTORE: "runlog restore, in engine/commands/checkpoint.py",
    STARTED: "a start found done after its monitor was lost, in engine/runtime/cli/reconcile.py",
}

#: A freezer changed by hand, as the trigger that records it: (the state
#: the log has, what the cgroup's freezer says) -> trigger.
FREEZER: dict[tuple[str, str], str] = {
    (Status.RUNNING, "frozen"): PAUSE,
    (Status.PAUSED, "thawed"): RESUME,
}

#: Each state the code names, and where.
STATES: dict[str, str] = {
    Status.CREATING: "the state before create ends, in engine/actions/hook.py",
    Status.CREATED: "the state create-time and startContainer hooks are given, in "
    "engine/actions/hook.py",
    Status.RUNNING: "a thawed freezer and poststart hooks, in engine/runtime/monitor/dispatch.py",
    Status.PAUSED: "a frozen freezer, in engine/runtime/monitor/dispatch.py",
    Status.STOPPED: "poststop hooks and a container without pid, in engine/actions/hook.py",
}


def _line_of(text: str, key: str) -> int | None:
    """The line of the top-level ``key:`` in the machine's text (1-based)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return None


def require(definition: MachineDefinition) -> None:
    """Raise MachineError (file, line) naming the first state or trigger
    the code relies on that ``definition`` lacks."""
    for state, who in STATES.items():
        if state not in definition.states:
            raise MachineError(
                definition.path,
                _line_of(definition.text, "states"),
                "states",
                f"runlog needs state {state!r}, which this machine does not declare "
                f"(used by {who})",
            )
    present = set(definition.triggers())
    for trigger, who in TRIGGERS.items():
        if trigger not in present:
            raise MachineError(
                definition.path,
                _line_of(definition.text, "transitions"),
                "transitions",
                f"runlog needs trigger {trigger!r}, which no transition has (used by {who})",
            )
