"""criu.* actions: runc's checkpoint and restore, through CRIU.

runlog does not drive a CRIU dump or restore yet. Each action first asks
CRIU whether it can work on this host (``criu check``) and fails naming
what is missing; where it can, it fails saying that runlog does not drive
it yet. Either way the event has the image path and CRIU's answer.
"""

from __future__ import annotations

from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["CriuDump", "CriuRestore"]


def _refuse(what: str, ctx: ActionContext) -> None:
    from engine.linux import criu

    image = ctx.request.get("image_path")
    missing = criu.problem()
    if missing is not None:
        raise ActionError(f"{what}: CRIU cannot work on this host: {missing}", image_path=image)
    raise ActionError(
        f"{what}: runlog does not drive CRIU {what}s (criu check passes here)", image_path=image
    )


class CriuDump(Action):
    """runc checkpoint: dump the container's processes to ``image_path``."""

    name = "criu.dump"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        _refuse("checkpoint", ctx)
        return {}


class CriuRestore(Action):
    """runc restore: a container from the images at ``image_path``."""

    name = "criu.restore"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        _refuse("restore", ctx)
        return {}
