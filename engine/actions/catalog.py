"""The names and parameters of every action a machine definition may invoke.

This is plain data so that validating ``statemachine.yaml`` needs no action
code: the loader checks names and parameters here, the engine binds the names
to implementations in :mod:`engine.actions.registry`.
"""

from __future__ import annotations

from types import MappingProxyType

from engine.frozen import field, record
from engine.oci.names import HOOK_POINTS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ACTIONS", "HOOK_POINTS", "ON_FAILURE", "ActionSignature", "Param"]

ON_FAILURE = ("abort", "warn")


@record
class Param:
    """One parameter of an action: its type, allowed values, and default."""

    kind: type
    choices: tuple[str, ...] | None = None
    required: bool = False
    default: object = None


@record
class ActionSignature:
    name: str
    summary: str
    params: Mapping[str, Param] = field(default_factory=dict)


def _sig(name: str, summary: str, **params: Param) -> tuple[str, ActionSignature]:
    return name, ActionSignature(name, summary, MappingProxyType(params))


ACTIONS: Mapping[str, ActionSignature] = MappingProxyType(
    dict(
        [
            _sig("cgroup.create", "create the container's cgroup and apply its resources"),
            _sig("cgroup.destroy", "remove the container's cgroup"),
            _sig("cgroup.freeze", "freeze the cgroup and wait until it is frozen"),
            _sig("cgroup.thaw", "thaw the cgroup and wait until it is thawed"),
            _sig("cgroup.update", "write new limits (runc update); the values before and after"),
            _sig(
                "process.spawn_init",
                "fork the init into its namespaces and rootfs; it waits before exec",
            ),
            _sig("process.release", "let the waiting init exec the user process"),
            _sig(
                "process.confirm_exec",
                "find the init running the user process (a start whose monitor was lost)",
            ),
            _sig("process.signal", "send a signal to the init (or every process)"),
            _sig("process.collect_status", "record the init's exit code or signal"),
            _sig(
                "hook",
                "run the config's hooks for one point",
                point=Param(str, HOOK_POINTS, required=True),
                on_failure=Param(str, ON_FAILURE, default="abort"),
            ),
            _sig("state.remove", "remove the container's state directory"),
            _sig("criu.dump", "checkpoint through CRIU (runlog does not drive it yet)"),
            _sig("criu.restore", "restore through CRIU (runlog does not drive it yet)"),
        ]
    )
)
