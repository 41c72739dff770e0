"""What an action is, what it may touch, and what it returns.

An action is one step of a transition (``cgroup.create``, ``hook``, ...). It
acts only through the container's :class:`Drivers` - the side-effect
boundaries, each with a real implementation (the runtime) and a fake
(:mod:`engine.actions.fakes`) - and returns a JSON-able result that goes into
the event's payload. ``undo`` reverses a completed ``run`` when a later
action of the same transition fails (runtime-spec: a failed operation leaves
the container as if it had not been attempted).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol
else:
    Protocol = object  # structural types, checked by mypy only

__all__ = [
    "Action",
    "ActionContext",
    "CgroupDriver",
    "Drivers",
    "HookDriver",
    "ProcessDriver",
    "StateDriver",
]


class ProcessDriver(Protocol):
    """The container's init process."""

    def spawn_init(self) -> dict[str, Any]:
        """Fork the init into its namespaces; it waits before exec. Returns {"pid": ...}."""

    def release(self) -> dict[str, Any]:
        """Let the waiting init exec the user's process."""

    def confirm_exec(self) -> dict[str, Any]:
        """{"pid": ...} if the init runs the user's process, else ActionError."""

    def signal(self, signo: int, all_processes: bool) -> dict[str, Any]: ...

    def kill_init(self) -> None:
        """SIGKILL the init and reap it: the undo of spawn and release."""

    def exit_status(self) -> dict[str, Any] | None:
        """{"exit_code": n} or {"signal": n} once the init has ended, else None."""

    def checkpoint(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """CRIU's dump of the container (``image_path``, ``leave_running``...)."""

    def restore(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """CRIU's restore of ``image_path`` as the init; {"pid": ...}."""


class HookDriver(Protocol):
    def run(
        self, point: str, state: Mapping[str, Any], *, keep_going: bool = False
    ) -> list[dict[str, Any]]:
        """Run the config's hooks for ``point`` in order, each with the state
        on stdin; stop at the first failure and raise ActionError whose
        details hold the runs so far (dicts: path, exit_code, duration_ms,
        stderr_tail). With ``keep_going``, run every hook and raise after
        the last, naming each failure, with every run in the details."""


class CgroupDriver(Protocol):
    def create(self) -> dict[str, Any]:
        """Make the cgroup and apply the limits; return what the action
        records: the settings ignored (``warning``) and, rootless, which
        controllers were set up and which were done without."""

    def destroy(self) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def update(self, resources: Mapping[str, Any]) -> dict[str, Any]: ...


class StateDriver(Protocol):
    def remove(self) -> None:
        """Remove the container's state directory."""

    def oci_state(self, status: str) -> dict[str, Any]:
        """The OCI state document given to hooks, with ``status`` as the spec
        says it is at that point."""


class Drivers:
    """The side-effect boundaries of one container."""

    __slots__ = ("cgroups", "hooks", "process", "state")

    def __init__(
        self,
        process: ProcessDriver,
        hooks: HookDriver,
        cgroups: CgroupDriver,
        state: StateDriver,
    ) -> None:
        self.process = process
        self.hooks = hooks
        self.cgroups = cgroups
        self.state = state


class ActionContext:
    """What every action of one transition sees."""

    __slots__ = ("container_id", "drivers", "request", "source", "trigger")

    def __init__(
        self,
        container_id: str,
        trigger: str,
        source: str,
        drivers: Drivers,
        request: Mapping[str, Any],
    ) -> None:
        self.container_id = container_id
        self.trigger = trigger
        self.source = source
        self.drivers = drivers
        self.request = request


class Action(ABC):
    """One named step. Subclasses set ``name`` (a key of the catalog)."""

    name: str = ""
    #: Whether ``undo`` can reverse ``run``; the failed event lists the
    #: completed actions that could not be undone.
    reversible = False

    @abstractmethod
    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def undo(  # noqa: B027 - most actions have nothing to undo
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        """Reverse a completed ``run``; raise ActionError if that fails."""
