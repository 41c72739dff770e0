"""The hybrid manager: v1 controllers, plus the cgroup2 tree beside them.

On a hybrid host (systemd's "hybrid" layout, and these machines) the
controllers are v1 hierarchies under ``/sys/fs/cgroup/<ctrl>`` and a
cgroup2 tree is mounted at ``/sys/fs/cgroup/unified``, holding the
controllers no v1 hierarchy took (here: hugetlb) or none at all.

Design: a composition of a ``V1Manager`` and a ``V2Manager`` for the
unified part, rather than a v1 manager with an optional v2 part, so each
keeps one set of kernel rules and the routing is visible in one place:

* the container gets a directory in both, and its processes are added to
  both, as runc's fs driver does in hybrid mode (its ``""`` path);
* a limit goes to the v1 hierarchy of its controller when one is mounted,
  otherwise to the unified tree if that offers the controller (the
  controller is then enabled on the way down, on first use), otherwise it
  is an error naming the controller;
* freezing uses the v1 freezer when mounted, else ``cgroup.freeze``;
* stats are v1's, completed with groups only the unified tree has.
"""

from __future__ import annotations

from engine.cgroups import files
from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager
from engine.cgroups.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.cgroups.resources import Resources
    from engine.cgroups.v1 import V1Manager
    from engine.cgroups.v2 import V2Manager

__all__ = ["HybridManager"]


class HybridManager(CgroupManager):
    """``v1`` for the v1 hierarchies, ``unified`` for the cgroup2 tree."""

    kind = "hybrid"

    def __init__(self, v1: V1Manager, unified: V2Manager) -> None:
        self.v1 = v1
        self.unified = unified

    @property
    def paths(self) -> dict[str, str]:
        return {**self.v1.paths, **self.unified.paths}

    def _freezer(self) -> CgroupManager:
        return self.v1 if self.v1.has("freezer") else self.unified

    def create(self) -> None:
        made = self.v1.make()
        try:
            self.unified.create()
        except BaseException:
            files.undo_mkdirs(made)  # what v1 made, and no more
            raise

    def apply(self, resources: Resources) -> list[str]:
        warnings: list[str] = []
        for controller in resources.controllers():
            if self.v1.has(controller):
                warnings += self.v1.apply_controller(controller, resources)
            elif controller == "devices" or self.unified.available(controller):
                # Without a v1 devices hierarchy, the cgroup2 tree's device
                # program enforces the rules (cgroup membership there is
                # what the kernel asks it about).
                warnings += self.unified.apply_controller(controller, resources)
            else:
                raise CgroupError(
                    f"cannot set {controller} limits: neither a v1 {controller} hierarchy "
                    f"nor the cgroup2 tree ({self.unified.paths['unified']}) offers the "
                    f"{controller} controller on this host; drop the setting from config.json",
                    controller=controller,
                )
        return warnings

    def add(self, pid: int) -> None:
        self.v1.add(pid)
        self.unified.add(pid)

    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._freezer().freeze(timeout)

    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._freezer().thaw(timeout)

    def freezer_state(self) -> str:
        return self._freezer().freezer_state()

    def pids(self) -> list[int]:
        return self.v1.pids()

    def stats(self) -> dict[str, object]:
        stats = self.v1.stats()
        for group, values in self.unified.stats().items():
            stats.setdefault(group, values)
        return stats

    def destroy(self) -> None:
        first: CgroupError | None = None
        for part in (self.v1, self.unified):
            try:
                part.destroy()
            except CgroupError as err:
                first = first or err
        if first is not None:
            raise first

    def exists(self) -> bool:
        return self.v1.exists() or self.unified.exists()
