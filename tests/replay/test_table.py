"""The compiled table answers as the transitions machine does, for every state and trigger."""

from __future__ import annotations

import pytest

from engine.actions.catalog import ACTIONS
from engine.machine.definition import MachineDefinition, default_path, load, parse
from engine.replay.table import NULL_REGISTRY, LifecycleStepper, TransitionTable

# Internal transitions, several sources, a trigger with different
# destinations by source, and a state no transition leaves but `deleted`.
ODD = b"""\
version: 1
states: [creating, created, running, paused, stopped, deleted]
initial: creating
transitions:
  - {trigger: create, source: creating, dest: created, actions: [cgroup.create]}
  - {trigger: start, source: created, dest: running}
  - {trigger: pause, source: running, dest: paused}
  - {trigger: pause, source: paused, dest: null}
  - {trigger: exit, source: [created, running], dest: stopped}
  - {trigger: exit, source: paused, dest: deleted}
  - {trigger: delete, source: [stopped, created], dest: deleted}
"""


@pytest.fixture(params=["default", "odd"])
def definition(request: pytest.FixtureRequest) -> MachineDefinition:
    if request.param == "default":
        return load(default_path())
    return parse(ODD, "odd.yaml")


def expected(definition: MachineDefinition, state: str, trigger: str) -> str | None:
    """What the file says, read without the transitions library."""
    tdef = definition.find(trigger, state)
    if tdef is None:
        return None
    return tdef.dest if tdef.dest is not None else state


def test_table_equals_the_machine_for_every_pair(definition: MachineDefinition) -> None:
    table = TransitionTable.compile(definition)
    slow = LifecycleStepper(definition)
    triggers = (*definition.triggers(), "frobnicate")
    for state in definition.states:
        for trigger in triggers:
            want = expected(definition, state, trigger)
            assert table.step(state, trigger) == want, (state, trigger)
            assert slow.step(state, trigger) == want, (state, trigger)


def test_table_facts(definition: MachineDefinition) -> None:
    table = TransitionTable.compile(definition)
    assert table.digest == definition.digest
    assert table.initial == "creating"
    assert table.terminal == {"deleted"}
    pairs = sum(len(t.sources) for t in definition.transitions)
    assert len(table.moves) == pairs


def test_odd_machine_specifics() -> None:
    table = TransitionTable.compile(parse(ODD, "odd.yaml"))
    assert table.step("paused", "pause") == "paused"  # internal
    assert table.step("paused", "exit") == "deleted"
    assert table.step("running", "exit") == "stopped"
    assert table.step("created", "delete") == "deleted"
    assert table.step("stopped", "start") is None


def test_null_actions_cover_the_catalog_and_do_nothing() -> None:
    assert set(NULL_REGISTRY) == set(ACTIONS)
    for name, action in NULL_REGISTRY.items():
        assert action.name == name
        assert action.run(None, {}) == {}  # type: ignore[arg-type]
