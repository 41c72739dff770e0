"""A machine compiled for replay, and the slow path through ``transitions``.

Replay needs two answers from a machine for each event: is this trigger
allowed in this state, and which state does it lead to. Asking the
``transitions`` machine per event (a model added, the trigger fired through
its callbacks, the model removed) costs tens of microseconds, so a replay of
a large log would run at a few thousand events a second.

:class:`TransitionTable` asks it once instead: for every (state, trigger)
pair of the definition it asks the :class:`~engine.machine.runtime.Lifecycle`
- the ``transitions`` machine runtime runs, built with null actions - whether
the trigger may fire and where firing it leads, and keeps the answers in a
dict. Replay is then one dict lookup per event. Because the table is read
off the running machine, not re-derived from the YAML, it holds what
``transitions`` decides (internal transitions, the first matching
transition), and nothing else.

:class:`LifecycleStepper` answers the same questions by firing each event
through the ``transitions`` machine with null actions: slow, and the
reference the property tests hold the table to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from engine.actions.base import Action, ActionContext, Drivers
from engine.actions.catalog import ACTIONS
from engine.machine.definition import MachineDefinition
from engine.machine.runtime import Lifecycle

__all__ = ["NULL_REGISTRY", "LifecycleStepper", "Stepper", "TransitionTable"]


class _NullAction(Action):
    """An action that does nothing and succeeds: side effects off."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return {}


#: Every action name of the catalog, bound to a null action.
NULL_REGISTRY: Mapping[str, Action] = {name: _NullAction(name) for name in ACTIONS}

# Null actions never touch the drivers, so there are none to give them.
_NO_DRIVERS = cast(Drivers, None)


def _null_context(state: str, trigger: str) -> ActionContext:
    return ActionContext("", trigger, state, _NO_DRIVERS, {})


class Stepper(Protocol):
    """What replay asks of a machine."""

    @property
    def definition(self) -> MachineDefinition: ...

    def step(self, state: str, trigger: str) -> str | None:
        """The state ``trigger`` leads to from ``state``; None if it is not allowed."""


class TransitionTable:
    """(state, trigger) → state after, read off the machine once."""

    __slots__ = ("definition", "digest", "initial", "moves", "terminal")

    def __init__(self, definition: MachineDefinition, moves: Mapping[tuple[str, str], str]) -> None:
        self.definition = definition
        self.digest = definition.digest
        self.initial = definition.initial
        self.terminal = frozenset(definition.terminal_states())
        self.moves = dict(moves)

    @classmethod
    def compile(cls, definition: MachineDefinition) -> TransitionTable:
        lifecycle = Lifecycle(definition, NULL_REGISTRY)
        moves: dict[tuple[str, str], str] = {}
        for state in definition.states:
            for trigger in definition.triggers():
                if lifecycle.may(state, trigger):
                    dest, _ = lifecycle.fire(state, trigger, _null_context(state, trigger))
                    moves[(state, trigger)] = dest
        return cls(definition, moves)

    def step(self, state: str, trigger: str) -> str | None:
        return self.moves.get((state, trigger))


class LifecycleStepper:
    """Every step fired through ``transitions`` with null actions."""

    __slots__ = ("definition", "lifecycle")

    def __init__(self, definition: MachineDefinition) -> None:
        self.definition = definition
        self.lifecycle = Lifecycle(definition, NULL_REGISTRY)

    def step(self, state: str, trigger: str) -> str | None:
        if not self.lifecycle.may(state, trigger):
            return None
        dest, _ = self.lifecycle.fire(state, trigger, _null_context(state, trigger))
        return dest
