"""The transitions-backed Lifecycle agrees with the definition it was built from."""

from __future__ import annotations

import pytest

from engine.actions.base import ActionContext
from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle

DEFINITION = load(default_path())


@pytest.fixture(scope="module")
def lifecycle() -> Lifecycle:
    return Lifecycle(DEFINITION, REGISTRY)


@pytest.mark.parametrize("state", DEFINITION.states)
def test_may_matches_the_definition(lifecycle: Lifecycle, state: str) -> None:
    for trigger in (*DEFINITION.triggers(), "to_running", "bogus"):
        assert lifecycle.may(state, trigger) == (trigger in DEFINITION.allowed(state))


def test_no_auto_transitions(lifecycle: Lifecycle) -> None:
    assert not lifecycle.may("created", "to_running")
    ctx = ActionContext("c", "to_running", "created", FakeWorld().drivers("c"), {})
    with pytest.raises(ValueError, match="not allowed"):
        lifecycle.fire("created", "to_running", ctx)


def test_fire_moves_and_internal_transitions_stay(lifecycle: Lifecycle) -> None:
    world = FakeWorld()
    drivers = world.drivers("c")
    create = ActionContext("c", "create", "creating", drivers, {})
    assert lifecycle.fire("creating", "create", create)[0] == "created"
    kill = ActionContext("c", "kill", "created", drivers, {"signal": 10})
    state, records = lifecycle.fire("created", "kill", kill)
    assert state == "created"
    assert records[0]["result"]["signal"] == 10


def test_disallowed_trigger_is_refused(lifecycle: Lifecycle) -> None:
    ctx = ActionContext("c", "start", "stopped", FakeWorld().drivers("c"), {})
    with pytest.raises(ValueError, match="start is not allowed in state stopped"):
        lifecycle.fire("stopped", "start", ctx)
