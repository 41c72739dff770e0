"""state.* actions: the container's state directory."""

from __future__ import annotations

from engine.actions.base import Action, ActionContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["StateRemove"]


class StateRemove(Action):
    name = "state.remove"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ctx.drivers.state.remove()
        return {}
