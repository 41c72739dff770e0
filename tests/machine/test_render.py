"""The table and Mermaid renderings of a machine definition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.machine.definition import MachineDefinition, load, parse
from engine.machine.render import INTERNAL, mermaid, table

REPO_MACHINE = Path(__file__).resolve().parents[2] / "statemachine.yaml"

SMALL = """\
version: 1
states: [creating, created, running, stopped, deleted]
initial: creating
transitions:
  - {trigger: create, source: creating, dest: created, actions: [cgroup.create]}
  - {trigger: start, source: created, dest: running, actions: [{hook: {point: poststart}}]}
  - {trigger: kill, source: [created, running], dest: null, actions: [process.signal]}
  - {trigger: exit, source: [created, running], dest: stopped}
  - {trigger: delete, source: stopped, dest: deleted, actions: [cgroup.destroy, state.remove]}
"""

EDGE = re.compile(r"^    (\S+) --> (\S+)(?: : (.+))?$")


@pytest.fixture(params=["small", "repository"])
def defn(request: pytest.FixtureRequest) -> MachineDefinition:
    if request.param == "small":
        return parse(SMALL.encode(), "small.yaml")
    return load(REPO_MACHINE)


def cells(line: str) -> list[str]:
    # Columns are two spaces apart; inside a cell items are ", "-separated.
    return re.split(r" {2,}", line)


# -- table -------------------------------------------------------------------


def test_table_has_a_header_and_a_row_per_transition(defn: MachineDefinition) -> None:
    lines = table(defn).splitlines()
    assert cells(lines[0]) == ["TRIGGER", "SOURCE", "DEST", "ACTIONS"]
    rows = [cells(line) for line in lines[1:]]
    assert len(rows) == len(defn.transitions)
    for row, t in zip(rows, defn.transitions, strict=True):
        trigger, sources, dest, actions = row
        assert trigger == t.trigger
        assert sources.split(", ") == list(t.sources)
        assert dest == (INTERNAL if t.dest is None else t.dest)
        assert actions == (", ".join(a.label() for a in t.actions) or "-")


def test_table_columns_line_up(defn: MachineDefinition) -> None:
    lines = table(defn).splitlines()
    header = lines[0]
    starts = [header.index(name) for name in ("SOURCE", "DEST", "ACTIONS")]
    for line in lines[1:]:
        for start in starts:
            # Each column begins right after a gap, at the header's offset.
            assert line[start - 2 : start] == "  ", line
            assert line[start] != " ", line
    assert all(line == line.rstrip() for line in lines)


def test_table_of_the_small_machine() -> None:
    expected = [
        "TRIGGER  SOURCE            DEST     ACTIONS",
        "create   creating          created  cgroup.create",
        "start    created           running  hook(poststart, abort)",
        "kill     created, running  (same)   process.signal",
        "exit     created, running  stopped  -",
        "delete   stopped           deleted  cgroup.destroy, state.remove",
    ]
    assert table(parse(SMALL.encode(), "small.yaml")).splitlines() == expected


# -- mermaid -----------------------------------------------------------------


def edges(text: str) -> list[tuple[str, str, list[str]]]:
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    out = []
    for line in lines[1:]:
        match = EDGE.match(line)
        assert match is not None, line
        source, dest, label = match.groups()
        out.append((source, dest, label.split(", ") if label else []))
    return out


def test_mermaid_starts_at_initial_and_ends_at_terminals(defn: MachineDefinition) -> None:
    parsed = edges(mermaid(defn))
    assert [d for s, d, _ in parsed if s == "[*]"] == [defn.initial]
    assert [s for s, d, _ in parsed if d == "[*]"] == list(defn.terminal_states())
    assert all(label == [] for s, d, label in parsed if "[*]" in (s, d))


def test_mermaid_draws_every_transition_once(defn: MachineDefinition) -> None:
    parsed = [(s, d, label) for s, d, label in edges(mermaid(defn)) if "[*]" not in (s, d)]
    pairs = [(s, d) for s, d, _ in parsed]
    assert len(pairs) == len(set(pairs)), "one edge per (source, dest)"
    drawn = {(s, d, trigger) for s, d, label in parsed for trigger in label}
    expected = {
        (source, source if t.dest is None else t.dest, t.trigger)
        for t in defn.transitions
        for source in t.sources
    }
    assert drawn == expected
    assert sum(len(label) for _, _, label in parsed) == len(expected)


def test_mermaid_draws_internal_transitions_as_self_loops() -> None:
    parsed = edges(mermaid(parse(SMALL.encode(), "small.yaml")))
    loops = {(s, tuple(label)) for s, d, label in parsed if s == d}
    assert loops == {("created", ("kill",)), ("running", ("kill",))}


def test_mermaid_merges_triggers_between_the_same_states() -> None:
    text = SMALL + "  - {trigger: stop, source: running, dest: stopped}\n"
    parsed = edges(mermaid(parse(text.encode(), "merged.yaml")))
    labels = [label for s, d, label in parsed if (s, d) == ("running", "stopped")]
    assert labels == [["exit", "stop"]]
