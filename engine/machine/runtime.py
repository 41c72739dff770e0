"""A machine definition run by the ``transitions`` library.

This is the one module that imports ``transitions`` (with three of its
imports deferred: :mod:`engine.deferred`). Each transition of the
definition becomes a ``transitions`` transition whose ``before`` callback
runs its actions; an action failure raises out of the trigger before the
state changes, so the model stays where it was. ``auto_transitions`` is off
(no ``to_<state>()`` back doors) and an invalid trigger raises.
"""

from __future__ import annotations

from engine.deferred import importing_transitions, inspect_on_first_use

inspect_on_first_use()
with importing_transitions():
    from transitions import EventData, Machine, MachineError

from engine.actions.base import Action, ActionContext  # noqa: E402
from engine.lifecycle import run_actions, undo_records  # noqa: E402
from engine.machine.definition import MachineDefinition, TransitionDef  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["Lifecycle"]


class _Model:
    """What ``transitions`` drives: a state, plus the last transition's records."""

    def __init__(self) -> None:
        self.state = ""
        self._records: list[dict[str, Any]] = []


class Lifecycle:
    """Ask whether a trigger is allowed in a state; fire it with its actions."""

    def __init__(self, definition: MachineDefinition, registry: Mapping[str, Action]) -> None:
        self.definition = definition
        self._registry = registry
        # Models added to the machine once and set to the state asked about:
        # add_model() puts a method per trigger on each (0.05 ms), and a
        # monitor asks two or three times a request. One per nesting level.
        self._idle: list[_Model] = []
        self._machine = Machine(
            model=None,
            states=list(definition.states),
            initial=definition.initial,
            transitions=[self._spec(t) for t in definition.transitions],
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=True,
        )

    def _spec(self, tdef: TransitionDef) -> dict[str, Any]:
        return {
            "trigger": tdef.trigger,
            "source": list(tdef.sources),
            "dest": tdef.dest,
            "before": [self._runner(tdef)],
        }

    def _runner(self, tdef: TransitionDef) -> Callable[[EventData], None]:
        def run(event: EventData) -> None:
            ctx: ActionContext = event.kwargs["ctx"]
            model = event.model
            assert isinstance(model, _Model)
            model._records = run_actions(tdef.actions, ctx, self._registry)

        return run

    def _model(self, state: str) -> _Model:
        if self._idle:
            model = self._idle.pop()
        else:
            model = _Model()
            self._machine.add_model(model, initial=self.definition.initial)
        self._machine.set_state(state, model=model)
        model._records = []
        return model

    def may(self, state: str, trigger: str) -> bool:
        if trigger not in self._machine.events:
            return False
        model = self._model(state)
        try:
            return bool(getattr(model, f"may_{trigger}")())
        finally:
            self._idle.append(model)

    def fire(
        self, state: str, trigger: str, ctx: ActionContext
    ) -> tuple[str, list[dict[str, Any]]]:
        """Run ``trigger`` from ``state``; return the new state and the action records.

        Raises :class:`engine.lifecycle.ActionsFailed` when an action fails
        (the model's state is unchanged), ``ValueError`` when the trigger is
        not allowed (callers ask :meth:`may` first).
        """
        if trigger not in self._machine.events:
            raise ValueError(f"{trigger} is not allowed in state {state}: no such trigger")
        model = self._model(state)
        try:
            # transitions adds trigger() to the model at add_model().
            getattr(model, "trigger")(trigger, ctx=ctx)  # noqa: B009
        except MachineError as err:
            raise ValueError(f"{trigger} is not allowed in state {state}: {err.value}") from err
        finally:
            self._idle.append(model)
        return model.state, model._records

    def reversible(self, state: str, trigger: str) -> bool:
        """Whether any action of ``trigger`` from ``state`` can be undone."""
        tdef = self.definition.find(trigger, state)
        return tdef is not None and any(self._registry[a.name].reversible for a in tdef.actions)

    def undo(
        self, state: str, trigger: str, ctx: ActionContext, records: list[dict[str, Any]]
    ) -> tuple[list[str], list[str], list[str]]:
        """Undo a fired transition (its event could not be recorded):
        (undone, not undone, undo errors)."""
        tdef = self.definition.find(trigger, state)
        if tdef is None:
            return [], [], []
        return undo_records(tdef.actions, records, ctx, self._registry)
