"""The ``hook`` action: run one point's OCI hooks, abort or warn on failure."""

from __future__ import annotations

from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["Hook", "status_at"]


def status_at(point: str, source: str) -> str:
    """The container status the runtime-spec puts in the state a hook receives.

    createRuntime/createContainer/prestart run during create ("creating"),
    startContainer and poststart around start ("created" then "running"),
    poststop after the container stopped ("stopped").
    """
    return {
        "prestart": "creating",
        "createRuntime": "creating",
        "createContainer": "creating",
        "startContainer": "created",
        "poststart": "running",
        "poststop": "stopped",
    }.get(point, source)


class Hook(Action):
    name = "hook"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        point = str(params["point"])
        state = ctx.drivers.state.oci_state(status_at(point, ctx.source))
        try:
            runs = ctx.drivers.hooks.run(point, state)
        except ActionError as err:
            if params.get("on_failure") == "warn":
                # runtime-spec: poststop (and poststart before 1.3) failures
                # are logged and the lifecycle goes on.
                return {"point": point, "warning": str(err), **err.details}
            raise
        return {"point": point, "hooks": runs}
