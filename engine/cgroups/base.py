"""The cgroup manager interface every implementation (v1, v2, hybrid, fake) offers.

One manager is one container's cgroup, across every hierarchy that
applies. The lifecycle drives it in this order (runc's
``cgroups.Manager``: Apply, Set, then the freezer):

    create()  -> apply(resources) -> add(init pid)        action cgroup.create
    freeze() / thaw()                                      cgroup.freeze / cgroup.thaw
    freezer_state(), pids(), stats()                       state, ps, events --stats
    destroy()                                              cgroup.destroy

``stats()`` returns the ``data`` object of ``runc events --stats``
(runc types/events.go), with the groups the hierarchies have::

    {"cpu": {"usage": {"total", "kernel", "user", "percpu"},     # ns
             "throttling": {"periods", "throttled_periods", "throttled_time"}},
     "memory": {"cache", "usage": {"usage", "max", "limit", "failcnt"},
                "swap": {...same keys...}, "raw": {memory.stat}},
     "pids": {"current", "limit"},                               # limit 0: unlimited
     "hugetlb": {"2MB": {"usage", "max", "failcnt"}, ...}}

No enum or dataclass here: ``runlog pause``/``resume`` import this module
on the scheduler's hot path, where each such import costs milliseconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.cgroups.resources import Resources

__all__ = [
    "DEFAULT_FREEZE_TIMEOUT",
    "CgroupManager",
    "FreezerState",
]

# Seconds to wait for the kernel to report FROZEN/THAWED. runc's v1 loop
# makes up to 1000 attempts with short sleeps (fs/freezer.go) and its v2
# wait about as long; a few seconds covers a slow, loaded machine.
DEFAULT_FREEZE_TIMEOUT = 5.0


class FreezerState:
    """What ``freezer_state()`` returns (runc ``configs.FreezerState``,
    with the transitional state kept rather than waited out)."""

    THAWED = "thawed"
    FREEZING = "freezing"
    FROZEN = "frozen"


class CgroupManager(ABC):
    """One container's cgroup. Methods raise ``CgroupError`` (what, where,
    what to do) or ``UnsupportedError`` (this host cannot)."""

    #: "v1", "v2", "hybrid" or "fake"
    kind: str = ""

    @property
    @abstractmethod
    def paths(self) -> dict[str, str]:
        """Controller -> cgroup directory ("unified" for the cgroup2 tree).

        Store this in the container's state: a later process (``runlog
        pause`` from another shell) may sit in another cgroup and would
        resolve a relative cgroupsPath differently; ``manager_at(paths)``
        rebuilds the manager from it, as runc keeps ``cgroup_paths``.
        """

    @abstractmethod
    def create(self) -> None:
        """Make the cgroup directory in every hierarchy (parents included).
        An existing cgroup is joined, as runc does; on failure the
        directories made so far are removed again."""

    @abstractmethod
    def apply(self, resources: Resources) -> list[str]:
        """Write the limits in ``resources`` (runc ``Manager.Set``); return
        warnings for settings this host has no file for, which are ignored
        (cgroup v1's memory knobs on cgroup v2, as runc ignores them)."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup in every hierarchy (cgroup.procs)."""

    @abstractmethod
    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        """Freeze every process and wait until the kernel reports frozen.
        On timeout thaw again (the container is left as it was, runtime-spec
        "as if the operation had never been attempted") and raise."""

    @abstractmethod
    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        """Thaw and wait until the kernel reports thawed; raise on timeout."""

    @abstractmethod
    def freezer_state(self) -> str:
        """``FreezerState.FROZEN``, ``THAWED`` or ``FREEZING``; a cgroup that
        does not exist (or has no freezer) is ``THAWED``."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Pids in the cgroup and its descendants, sorted (runc
        ``GetAllPids``); ``[]`` when the cgroup does not exist."""

    def kill_all(self) -> list[int]:
        """SIGKILL every process in the cgroup, once, then thaw it if it is
        frozen (a frozen v1 task does not die until thawed); the pids
        signalled. Callers that need the cgroup empty call it until it is."""
        import posix

        killed: list[int] = []
        for pid in self.pids():
            try:
                posix.kill(pid, 9)  # SIGKILL
            except ProcessLookupError:
                continue
            killed.append(pid)
        if killed and self.freezer_state() != "thawed":
            self.thaw()
        return killed

    @abstractmethod
    def stats(self) -> dict[str, object]:
        """Usage and limits as ``runc events --stats`` reports them."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup (descendants first) in every hierarchy, retrying
        briefly while the kernel lets go of exited tasks. Kills nothing: a
        cgroup with processes raises. Already gone is fine."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the cgroup directory exists in any hierarchy (something
        left to use or to remove)."""

    def entry(self) -> tuple[list[str], str | None]:
        """How a new, single-threaded process enters this cgroup without
        waiting on the kernel's threadgroup lock (:mod:`engine.linux.clone`):
        the v1 ``tasks`` files it writes ``0`` to, once per directory, and
        the cgroup2 directory to fork it into (``None`` without one)."""
        tasks: list[str] = []
        for controller, directory in self.paths.items():
            task_file = f"{directory}/tasks"
            if controller != "unified" and task_file not in tasks:
                tasks.append(task_file)
        return tasks, self.paths.get("unified")

    def lacks(self, trigger: str, resources: Mapping[str, object] | None) -> str | None:
        """Why ``trigger`` (pause, resume, or update to the OCI
        ``resources``) cannot be done here, before anything is tried; None
        if it can. Only a rootless manager that did without hierarchies
        lacks any (:mod:`engine.cgroups.rootless`)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.paths!r})"
