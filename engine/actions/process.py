"""process.* actions: the container's init, through the process driver."""

from __future__ import annotations

from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["CollectStatus", "ConfirmExec", "Release", "Signal", "SpawnInit"]


class SpawnInit(Action):
    name = "process.spawn_init"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return ctx.drivers.process.spawn_init()

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.process.kill_init()


class Release(Action):
    """Let the init exec the user's process (runtime-spec "start" step 9).

    The exec cannot be taken back; the undo stops the container instead,
    which is what spec 1.3 asks when a poststart hook fails.
    """

    name = "process.release"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return ctx.drivers.process.release()

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.process.kill_init()


class ConfirmExec(Action):
    """Find that the init has exec'd the user's process: a start whose
    monitor was killed after the release, before its event was recorded."""

    name = "process.confirm_exec"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return ctx.drivers.process.confirm_exec()


class Signal(Action):
    name = "process.signal"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        signo = ctx.request.get("signal", 15)
        if not isinstance(signo, int) or isinstance(signo, bool):
            raise ActionError(f"signal must be a number, not {signo!r}")
        everyone = bool(ctx.request.get("all", False))
        return ctx.drivers.process.signal(signo, everyone)


class CollectStatus(Action):
    """Record how the init ended: its exit code, or the signal that killed it."""

    name = "process.collect_status"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        status = ctx.drivers.process.exit_status()
        if status is None:
            raise ActionError("the init has not exited")
        return status
