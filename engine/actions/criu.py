"""criu.* actions: runc's checkpoint and restore, through CRIU.

Each first asks CRIU whether it can work on this host (``criu check``)
and fails naming what is missing; else it runs CRIU's dump or restore
through the container's process driver (:mod:`engine.linux.criu`). The
event has the image path and CRIU's outcome (its exit, its log).
"""

from __future__ import annotations

from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["CriuDump", "CriuRestore"]

# runc's flags runlog does not give CRIU (yet): refused, not ignored.
_NOT_DRIVEN = (
    "parent_path",
    "pre_dump",
    "page_server",
    "status_fd",
    "lazy_pages",
    "empty_ns",
    "auto_dedup",
    "lsm_profile",
    "lsm_mount_context",
)


def _checked(what: str, ctx: ActionContext) -> str:
    """The criu to run, once it is known to work here; else why not."""
    from engine.linux import criu

    image = ctx.request.get("image_path")
    given = [name for name in _NOT_DRIVEN if ctx.request.get(name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ActionError(f"{what}: {flags}: not supported by runlog", image_path=image)
    binary = criu.binary()
    missing = criu.problem(binary)
    if missing is not None:
        raise ActionError(f"{what}: CRIU cannot work on this host: {missing}", image_path=image)
    assert binary is not None
    return str(binary)


class CriuDump(Action):
    """runc checkpoint: dump the container's processes to ``image_path``."""

    name = "criu.dump"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        binary = _checked("checkpoint", ctx)
        return ctx.drivers.process.checkpoint(binary, ctx.request)


class CriuRestore(Action):
    """runc restore: a container from the images at ``image_path``."""

    name = "criu.restore"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        binary = _checked("restore", ctx)
        return ctx.drivers.process.restore(binary, ctx.request)

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.process.kill_init()
