"""In-memory drivers: a pretend world where containers live without a kernel.

They behave like the real drivers at the interface - pids, exit statuses,
hooks with exit codes and stderr, a freezer - record every call in order,
and fail where a test injects a fault, so the lifecycle (transitions,
rejections, failures and their undo) is tested without root, and
``make demo`` can run anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.actions.base import Drivers
from engine.errors import ActionError
from engine.oci.version import OCI_VERSION

__all__ = ["FakeHook", "FakeWorld"]

# Signals whose default action ends the process (signal(7)), as far as the
# fake init is concerned.
_TERMINATING = frozenset({1, 2, 3, 6, 9, 14, 15})
SIGKILL = 9


class FakeHook:
    __slots__ = ("exit_code", "path", "stderr")

    def __init__(self, path: str, exit_code: int = 0, stderr: str = "") -> None:
        self.path = path
        self.exit_code = exit_code
        self.stderr = stderr


class FakeWorld:
    """Every fake container's drivers, the pids they got, and a call log."""

    def __init__(self, hooks: Mapping[str, Iterable[FakeHook]] | None = None) -> None:
        self.hooks = {point: list(found) for point, found in (hooks or {}).items()}
        self.faults: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str]] = []
        self._next_pid = 1000
        self._drivers: dict[str, Drivers] = {}

    def fail(self, container_id: str, what: str) -> None:
        """Make ``what`` (e.g. "process.spawn_init", "cgroup.freeze") fail for a container."""
        self.faults.add((container_id, what))

    def drivers(self, container_id: str) -> Drivers:
        if container_id not in self._drivers:
            process = FakeProcess(self, container_id)
            cgroups = FakeCgroups(self, container_id)
            self._drivers[container_id] = Drivers(
                process, FakeHooks(self, container_id), cgroups, FakeState(self, process)
            )
        return self._drivers[container_id]

    def process(self, container_id: str) -> FakeProcess:
        found = self.drivers(container_id).process
        assert isinstance(found, FakeProcess)
        return found

    def cgroups(self, container_id: str) -> FakeCgroups:
        found = self.drivers(container_id).cgroups
        assert isinstance(found, FakeCgroups)
        return found

    def forget(self, container_id: str) -> None:
        self._drivers.pop(container_id, None)

    def new_pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def call(self, container_id: str, what: str) -> None:
        self.calls.append((container_id, what))
        if (container_id, what) in self.faults:
            raise ActionError(f"{what} failed (injected fault)")


class FakeProcess:
    def __init__(self, world: FakeWorld, container_id: str) -> None:
        self.world = world
        self.container_id = container_id
        self.pid: int | None = None
        self.released = False
        self.exited: dict[str, Any] | None = None
        self.frozen = False
        self.pending: list[int] = []

    def spawn_init(self) -> dict[str, Any]:
        self.world.call(self.container_id, "process.spawn_init")
        self.pid, self.released, self.exited = self.world.new_pid(), False, None
        return {"pid": self.pid}

    def release(self) -> dict[str, Any]:
        self.world.call(self.container_id, "process.release")
        if self.pid is None or self.exited is not None:
            raise ActionError("the init is not waiting to be released")
        self.released = True
        return {"pid": self.pid}

    def confirm_exec(self) -> dict[str, Any]:
        self.world.call(self.container_id, "process.confirm_exec")
        if self.pid is None or self.exited is not None or not self.released:
            raise ActionError("the init has not exec'd the user process")
        return {"pid": self.pid}

    def signal(self, signo: int, all_processes: bool) -> dict[str, Any]:
        self.world.call(self.container_id, f"process.signal:{signo}")
        if self.pid is None or self.exited is not None:
            raise ActionError("container not running")
        if self.frozen and signo != SIGKILL:
            self.pending.append(signo)  # delivered on thaw, as by the kernel
        elif signo in _TERMINATING:
            self.exited = {"signal": signo}
        return {"signal": signo, "all": all_processes, "pid": self.pid}

    def kill_init(self) -> None:
        self.world.call(self.container_id, "process.kill_init")
        if self.pid is not None and self.exited is None:
            self.exited = {"signal": SIGKILL}

    def exit_status(self) -> dict[str, Any] | None:
        return None if self.exited is None else dict(self.exited)

    def checkpoint(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        self.world.call(self.container_id, "process.checkpoint")
        if not request.get("leave_running"):
            self.exited = {"signal": SIGKILL}
        return {"image_path": request.get("image_path")}

    def restore(self, criu: str, request: Mapping[str, Any]) -> dict[str, Any]:
        self.world.call(self.container_id, "process.restore")
        self.pid, self.released, self.exited = self.world.new_pid(), True, None
        return {"pid": self.pid, "image_path": request.get("image_path")}

    def exit(self, code: int) -> None:
        """The user's process ends by itself with ``code``."""
        assert self.pid is not None, "no init to exit"
        self.exited = {"exit_code": code}

    def thawed(self) -> None:
        self.frozen = False
        for signo in self.pending:
            if signo in _TERMINATING and self.exited is None:
                self.exited = {"signal": signo}
        self.pending.clear()


class FakeHooks:
    def __init__(self, world: FakeWorld, container_id: str) -> None:
        self.world = world
        self.container_id = container_id
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def run(
        self, point: str, state: Mapping[str, Any], *, keep_going: bool = False
    ) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        failures: list[str] = []
        for hook in self.world.hooks.get(point, []):
            self.world.call(self.container_id, f"hook:{point}:{hook.path}")
            self.seen.append((point, dict(state)))
            run = {
                "path": hook.path,
                "exit_code": hook.exit_code,
                "duration_ms": 0.0,
                "stderr_tail": hook.stderr,
            }
            runs.append(run)
            if hook.exit_code != 0:
                failures.append(
                    f"{point} hook {hook.path} exited with status {hook.exit_code}: "
                    f"{hook.stderr.strip()}"
                )
                if not keep_going:
                    break
        if failures:
            raise ActionError("; ".join(failures), runs=runs)
        return runs


class FakeCgroups:
    def __init__(self, world: FakeWorld, container_id: str) -> None:
        self.world = world
        self.container_id = container_id
        self.exists = False
        self.frozen = False

    def create(self) -> dict[str, Any]:
        self.world.call(self.container_id, "cgroup.create")
        self.exists = True
        return {}

    def destroy(self) -> None:
        self.world.call(self.container_id, "cgroup.destroy")
        self.exists = False

    def freeze(self) -> None:
        self.world.call(self.container_id, "cgroup.freeze")
        self.frozen = True
        self.world.process(self.container_id).frozen = True

    def thaw(self) -> None:
        self.world.call(self.container_id, "cgroup.thaw")
        self.frozen = False
        self.world.process(self.container_id).thawed()

    def update(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        self.world.call(self.container_id, "cgroup.update")
        return {"before": {}, "after": {}}


class FakeState:
    def __init__(self, world: FakeWorld, process: FakeProcess) -> None:
        self.world = world
        self.process = process
        self.removed = False

    def remove(self) -> None:
        self.world.call(self.process.container_id, "state.remove")
        self.removed = True

    def oci_state(self, status: str) -> dict[str, Any]:
        return {
            "ociVersion": OCI_VERSION,
            "id": self.process.container_id,
            "status": status,
            "pid": self.process.pid,
            "bundle": f"/fake/bundles/{self.process.container_id}",
        }
