"""The ``hook`` action: run one point's OCI hooks, abort or warn on failure."""

from __future__ import annotations

from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["STATUS_SEEN", "Hook", "status_at"]


def status_at(point: str, source: str) -> str:
    """The container status the runtime-spec puts in the state a hook receives.

    This is where it is decided. prestart, createRuntime and createContainer
    see ``created``: runtime.md's state says ``created`` once the runtime
    has finished the create operation, "after step 2 in the lifecycle"
    (creating the environment), and those hooks run at steps 3 to 5; the
    runtime-tools validation suite and crun expect ``created`` there, and
    no hook sees ``creating``. startContainer sees ``created`` too,
    poststart ``running``, poststop ``stopped``; another point keeps the
    container's current status (``source``).
    """
    return STATUS_SEEN.get(point, source)


#: Each hook point (engine.oci.names.HOOK_POINTS) and the status its hooks see.
STATUS_SEEN = {
    "prestart": "created",
    "createRuntime": "created",
    "createContainer": "created",
    "startContainer": "created",
    "poststart": "running",
    "poststop": "stopped",
}


class Hook(Action):
    name = "hook"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        point = str(params["point"])
        state = ctx.drivers.state.oci_state(status_at(point, ctx.source))
        warn = params.get("on_failure") == "warn"
        try:
            # runtime-spec: a poststop (and before 1.3 a poststart) hook
            # that fails is logged as a warning, and the remaining hooks and
            # the lifecycle continue.
            runs = ctx.drivers.hooks.run(point, state, keep_going=warn)
        except ActionError as err:
            if warn:
                return {"point": point, "warning": str(err), **err.details}
            raise
        return {"point": point, "hooks": runs}
