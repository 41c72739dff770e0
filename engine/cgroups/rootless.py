"""Rootless cgroups: the hierarchies the caller may write, and doing without the rest.

runc's rootless mode (``--rootless``, by default whenever it is not root)
uses a cgroup where the caller can make one - a cgroup v2 subtree that
systemd, Slurm or an admin delegated to it, a v1 hierarchy whose directory
it owns - and does without the others, as long as the config asks for no
limit there. runlog does the same:

* :func:`writable` keeps, of a container's cgroup directories, those in a
  place the caller may write (the nearest existing directory writable, and
  for cgroup2 its ``cgroup.procs`` too: the init is moved from there);
* :class:`RootlessManager` works on those alone. A limit in a hierarchy it
  does without fails with runc's words ("cannot set memory limit: container
  could not join or create cgroup"); device rules are not enforced, as runc
  ignores them rootless (a user namespace cannot mknod anyway, and the
  devices it binds are the caller's own); ``pause`` and ``resume`` without
  a freezer fail as runc's do ("cannot toggle freezer: cgroups not
  configured for container").

runc keeps to this only for a container without ``cgroupsPath``; runlog
also for one with it, so that a path into a delegated subtree works where
only some hierarchies are delegated (docs/rootless.md).
"""

from __future__ import annotations

import os

from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager
from engine.cgroups.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.cgroups.resources import Resources

__all__ = ["NO_FREEZER", "RootlessManager", "disabled", "may_write", "writable"]

#: runc's error for pause/resume of a container without a freezer cgroup.
NO_FREEZER = "cannot toggle freezer: cgroups not configured for container"


def may_write(directory: str, controller: str) -> bool:
    """Whether the caller can make (or use) the cgroup ``directory``."""
    probe = directory
    while not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return False
    procs = os.path.join(probe, "cgroup.procs")
    if controller == "unified" or probe == directory:
        return os.access(procs, os.W_OK)
    return True


def writable(paths: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the paths the caller may use, the controllers left out)."""
    kept: dict[str, str] = {}
    skipped: list[str] = []
    for controller, directory in paths.items():
        if may_write(directory, controller):
            kept[controller] = directory
        else:
            skipped.append(controller)
    return kept, skipped


class RootlessManager(CgroupManager):
    """``inner`` (``None``: no cgroup at all) for the writable hierarchies;
    ``skipped`` the controllers done without. ``disabled``: none at all,
    because ``--cgroup-manager=disabled`` says so (:func:`disabled`), which
    the errors name."""

    def __init__(
        self, inner: CgroupManager | None, skipped: list[str], *, disabled: bool = False
    ) -> None:
        self.inner = inner
        self.skipped = sorted(skipped)
        self.disabled = disabled
        self.kind = "disabled" if disabled else "rootless"

    @property
    def paths(self) -> dict[str, str]:
        return {} if self.inner is None else self.inner.paths

    def report(self) -> dict[str, object]:
        """For the create event: which controllers were set up, which not."""
        report: dict[str, object] = {
            "cgroups": sorted(self.paths),
            "cgroups_skipped": list(self.skipped),
        }
        if self.disabled:
            report["cgroup_manager"] = "disabled"
        return report

    def create(self) -> None:
        if self.inner is not None:
            self.inner.create()

    def _settable(self, resources: Resources) -> None:
        """Raise runc's error for the first limit in a hierarchy done without."""
        paths = self.paths
        for controller in resources.controllers():
            if controller == "devices":
                continue  # not enforced rootless, as runc
            if controller not in paths and "unified" not in paths:
                raise _cannot_set(controller, self.disabled)

    def apply(self, resources: Resources) -> list[str]:
        self._settable(resources)
        if self.inner is None:
            return []
        return self.inner.apply(_without_devices(resources))

    def lacks(self, trigger: str, resources: Mapping[str, object] | None) -> str | None:
        """Why ``trigger`` (pause, resume, update to the OCI ``resources``)
        cannot be done without the hierarchies done without, in runc's
        words; None if it can (or if ``resources`` do not parse, which
        the update itself says)."""
        try:
            if trigger in ("pause", "resume"):
                self._freezer()
            elif trigger == "update" and resources:
                from engine.cgroups.resources import Resources

                self._settable(Resources.from_oci(resources))
        except CgroupError as err:
            return str(err)
        return None

    def add(self, pid: int) -> None:
        if self.inner is not None:
            self.inner.add(pid)

    def _freezer(self) -> CgroupManager:
        paths = self.paths
        if self.inner is None or ("freezer" not in paths and "unified" not in paths):
            raise CgroupError(NO_FREEZER, controller="freezer")
        return self.inner

    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._freezer().freeze(timeout)

    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._freezer().thaw(timeout)

    def freezer_state(self) -> str:
        return "thawed" if self.inner is None else self.inner.freezer_state()

    def pids(self) -> list[int]:
        return [] if self.inner is None else self.inner.pids()

    def stats(self) -> dict[str, object]:
        return {} if self.inner is None else self.inner.stats()

    def destroy(self) -> None:
        if self.inner is not None:
            self.inner.destroy()

    def exists(self) -> bool:
        return self.inner is not None and self.inner.exists()

    def entry(self) -> tuple[list[str], str | None]:
        return ([], None) if self.inner is None else self.inner.entry()


def disabled(controllers: list[str]) -> RootlessManager:
    """No cgroup of the container's own (``--cgroup-manager=disabled``, as
    crun's): its processes stay in the caller's cgroups, as any other
    process the caller starts; ``controllers`` those it goes without.
    A limit in the config is refused, as rootless where no hierarchy may
    be written; so are pause and resume, in runc's words."""
    return RootlessManager(None, controllers, disabled=True)


def _cannot_set(controller: str, disabled: bool = False) -> CgroupError:
    why = (
        "--cgroup-manager=disabled gives the container no cgroup"
        if disabled
        else "container could not join or create cgroup"
    )
    return CgroupError(f"cannot set {controller} limit: {why}", controller=controller)


def _without_devices(resources: Resources) -> Resources:
    if not resources.devices:
        return resources
    from engine.frozen import replace

    return replace(resources, devices=())
