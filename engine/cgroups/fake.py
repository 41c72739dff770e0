"""An in-memory cgroup manager for tests of the lifecycle.

Keeps the rules the real managers enforce (add or freeze before create
fails, destroy refuses while processes remain and is idempotent once gone,
freeze/thaw are reflected by ``freezer_state``), records every call, and
can be told to fail a method. It never touches the host: pids are just
numbers, and a process leaves only when the test says so (``discard``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.cgroups.base import DEFAULT_FREEZE_TIMEOUT, CgroupManager, FreezerState
from engine.cgroups.errors import CgroupError

if TYPE_CHECKING:
    from engine.cgroups.resources import Resources

__all__ = ["FakeCgroupManager"]

_METHODS = frozenset(
    {
        "create",
        "apply",
        "add",
        "freeze",
        "thaw",
        "freezer_state",
        "pids",
        "stats",
        "destroy",
        "exists",
    }
)


class FakeCgroupManager(CgroupManager):
    """A cgroup that lives in this object.

    ``calls`` lists ``(method, args)`` in order; ``fail(method)`` makes the
    next calls of ``method`` raise (``CgroupError`` unless told otherwise);
    ``freeze_sticks`` makes ``freeze`` end in FREEZING and time out, as a
    cgroup whose tasks keep forking can.
    """

    kind = "fake"

    def __init__(self, path: str = "/runlog/fake") -> None:
        self.path = path
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.created = False
        self.applied: list[Resources] = []
        self.procs: set[int] = set()
        self.state = FreezerState.THAWED
        self.freeze_sticks = False
        self._failures: dict[str, tuple[BaseException, int | None]] = {}

    # -- test controls ------------------------------------------------------------

    def fail(
        self, method: str, error: BaseException | None = None, *, times: int | None = None
    ) -> None:
        """Make ``method`` raise ``error`` on its next ``times`` calls (all, if None)."""
        if method not in _METHODS:
            raise ValueError(f"FakeCgroupManager has no method {method!r} to fail")
        if error is None:
            error = CgroupError(f"{method}: failure injected by the test", path=self.path)
        self._failures[method] = (error, times)

    def heal(self, method: str | None = None) -> None:
        """Stop failing ``method`` (every method if None)."""
        if method is None:
            self._failures.clear()
        else:
            self._failures.pop(method, None)

    def discard(self, pid: int) -> None:
        """The process left the cgroup (it exited, say)."""
        self.procs.discard(pid)

    def _enter(self, method: str, *args: object) -> None:
        self.calls.append((method, args))
        failure = self._failures.get(method)
        if failure is None:
            return
        error, times = failure
        if times is not None:
            if times <= 1:
                del self._failures[method]
            else:
                self._failures[method] = (error, times - 1)
        raise error

    def _require(self, what: str) -> None:
        if not self.created:
            raise CgroupError(f"cannot {what}: cgroup {self.path} does not exist", path=self.path)

    # -- the interface ------------------------------------------------------------

    @property
    def paths(self) -> dict[str, str]:
        return {"fake": self.path}

    def create(self) -> None:
        self._enter("create")
        self.created = True

    def apply(self, resources: Resources) -> list[str]:
        self._enter("apply", resources)
        self._require("set limits")
        self.applied.append(resources)
        return []

    def add(self, pid: int) -> None:
        self._enter("add", pid)
        self._require(f"add process {pid}")
        self.procs.add(pid)

    def freeze(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._enter("freeze", timeout)
        self._require("freeze")
        if self.freeze_sticks:
            # What the real managers do on timeout: thaw again, then raise.
            self.state = FreezerState.THAWED
            raise CgroupError(f"{self.path}: still FREEZING after {timeout:g}s", path=self.path)
        self.state = FreezerState.FROZEN

    def thaw(self, timeout: float = DEFAULT_FREEZE_TIMEOUT) -> None:
        self._enter("thaw", timeout)
        self._require("thaw")
        self.state = FreezerState.THAWED

    def freezer_state(self) -> str:
        self._enter("freezer_state")
        return self.state if self.created else FreezerState.THAWED

    def pids(self) -> list[int]:
        self._enter("pids")
        return sorted(self.procs) if self.created else []

    def stats(self) -> dict[str, object]:
        self._enter("stats")
        self._require("read stats")
        memory_limit = 0
        pids_limit = 0
        for r in self.applied:
            memory_limit = r.memory_limit if r.memory_limit is not None else memory_limit
            pids_limit = r.pids_limit if r.pids_limit is not None else pids_limit
        return {
            "cpu": {"usage": {"total": 0, "kernel": 0, "user": 0, "percpu": []}},
            "memory": {"usage": {"usage": 0, "max": 0, "limit": memory_limit, "failcnt": 0}},
            "pids": {"current": len(self.procs), "limit": max(pids_limit, 0)},
        }

    def destroy(self) -> None:
        self._enter("destroy")
        if not self.created:
            return
        if self.procs:
            raise CgroupError(
                f"cannot remove cgroup {self.path}: processes still in it: "
                f"{' '.join(map(str, sorted(self.procs)))}",
                path=self.path,
            )
        self.created = False
        self.state = FreezerState.THAWED
        self.applied.clear()

    def exists(self) -> bool:
        self._enter("exists")
        return self.created
