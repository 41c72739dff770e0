"""cgroup.* actions: the container's control group through its manager."""

from __future__ import annotations

from engine.actions.base import Action, ActionContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["CgroupCreate", "CgroupDestroy", "CgroupFreeze", "CgroupThaw", "CgroupUpdate"]


class CgroupCreate(Action):
    name = "cgroup.create"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return ctx.drivers.cgroups.create()

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.cgroups.destroy()


class CgroupDestroy(Action):
    name = "cgroup.destroy"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ctx.drivers.cgroups.destroy()
        return {}


class CgroupFreeze(Action):
    """runc pause: freeze, and wait for the kernel to report FROZEN."""

    name = "cgroup.freeze"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ctx.drivers.cgroups.freeze()
        return {}

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.cgroups.thaw()


class CgroupThaw(Action):
    name = "cgroup.thaw"
    reversible = True

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        ctx.drivers.cgroups.thaw()
        return {}

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        ctx.drivers.cgroups.freeze()


class CgroupUpdate(Action):
    """runc update: the request's ``resources`` (OCI ``linux.resources``)
    written to the cgroup; the limit files' values before and after."""

    name = "cgroup.update"

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return ctx.drivers.cgroups.update(dict(ctx.request.get("resources") or {}))
