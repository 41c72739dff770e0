"""Running a transition's actions in order, and undoing them when one fails.

runtime-spec: a failed operation leaves the container as if it had not been
attempted. So when action *k* fails, actions *k-1 … 1* are undone in reverse
order; what could not be undone (an exec, a removed cgroup) is named in the
failure, so the ``failed`` event says exactly where the container was left.
"""

from __future__ import annotations

import time

from engine import faults
from engine.actions.base import Action, ActionContext
from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Protocol
else:
    Protocol = object  # structural types, checked by mypy only

__all__ = ["ActionsFailed", "StepRef", "run_actions", "undo_records"]


class StepRef(Protocol):
    """One action of a transition as the machine definition gives it."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> Mapping[str, object]: ...
    def label(self) -> str: ...


class ActionsFailed(Exception):
    """An action failed; the completed ones were undone where they could be."""

    def __init__(
        self,
        action: str,
        cause: str,
        details: Mapping[str, Any],
        done: list[dict[str, Any]],
        undone: list[str],
        not_undone: list[str],
        undo_errors: list[str],
    ) -> None:
        self.action = action
        self.cause = cause
        self.details = dict(details)
        self.done = done
        self.undone = undone
        self.not_undone = not_undone
        self.undo_errors = undo_errors
        super().__init__(f"{action}: {cause}")

    def payload(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "error": self.cause,
            "details": self.details,
            "done": self.done,
            "undone": self.undone,
            "not_undone": self.not_undone,
            "undo_errors": self.undo_errors,
        }


def run_actions(
    steps: Sequence[StepRef], ctx: ActionContext, registry: Mapping[str, Action]
) -> list[dict[str, Any]]:
    """Run ``steps``; return one record per action (label, result, duration)."""
    done: list[tuple[StepRef, Action, dict[str, Any]]] = []
    records: list[dict[str, Any]] = []
    for step in steps:
        action = registry[step.name]
        started = time.perf_counter()
        try:
            result = action.run(ctx, step.params)
        except Exception as err:
            # Anything a driver raises aborts the transition the same way: a
            # half-done transition left un-undone is the worse outcome.
            details = err.details if isinstance(err, ActionError) else {}
            cause = str(err) if isinstance(err, ActionError) else f"{type(err).__name__}: {err}"
            undone, not_undone, undo_errors = _undo(done, ctx)
            raise ActionsFailed(
                step.label(), cause, details, records, undone, not_undone, undo_errors
            ) from err
        if faults.ARMED:
            faults.point(ctx.trigger, f"after:{step.label()}")
        done.append((step, action, result))
        records.append(
            {
                "action": step.label(),
                "result": result,
                "ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
    return records


def undo_records(
    steps: Sequence[StepRef],
    records: Sequence[Mapping[str, Any]],
    ctx: ActionContext,
    registry: Mapping[str, Action],
) -> tuple[list[str], list[str], list[str]]:
    """Undo a transition whose actions all completed (``records``, from
    :func:`run_actions`), last first: when its event could not be recorded.
    Returns (undone, not undone, undo errors), as a failed action's undo."""
    done = [
        (step, registry[step.name], dict(record.get("result") or {}))
        for step, record in zip(steps, records, strict=False)
    ]
    return _undo(done, ctx)


def _undo(
    done: list[tuple[StepRef, Action, dict[str, Any]]], ctx: ActionContext
) -> tuple[list[str], list[str], list[str]]:
    undone: list[str] = []
    not_undone: list[str] = []
    errors: list[str] = []
    for step, action, result in reversed(done):
        if not action.reversible:
            not_undone.append(step.label())
            continue
        try:
            action.undo(ctx, step.params, result)
        except Exception as err:
            not_undone.append(step.label())
            errors.append(f"{step.label()}: {err}")
        else:
            undone.append(step.label())
    return undone, not_undone, errors
