"""Loading and validating machine files: the good, the bad, and where errors point."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine.actions.catalog import ACTIONS
from engine.errors import MachineError
from engine.frozen import FrozenInstanceError
from engine.machine.definition import (
    ActionRef,
    MachineDefinition,
    default_path,
    load,
    parse,
    resolve,
)
from engine.status import STATUSES

REPO_MACHINE = Path(__file__).resolve().parents[2] / "statemachine.yaml"

GOOD = """\
# a small machine
version: 1
states: [creating, created, running, stopped, deleted]
initial: creating
transitions:
  - trigger: create
    source: creating
    dest: created
    description: set up
    actions:
      - cgroup.create
      - hook: {point: prestart}
  - {trigger: start, source: created, dest: running}
  - {trigger: kill, source: [created, running], dest: null, actions: [process.signal]}
  - {trigger: exit, source: running, dest: stopped}
  - {trigger: exit, source: created, dest: stopped}
  - trigger: delete
    source: stopped
    dest: deleted
    actions: [state.remove, {hook: {point: poststop, on_failure: warn}}]
"""

# Four lines; a transition appended after it starts on line 5.
HEAD = """\
version: 1
states: [creating, created]
initial: creating
transitions:
"""
CREATE = "  - {trigger: create, source: creating, dest: created}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "machine.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> MachineError:
    path = write(tmp_path, text)
    with pytest.raises(MachineError) as info:
        load(path)
    assert info.value.path == str(path)
    return info.value


def with_action(action: str) -> str:
    """HEAD plus one transition whose only action is ``action``, on line 9."""
    return (
        HEAD
        + "  - trigger: create\n    source: creating\n    dest: created\n"
        + (f"    actions:\n      - {action}\n")
    )


# -- a good file -------------------------------------------------------------


def test_good_file_reads_with_structure_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    defn = parse(path.read_bytes(), str(path))
    assert defn.path == str(path)
    assert defn.version == 1
    assert defn.states == ("creating", "created", "running", "stopped", "deleted")
    assert defn.initial == "creating"
    assert [t.trigger for t in defn.transitions] == [
        "create",
        "start",
        "kill",
        "exit",
        "exit",
        "delete",
    ]
    assert [t.line for t in defn.transitions] == [6, 13, 14, 15, 16, 17]
    create = defn.transitions[0]
    assert create.sources == ("creating",)
    assert create.dest == "created"
    assert create.description == "set up"
    assert [(a.name, a.line) for a in create.actions] == [("cgroup.create", 11), ("hook", 12)]
    kill = defn.transitions[2]
    assert kill.sources == ("created", "running")
    assert kill.dest is None
    assert kill.description is None


def test_default_params_are_filled_in_signature_order() -> None:
    defn = parse(GOOD.encode(), "m.yaml")
    hook = defn.transitions[0].actions[1]
    assert dict(hook.params) == {"point": "prestart", "on_failure": "abort"}
    assert hook.label() == "hook(prestart, abort)"
    poststop = defn.transitions[-1].actions[1]
    assert list(poststop.params) == ["point", "on_failure"]  # not the file's order
    assert poststop.label() == "hook(poststop, warn)"
    plain = defn.transitions[0].actions[0]
    assert dict(plain.params) == {}
    assert plain.label() == "cgroup.create"


def test_action_with_null_or_empty_params_is_plain() -> None:
    text = with_action("cgroup.create:") + "      - cgroup.freeze: {}\n"
    action_a, action_b = parse(text.encode(), "m.yaml").transitions[0].actions
    assert (action_a.name, dict(action_a.params), action_a.line) == ("cgroup.create", {}, 9)
    assert (action_b.name, dict(action_b.params), action_b.line) == ("cgroup.freeze", {}, 10)


def test_queries() -> None:
    defn = parse(GOOD.encode(), "m.yaml")
    assert defn.triggers() == ("create", "start", "kill", "exit", "delete")
    assert defn.allowed("created") == ("start", "kill", "exit")
    assert defn.allowed("running") == ("kill", "exit")
    assert defn.allowed("deleted") == ()
    assert defn.terminal_states() == ("deleted",)
    exit_from_created = defn.find("exit", "created")
    assert exit_from_created is not None
    assert exit_from_created.line == 16
    assert defn.find("exit", "running") is defn.transitions[3]
    assert defn.find("start", "running") is None
    assert defn.find("resume", "created") is None


def test_internal_transition_does_not_make_a_state_terminal() -> None:
    text = HEAD + CREATE + "  - {trigger: kill, source: created, dest: null}\n"
    assert parse(text.encode(), "m.yaml").terminal_states() == ()


def test_definitions_are_frozen_and_hashable() -> None:
    defn = parse(GOOD.encode(), "m.yaml")
    with pytest.raises(FrozenInstanceError):
        defn.initial = "running"  # type: ignore[misc]
    with pytest.raises(TypeError):
        defn.transitions[0].actions[1].params["point"] = "poststop"  # type: ignore[index]
    assert hash(defn) == hash(parse(GOOD.encode(), "m.yaml"))
    assert parse(GOOD.encode(), "m.yaml") == defn
    assert len({*defn.transitions[0].actions}) == 2


def test_digest_is_sha256_of_the_bytes() -> None:
    data = GOOD.encode()
    defn = parse(data, "m.yaml")
    assert defn.digest == hashlib.sha256(data).hexdigest()
    # A comment changes the bytes, hence the digest, not the machine.
    other = parse(data + b"# note\n", "m.yaml")
    assert other.digest != defn.digest
    assert other.transitions == defn.transitions


def test_anchors_and_aliases_are_followed() -> None:
    text = (
        HEAD.replace("[creating, created]", "[creating, created, stopped]")
        + CREATE
        + "  - {trigger: exit, source: &live [created], dest: stopped}\n"
        + "  - {trigger: kill, source: *live, dest: null}\n"
    )
    defn = parse(text.encode(), "m.yaml")
    assert defn.find("kill", "created") is defn.transitions[2]


# -- the shipped machine -----------------------------------------------------


def test_repository_machine_loads() -> None:
    defn = load(REPO_MACHINE)
    assert defn.digest == hashlib.sha256(REPO_MACHINE.read_bytes()).hexdigest()
    assert set(defn.states) <= set(STATUSES)
    assert defn.initial == "creating"
    # The runtime-spec operations (runtime.md "Operations") must all be triggers.
    assert {"create", "start", "kill", "delete"} <= set(defn.triggers())
    assert defn.terminal_states() == ("deleted",)
    for t in defn.transitions:
        assert all(a.name in ACTIONS for a in t.actions)


def test_repository_machine_follows_the_spec_lifecycle() -> None:
    defn = load(REPO_MACHINE)
    steps = [("create", "creating", "created"), ("start", "created", "running")]
    steps += [("exit", "running", "stopped"), ("delete", "stopped", "deleted")]
    for trigger, state, dest in steps:
        found = defn.find(trigger, state)
        assert found is not None, (trigger, state)
        assert found.dest == dest
    kill = defn.find("kill", "running")
    assert kill is not None
    assert kill.dest is None


def test_default_path_in_a_checkout_is_the_repository_file() -> None:
    assert default_path() == str(REPO_MACHINE)


def test_default_path_prefers_the_packaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "engine"
    package.mkdir()
    (tmp_path / "statemachine.yaml").write_text(GOOD)
    monkeypatch.setattr(engine, "__file__", str(package / "__init__.py"))
    assert default_path() == str(tmp_path / "statemachine.yaml")
    (package / "statemachine.yaml").write_text(GOOD)
    assert default_path() == str(package / "statemachine.yaml")


def test_resolve_precedence() -> None:
    env = {"RUNLOG_MACHINE": "/env/machine.yaml"}
    assert resolve("/cli/machine.yaml", env) == "/cli/machine.yaml"
    assert resolve(None, env) == "/env/machine.yaml"
    assert resolve(None, {}) == default_path()
    assert resolve("", env) == "/env/machine.yaml"
    assert resolve(None, {"RUNLOG_MACHINE": ""}) == default_path()


# -- files that do not load --------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(MachineError) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.key) == (str(path), None, None)
    assert "No such file" in info.value.problem


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MachineError) as info:
        load(tmp_path)
    assert info.value.path == str(tmp_path)
    assert info.value.line is None


def test_undecodable_bytes() -> None:
    with pytest.raises(MachineError) as info:
        parse(b"version: 1\nstates: [\xff]\n", "bin.yaml")
    assert info.value.path == "bin.yaml"
    assert info.value.line is None  # the reader gives an offset, not a line
    assert "not valid YAML" in info.value.problem


# (yaml text, line, key, words the problem must contain)
BAD: dict[str, tuple[str, int, str | None, str]] = {
    "syntax": ("version: 1\nstates: [creating]\n  initial: creating\n", 3, None, "YAML"),
    "unclosed-flow": ("version: 1\nstates: [creating,\ninitial: x\n", 4, None, "YAML"),
    "two-documents": ("version: 1\n---\nversion: 1\n", 2, None, "single document"),
    "empty": ("", 1, None, "empty"),
    "top-not-mapping": ("# machine\n- version\n- 1\n", 2, None, "mapping"),
    "top-scalar": ("\n\njust text\n", 3, None, "mapping"),
    "top-unknown-key": (HEAD + CREATE + "colour: blue\n", 6, "colour", "unknown key"),
    "version-wrong": ("version: 2\n" + HEAD[11:] + CREATE, 1, "version", "unsupported"),
    "version-string": ('version: "1"\n' + HEAD[11:] + CREATE, 1, "version", "integer"),
    "version-bool": ("version: true\n" + HEAD[11:] + CREATE, 1, "version", "integer"),
    "version-bad-tag": ("version: !!int one\n" + HEAD[11:] + CREATE, 1, "version", "int"),
    "states-not-list": (
        HEAD.replace("[creating, created]", "creating") + CREATE,
        2,
        "states",
        "list",
    ),
    "state-unknown": (
        HEAD.replace("[creating, created]", "[creating,\n  booting]") + CREATE,
        3,
        "states[1]",
        "unknown state 'booting'",
    ),
    "state-not-string": (
        HEAD.replace("created]", "created, 7]") + CREATE,
        2,
        "states[2]",
        "string",
    ),
    "state-duplicate": (
        HEAD.replace("[creating, created]", "\n  - creating\n  - created\n  - creating") + CREATE,
        5,
        "states[2]",
        "line 3",
    ),
    "initial-undeclared": (
        HEAD.replace("initial: creating", "initial: running"),
        3,
        "initial",
        "not declared",
    ),
    "initial-not-string": (
        HEAD.replace("initial: creating", "initial: [creating]"),
        3,
        "initial",
        "string",
    ),
    "transitions-not-list": (HEAD + "  create: {}\n", 5, "transitions", "list"),
    "transition-not-mapping": (HEAD + "  - create\n", 5, "transitions[0]", "mapping"),
    "transition-unknown-key": (
        HEAD + "  - trigger: create\n    source: creating\n    guard: ready\n    dest: created\n",
        7,
        "transitions[0].guard",
        "unknown key",
    ),
    "transition-missing-dest": (
        HEAD + "  - trigger: create\n    source: creating\n",
        5,
        "transitions[0].dest",
        "missing",
    ),
    "transition-missing-trigger": (
        HEAD + CREATE + "  - {source: created, dest: null}\n",
        6,
        "transitions[1].trigger",
        "missing",
    ),
    "trigger-not-string": (
        HEAD + "  - {trigger: 3, source: creating, dest: created}\n",
        5,
        "transitions[0].trigger",
        "string",
    ),
    "trigger-bool": (
        HEAD + "  - {trigger: on, source: creating, dest: created}\n",
        5,
        "transitions[0].trigger",
        "quote",
    ),
    "source-undeclared": (
        HEAD + "  - trigger: create\n    source: running\n    dest: created\n",
        6,
        "transitions[0].source",
        "'running' is not declared",
    ),
    "source-list-undeclared": (
        HEAD
        + CREATE
        + "  - trigger: kill\n    source:\n      - created\n      - paused\n    dest: null\n",
        9,
        "transitions[1].source[1]",
        "'paused' is not declared",
    ),
    "source-empty-list": (
        HEAD + "  - {trigger: create, source: [], dest: created}\n",
        5,
        "transitions[0].source",
        "empty",
    ),
    "source-twice": (
        HEAD + "  - {trigger: create, source: [creating, creating], dest: created}\n",
        5,
        "transitions[0].source[1]",
        "twice",
    ),
    "source-mapping": (
        HEAD + "  - {trigger: create, source: {a: b}, dest: created}\n",
        5,
        "transitions[0].source",
        "string",
    ),
    "dest-undeclared": (
        HEAD + "  - trigger: create\n    source: creating\n    dest: stopped\n",
        7,
        "transitions[0].dest",
        "'stopped' is not declared",
    ),
    "dest-list": (
        HEAD + "  - {trigger: create, source: creating, dest: [created]}\n",
        5,
        "transitions[0].dest",
        "string",
    ),
    "description-not-string": (
        HEAD + "  - {trigger: create, source: creating, dest: created, description: 3}\n",
        5,
        "transitions[0].description",
        "string",
    ),
    "actions-not-list": (
        HEAD + "  - {trigger: create, source: creating, dest: created, actions: cgroup.create}\n",
        5,
        "transitions[0].actions",
        "list",
    ),
    "unreachable": (
        HEAD.replace("[creating, created]", "[creating, created, stopped]") + CREATE,
        2,
        "states[2]",
        "'stopped' is not reachable",
    ),
    "unreachable-cycle": (
        HEAD.replace("[creating, created]", "[creating, created, running, paused]")
        + CREATE
        + "  - {trigger: pause, source: running, dest: paused}\n"
        + "  - {trigger: resume, source: paused, dest: running}\n",
        2,
        "states[2]",
        "'running' is not reachable",
    ),
    "unreachable-via-internal-only": (
        HEAD + "  - {trigger: kill, source: creating, dest: null}\n",
        2,
        "states[1]",
        "'created' is not reachable",
    ),
    "duplicate-pair": (
        HEAD.replace("[creating, created]", "[creating, created, stopped]")
        + CREATE
        + "  - {trigger: exit, source: created, dest: stopped}\n"
        + "  - {trigger: exit, source: [created], dest: creating}\n",
        7,
        "transitions[2]",
        "lines 6 and 7",
    ),
    "duplicate-key-top": (HEAD + CREATE + "initial: created\n", 6, "initial", "line 3"),
    "duplicate-key-transition": (
        HEAD + "  - trigger: create\n    source: creating\n    dest: created\n    dest: null\n",
        8,
        "transitions[0].dest",
        "duplicate key",
    ),
    "duplicate-key-param": (
        with_action("hook: {point: prestart, point: poststop}"),
        9,
        "transitions[0].actions[0].hook.point",
        "duplicate key",
    ),
    "action-unknown": (
        with_action("cgroup.explode"),
        9,
        "transitions[0].actions[0]",
        "unknown action",
    ),
    "action-unknown-with-params": (
        with_action("cgroup.explode: {x: 1}"),
        9,
        "transitions[0].actions[0]",
        "unknown action",
    ),
    "action-not-string": (with_action("42"), 9, "transitions[0].actions[0]", "string"),
    "action-two-keys": (
        with_action("{cgroup.create: {}, cgroup.freeze: {}}"),
        9,
        "transitions[0].actions[0]",
        "one-key",
    ),
    "action-params-not-mapping": (
        with_action("hook: [prestart]"),
        9,
        "transitions[0].actions[0].hook",
        "mapping",
    ),
    "param-unknown": (
        with_action("hook: {point: prestart, timeout: 5}"),
        9,
        "transitions[0].actions[0].hook.timeout",
        "unknown key",
    ),
    "param-unknown-on-plain-action": (
        with_action("cgroup.create: {limit: 5}"),
        9,
        "transitions[0].actions[0].cgroup.create.limit",
        "unknown key",
    ),
    "param-wrong-type": (
        with_action("hook: {point: 3}"),
        9,
        "transitions[0].actions[0].hook.point",
        "expected a string",
    ),
    "param-bool-for-string": (
        with_action("hook: {point: prestart, on_failure: no}"),
        9,
        "transitions[0].actions[0].hook.on_failure",
        "expected a string",
    ),
    "param-outside-choices": (
        with_action("hook: {point: prestart, on_failure: retry}"),
        9,
        "transitions[0].actions[0].hook.on_failure",
        "'retry' is not one of: abort, warn",
    ),
    "param-required-missing": (
        with_action("hook: {on_failure: warn}"),
        9,
        "transitions[0].actions[0].hook",
        "needs parameter 'point'",
    ),
    "param-required-plain": (
        with_action("hook"),
        9,
        "transitions[0].actions[0]",
        "needs parameter 'point'",
    ),
    "recursive-alias": (
        with_action("hook: &p {point: *p}"),
        9,
        "transitions[0].actions[0].hook.point",
        "recursive",
    ),
}

# Each key missing in turn; the comment pushes the top mapping to line 2.
TOP = "# machine\nversion: 1\nstates: [creating]\ninitial: creating\ntransitions: []\n"


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file(tmp_path: Path, name: str) -> None:
    text, line, key, words = BAD[name]
    err = load_error(tmp_path, text)
    assert (err.line, err.key) == (line, key), err
    assert words in err.problem, err
    assert str(err).startswith(f"{tmp_path / 'machine.yaml'}:{line}:")


@pytest.mark.parametrize("key", ["version", "states", "initial", "transitions"])
def test_missing_top_level_key(tmp_path: Path, key: str) -> None:
    text = "".join(line for line in TOP.splitlines(keepends=True) if not line.startswith(key))
    err = load_error(tmp_path, text)
    assert (err.line, err.key, err.problem) == (2, key, "missing")


def test_minimal_machine_without_transitions_loads() -> None:
    defn = parse(TOP.encode(), "m.yaml")
    assert (defn.states, defn.transitions, defn.terminal_states()) == (
        ("creating",),
        (),
        ("creating",),
    )


@pytest.mark.parametrize(
    "trigger",
    [
        *('""', "start-now", "2start", "class", "stärt", "trigger", "state"),
        *("to_running", "may_start", "is_running", "_hidden", "__init__"),
    ],
)
def test_bad_trigger_name(tmp_path: Path, trigger: str) -> None:
    text = HEAD + f"  - trigger: {trigger}\n    source: creating\n    dest: created\n"
    err = load_error(tmp_path, text)
    assert (err.line, err.key) == (5, "transitions[0].trigger"), err


@pytest.mark.parametrize("trigger", ["start", "tomorrow", "island", "mayday", "states", "run_2"])
def test_good_trigger_name(trigger: str) -> None:
    text = HEAD + f"  - trigger: {trigger}\n    source: creating\n    dest: created\n"
    assert parse(text.encode(), "m.yaml").triggers() == (trigger,)


def test_every_line_deleted_fails_cleanly_or_loads() -> None:
    # A file cut anywhere either loads or points inside itself.
    lines = GOOD.splitlines(keepends=True)
    for i in range(len(lines)):
        text = "".join(lines[:i] + lines[i + 1 :])
        try:
            parse(text.encode(), "cut.yaml")
        except MachineError as err:
            assert err.line is not None
            assert 1 <= err.line <= len(lines)


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_machine_errors(text: str) -> None:
    try:
        parse(text.encode(), "fuzz.yaml")
    except MachineError as err:
        assert err.path == "fuzz.yaml"


@given(st.lists(st.sampled_from(GOOD.splitlines(keepends=True)), max_size=25))
def test_shuffled_lines_raise_only_machine_errors(lines: list[str]) -> None:
    try:
        defn = parse("".join(lines).encode(), "mix.yaml")
    except MachineError as err:
        assert err.path == "mix.yaml"
    else:
        assert isinstance(defn, MachineDefinition)
        assert all(isinstance(a, ActionRef) for t in defn.transitions for a in t.actions)
