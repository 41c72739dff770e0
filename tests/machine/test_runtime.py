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


def test_each_call_starts_from_the_state_it_is_given(lifecycle: Lifecycle) -> None:
    # The models are reused (engine.machine.runtime): nothing of one call,
    # a failed one included, shows in the next.
    from engine.lifecycle import ActionsFailed

    world = FakeWorld()
    drivers = world.drivers("c")
    lifecycle.fire("creating", "create", ActionContext("c", "create", "creating", drivers, {}))
    world.fail("c", "cgroup.freeze")
    pause = ActionContext("c", "pause", "running", drivers, {})
    with pytest.raises(ActionsFailed):
        lifecycle.fire("running", "pause", pause)
    assert lifecycle.may("running", "pause") and not lifecycle.may("paused", "pause")
    kill = ActionContext("c", "kill", "paused", drivers, {"signal": 15})
    state, records = lifecycle.fire("paused", "kill", kill)
    assert state == "paused"
    assert [r["action"] for r in records] == ["process.signal"]


def test_a_trigger_fired_from_an_action_has_a_model_of_its_own() -> None:
    from collections.abc import Mapping
    from typing import Any

    from engine.actions.base import Action

    inner: list[tuple[str, list[dict[str, Any]]]] = []

    class Nested(Action):
        name = "cgroup.freeze"  # stands in for pause's action

        def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
            kill = ActionContext("c", "kill", "running", ctx.drivers, {"signal": 10})
            inner.append(lifecycle.fire("running", "kill", kill))
            return {"nested": True}

    lifecycle = Lifecycle(DEFINITION, {**REGISTRY, "cgroup.freeze": Nested()})
    drivers = FakeWorld().drivers("c")
    lifecycle.fire("creating", "create", ActionContext("c", "create", "creating", drivers, {}))
    pause = ActionContext("c", "pause", "running", drivers, {})
    state, records = lifecycle.fire("running", "pause", pause)
    assert (state, [r["result"] for r in records]) == ("paused", [{"nested": True}])
    assert [(s, [r["action"] for r in rs]) for s, rs in inner] == [("running", ["process.signal"])]
