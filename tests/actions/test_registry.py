"""The catalog (what a machine may name) and the registry (what runs) agree."""

from __future__ import annotations

from engine.actions.base import Action
from engine.actions.catalog import ACTIONS
from engine.actions.registry import REGISTRY


def test_every_catalogued_action_has_an_implementation_and_back() -> None:
    assert set(REGISTRY) == set(ACTIONS)
    for name, action in REGISTRY.items():
        assert action.name == name


def test_reversible_actions_define_an_undo() -> None:
    for action in REGISTRY.values():
        overrides = type(action).undo is not Action.undo
        assert overrides == action.reversible, action.name
