"""The machine as the one authority, in the fake world: the vocabulary it
must name, refusals in its words, conflicts refused, projections from events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import ConcurrentChange, MachineError, TransitionRejected
from engine.eventlog.memory import MemoryStore
from engine.eventlog.record import Event, NewEvent
from engine.machine import vocabulary
from engine.machine.definition import MachineDefinition, default_path, load, parse
from engine.machine.runtime import Lifecycle
from engine.replay.fold import replay, rows_of
from engine.replay.table import TransitionTable
from engine.service import Service
from engine.status import Actor, Outcome

ACTOR = Actor(0, 1, "cli")
PACKAGED = Path(default_path()).read_text()


def machine(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def service_for(definition: MachineDefinition, world: FakeWorld, store: MemoryStore) -> Service:
    return Service(store, Lifecycle(definition, REGISTRY), world.drivers)


def replays_clean(store: MemoryStore, definition: MachineDefinition, cid: str) -> None:
    table = TransitionTable.compile(definition)
    result = replay(rows_of(store.history(cid)), lambda _digest: table)
    assert result.agrees, [d.message() for h in result.divergent for d in h.divergences]


# -- the vocabulary --------------------------------------------------------------


def test_the_packaged_machine_has_the_vocabulary() -> None:
    definition = load(default_path())
    assert set(vocabulary.TRIGGERS) <= set(definition.triggers())
    assert set(vocabulary.STATES) <= set(definition.states)


def test_a_machine_without_a_trigger_the_code_fires_is_refused_with_file_and_line(
    tmp_path: Path,
) -> None:
    text = PACKAGED.replace(
        "  - {trigger: kill, source: [created, running, paused], dest: null, "
        "actions: [process.signal]}\n",
        "",
    )
    assert text != PACKAGED
    path = machine(tmp_path, text)
    parse(text.encode(), str(path))  # a well-formed file: replay may read it
    with pytest.raises(MachineError) as info:
        load(path)
    line = text.splitlines().index("transitions:") + 1
    assert str(info.value).startswith(f"{path}:{line}: transitions: ")
    assert "runlog needs trigger 'kill'" in str(info.value)
    assert "engine/wire.py" in str(info.value)
    with pytest.raises(MachineError):  # nor does the cache keep it
        load(path, cache=str(tmp_path / "cache"))


def test_a_machine_without_a_state_the_code_names_is_refused(tmp_path: Path) -> None:
    text = (
        PACKAGED.replace("  - {trigger: pause,", "  # ")
        .replace("  - {trigger: resume,", "  # ")
        .replace(
            "states: [creating, created, running, paused,", "states: [creating, created, running,"
        )
        .replace(", paused]", "]")
        .replace("[running, paused]", "[running]")
        .replace("paused, stopped]", "stopped]")
    )
    with pytest.raises(MachineError, match=r"site.yaml:\d+: states: runlog needs state 'paused'"):
        load(machine(tmp_path, text))


def test_every_trigger_op_of_a_request_is_in_the_vocabulary() -> None:
    from engine.wire import OPS

    # The ops the monitor answers itself are not the machine's.
    answered = {"state", "wait", "console_size", "reopen_log"}
    assert set(OPS) - answered <= set(vocabulary.TRIGGERS) | set(vocabulary.OPTIONAL)


# -- refusals in the machine's words -------------------------------------------


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def _refusal(definition: MachineDefinition, world: FakeWorld, *steps: str) -> str:
    with MemoryStore() as store:
        service = service_for(definition, world, store)
        for trigger in steps[:-1]:
            service.request("c", trigger, ACTOR)
        with pytest.raises(TransitionRejected) as info:
            service.request("c", steps[-1], ACTOR)
        recorded = store.history("c")[-1]
        assert recorded.outcome == Outcome.REJECTED
        assert recorded.payload["error"] == str(info.value)
        replays_clean(store, definition, "c")
        return str(info.value)


def test_runc_s_words_where_runc_has_them(world: FakeWorld) -> None:
    definition = load(default_path())
    assert _refusal(definition, world, "create", "start", "start") == (
        "start c: cannot start an already running container (state: running)"
    )
    assert _refusal(definition, world, "create", "start", "delete") == (
        "delete c: cannot delete container c that is not stopped: running (state: running)"
    )
    assert _refusal(definition, world, "create", "resume") == (
        "resume c: container not paused (state: created)"
    )


def test_a_custom_machine_never_contradicts_itself(world: FakeWorld) -> None:
    # pause only from created, kill only from created: runc's "container not
    # running" would be false of a running container.
    text = PACKAGED.replace(
        "{trigger: pause, source: running,", "{trigger: pause, source: created,"
    ).replace(
        "{trigger: kill, source: [created, running, paused],",
        "{trigger: kill, source: [created],",
    )
    definition = parse(text.encode(), "site.yaml")
    paused = _refusal(definition, world, "create", "start", "pause")
    assert paused == "pause c: the machine allows pause only from created (state: running)"
    killed = _refusal(definition, world, "create", "start", "kill")
    assert "not running" not in killed
    assert killed == "kill c: the machine allows kill only from created (state: running)"


# -- conflicts ---------------------------------------------------------------------


class _RacedStore(MemoryStore):
    """Another writer records the init's exit (or, ``changes=False``, a
    refusal) just before ``trigger`` is appended."""

    def __init__(self, definition: MachineDefinition, trigger: str, changes: bool = True) -> None:
        super().__init__()
        self.digest = definition.digest
        self.trigger = trigger
        self.changes = changes

    def append(
        self, event: NewEvent, expected_seq: int | None = None, *, durable: bool = True
    ) -> Event:
        if event.trigger == self.trigger and expected_seq is not None:
            self.trigger = ""
            other = Actor(None, None, "external")
            head = self.container(event.container_id)
            assert head is not None
            if self.changes:
                raced = NewEvent(
                    event.container_id,
                    "exit",
                    head.state,
                    "stopped",
                    Outcome.OK,
                    other,
                    self.digest,
                    {"actions": []},
                )
            else:
                request = {"error": "no", "request": {}, "refused": "malformed"}
                raced = NewEvent(
                    event.container_id,
                    "request",
                    head.state,
                    None,
                    Outcome.REJECTED,
                    other,
                    self.digest,
                    request,
                )
            super().append(raced)
        return super().append(event, expected_seq, durable=durable)


def test_a_conflict_is_a_refusal_in_the_state_the_container_is_in(world: FakeWorld) -> None:
    definition = load(default_path())
    with _RacedStore(definition, "pause") as store:
        service = service_for(definition, world, store)
        service.request("c", "create", ACTOR)
        service.request("c", "start", ACTOR)
        with pytest.raises(ConcurrentChange, match="pause c: the container changed"):
            service.request("c", "pause", ACTOR)
        history = store.history("c")
        assert [(e.trigger, e.source, e.dest, e.outcome) for e in history] == [
            ("create", None, "created", "ok"),
            ("start", "created", "running", "ok"),
            ("exit", "running", "stopped", "ok"),
            ("pause", "stopped", None, "rejected"),
        ]
        assert history[-1].payload["refused"] == "conflict"
        assert history[-1].payload["raced_with_seq"] == 3
        assert service.state("c") == "stopped"
        replays_clean(store, definition, "c")


def test_a_refusal_meanwhile_changes_no_state_and_no_decision(world: FakeWorld) -> None:
    definition = load(default_path())
    with _RacedStore(definition, "pause", changes=False) as store:
        service = service_for(definition, world, store)
        for trigger in ("create", "start", "pause"):
            service.request("c", trigger, ACTOR)
        history = store.history("c")
        assert [(e.trigger, e.source, e.dest, e.outcome) for e in history][2:] == [
            ("request", "running", None, "rejected"),
            ("pause", "running", "paused", "ok"),
        ]
        assert "raced_with_seq" not in history[-1].payload
        replays_clean(store, definition, "c")


# -- projections ---------------------------------------------------------------------


def test_projections_come_from_the_events_that_change_the_state(world: FakeWorld) -> None:
    definition = load(default_path())
    seen: list[tuple[str, str | None]] = []

    def project(event: Event) -> None:
        seen.append((event.trigger, event.dest))

    with MemoryStore() as store:
        service = Service(store, Lifecycle(definition, REGISTRY), world.drivers, project)
        for trigger in ("create", "start", "pause", "resume"):
            service.request("c", trigger, ACTOR)
        service.record_query("c", "state", ACTOR, {})
        with pytest.raises(TransitionRejected):
            service.request("c", "resume", ACTOR)
        service.request("c", "kill", ACTOR, {"signal": 9})
        service.request("c", "delete", ACTOR)  # refresh records the exit first
    assert seen == [
        ("create", "created"),
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("exit", "stopped"),
    ]


def test_refresh_records_an_exit_the_world_shows(world: FakeWorld) -> None:
    definition = load(default_path())
    seen: list[Any] = []
    with MemoryStore() as store:
        service = Service(store, Lifecycle(definition, REGISTRY), world.drivers, seen.append)
        service.request("c", "create", ACTOR)
        service.request("c", "start", ACTOR)
        world.process("c").exit(0)
        assert service.refresh("c", ACTOR) == "stopped"
        assert service.refresh("nobody", ACTOR) is None
        assert [e.trigger for e in seen] == ["create", "start", "exit"]
        replays_clean(store, definition, "c")


def test_machine_check_names_the_missing_trigger(tmp_path: Path) -> None:
    import subprocess
    import sys

    text = PACKAGED.replace("{trigger: resume,", "{trigger: unfreeze,")
    path = machine(tmp_path, text)
    out = subprocess.run(
        [sys.executable, "-m", "engine", "machine", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("transitions:"))
    assert out.returncode == 1
    assert out.stderr.startswith(f"{path}:{line}: transitions: runlog needs trigger 'resume'")
    assert "Traceback" not in out.stderr
