"""Refresh, guard, act, record: the lifecycle through the service, in the fake world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import (
    ContainerExists,
    ContainerNotFound,
    LifecycleError,
    TransitionFailed,
    TransitionRejected,
)
from engine.eventlog.memory import MemoryStore
from engine.machine.definition import default_path, load, parse
from engine.machine.runtime import Lifecycle
from engine.oci.names import HOOK_POINTS
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(1000, 4321, "cli")


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def service(world: FakeWorld) -> Iterator[Service]:
    with MemoryStore() as store:
        yield Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)


def run(service: Service, cid: str, *triggers: str) -> None:
    for trigger in triggers:
        service.request(cid, trigger, ACTOR)


def test_whole_lifecycle_is_recorded(service: Service, world: FakeWorld) -> None:
    run(service, "c", "create", "start", "pause", "resume")
    service.request("c", "kill", ACTOR, {"signal": 9})
    assert service.state("c") == "running"  # kill changes no state by itself
    service.request("c", "delete", ACTOR)
    history = service.store.history("c")
    assert [(e.trigger, e.source, e.dest, e.outcome) for e in history] == [
        ("create", None, "created", "ok"),
        ("start", "created", "running", "ok"),
        ("pause", "running", "paused", "ok"),
        ("resume", "paused", "running", "ok"),
        ("kill", "running", "running", "ok"),
        ("exit", "running", "stopped", "ok"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    assert [e.seq for e in history] == list(range(1, 8))
    assert {e.machine_digest for e in history} == {service.definition.digest}
    exit_event = history[5]
    assert exit_event.actor.transport == "external"
    assert exit_event.payload["actions"][0]["result"] == {"signal": 9}
    assert service.state("c") is None
    assert world.cgroups("c").exists is False


def test_each_action_result_is_in_the_payload(service: Service, world: FakeWorld) -> None:
    event = service.request("c", "create", ACTOR)
    labels = [a["action"] for a in event.payload["actions"]]
    assert labels == [
        "cgroup.create",
        "process.spawn_init",
        "hook(prestart, abort)",
        "hook(createRuntime, abort)",
        "hook(createContainer, abort)",
    ]
    assert event.payload["actions"][1]["result"] == {"pid": world.process("c").pid}


@pytest.mark.parametrize(
    ("setup", "trigger", "error", "message"),
    [
        (["create", "start"], "start", TransitionRejected, "cannot start an already running"),
        (["create", "start", "pause"], "pause", TransitionRejected, "container not running"),
        (["create"], "resume", TransitionRejected, "container not paused"),
        (["create", "start"], "delete", TransitionRejected, "that is not stopped: running"),
        (["create"], "create", ContainerExists, "container with id exists: c"),
        ([], "start", ContainerNotFound, "container does not exist"),
        ([], "delete", ContainerNotFound, "container does not exist"),
    ],
)
def test_rejections_use_runc_wording_and_change_nothing(
    service: Service,
    setup: list[str],
    trigger: str,
    error: type[LifecycleError],
    message: str,
) -> None:
    run(service, "c", *setup)
    before = service.state("c")
    with pytest.raises(error, match=message):
        service.request("c", trigger, ACTOR, {"why": "test"})
    assert service.state("c") == before
    last = service.store.history("c")[-1]
    assert (last.trigger, last.outcome, last.source, last.dest) == (
        trigger,
        "rejected",
        before,
        None,
    )
    assert message in last.payload["error"]
    assert last.payload["request"] == {"why": "test"}
    assert last.actor == ACTOR


def test_start_after_stop_and_kill_after_stop(service: Service, world: FakeWorld) -> None:
    run(service, "c", "create", "start")
    world.process("c").exit(0)
    with pytest.raises(TransitionRejected, match="cannot start a container that has stopped"):
        service.request("c", "start", ACTOR)
    with pytest.raises(TransitionRejected, match="container not running"):
        service.request("c", "kill", ACTOR, {"signal": 15})
    assert [e.trigger for e in service.store.history("c")][-3:] == ["exit", "start", "kill"]


def test_failed_action_undoes_the_done_ones(service: Service, world: FakeWorld) -> None:
    world.hooks["createRuntime"] = [FakeHook("/bin/ok"), FakeHook("/bin/bad", 7, "no quota\n")]
    with pytest.raises(TransitionFailed) as info:
        service.request("c", "create", ACTOR)
    assert info.value.action == "hook(createRuntime, abort)"
    assert "exited with status 7: no quota" in str(info.value)
    assert info.value.undone == ["process.spawn_init", "cgroup.create"]
    # Undone in reverse order, after the failing hook ran.
    assert world.calls[-3:] == [
        ("c", "hook:createRuntime:/bin/bad"),
        ("c", "process.kill_init"),
        ("c", "cgroup.destroy"),
    ]
    (event,) = service.store.history("c")
    assert event.outcome == "failed" and event.dest is None
    assert event.payload["undone"] == ["process.spawn_init", "cgroup.create"]
    assert [r["exit_code"] for r in event.payload["details"]["runs"]] == [0, 7]
    assert service.state("c") is None
    # As if never attempted: the id is free.
    world.hooks["createRuntime"] = []
    assert service.request("c", "create", ACTOR).dest == "created"


def test_undo_that_fails_is_reported(service: Service, world: FakeWorld) -> None:
    world.fail("c", "process.spawn_init")
    world.fail("c", "cgroup.destroy")
    with pytest.raises(TransitionFailed):
        service.request("c", "create", ACTOR)
    payload = service.store.history("c")[0].payload
    assert payload["undone"] == []
    assert payload["not_undone"] == ["cgroup.create"]
    assert payload["undo_errors"] == ["cgroup.create: cgroup.destroy failed (injected fault)"]


def test_failed_freeze_leaves_it_running(service: Service, world: FakeWorld) -> None:
    run(service, "c", "create", "start")
    world.fail("c", "cgroup.freeze")
    with pytest.raises(TransitionFailed, match=r"cgroup\.freeze"):
        service.request("c", "pause", ACTOR)
    assert service.state("c") == "running"


def test_poststart_failure_stops_the_container(service: Service, world: FakeWorld) -> None:
    world.hooks["poststart"] = [FakeHook("/bin/notify", 1, "unreachable")]
    run(service, "c", "create")
    with pytest.raises(TransitionFailed) as info:
        service.request("c", "start", ACTOR)
    assert info.value.undone == ["process.release"]
    assert world.process("c").exit_status() == {"signal": 9}
    # The next request notices the exit the undo caused.
    assert service.request("c", "delete", ACTOR).source == "stopped"


def test_poststop_failure_only_warns(service: Service, world: FakeWorld) -> None:
    world.hooks["poststop"] = [FakeHook("/bin/cleanup", 2, "busy")]
    run(service, "c", "create", "start")
    world.process("c").exit(0)
    event = service.request("c", "delete", ACTOR)
    assert event.dest == "deleted"
    hook = event.payload["actions"][1]["result"]
    assert "exited with status 2: busy" in hook["warning"]


def test_poststop_hooks_after_a_failing_one_still_run(service: Service, world: FakeWorld) -> None:
    world.hooks["poststop"] = [
        FakeHook("/bin/first", 2, "busy"),
        FakeHook("/bin/second", 3, "gone"),
        FakeHook("/bin/third"),
    ]
    run(service, "c", "create", "start")
    world.process("c").exit(0)
    event = service.request("c", "delete", ACTOR)
    assert event.dest == "deleted"
    assert [what for cid, what in world.calls if cid == "c"][-4:] == [
        "hook:poststop:/bin/first",
        "hook:poststop:/bin/second",
        "hook:poststop:/bin/third",
        "state.remove",
    ]
    hook = event.payload["actions"][1]["result"]
    assert [r["exit_code"] for r in hook["runs"]] == [2, 3, 0]
    assert hook["warning"] == (
        "poststop hook /bin/first exited with status 2: busy; "
        "poststop hook /bin/second exited with status 3: gone"
    )


def test_refresh_records_the_exit_code(service: Service, world: FakeWorld) -> None:
    run(service, "c", "create", "start")
    world.process("c").exit(3)
    assert service.request("c", "delete", ACTOR).trigger == "delete"
    exit_event = service.store.history("c")[-2]
    assert exit_event.trigger == "exit"
    assert exit_event.payload["actions"][0]["result"] == {"exit_code": 3}


def test_signal_to_a_frozen_container_waits_for_the_thaw(
    service: Service, world: FakeWorld
) -> None:
    run(service, "c", "create", "start", "pause")
    service.request("c", "kill", ACTOR, {"signal": 15})
    assert service.state("c") == "paused"
    service.request("c", "resume", ACTOR)
    with pytest.raises(TransitionRejected, match="container not running"):
        service.request("c", "pause", ACTOR)
    assert [e.trigger for e in service.store.history("c")][-2:] == ["exit", "pause"]


def test_hooks_get_the_spec_status_on_stdin(service: Service, world: FakeWorld) -> None:
    for point in HOOK_POINTS:
        world.hooks[point] = [FakeHook(f"/bin/{point}")]
    run(service, "c", "create", "start")
    world.process("c").exit(0)
    run(service, "c", "delete")
    seen = world.drivers("c").hooks.seen  # type: ignore[attr-defined]
    # The create operation's hooks run once the environment is created.
    assert [(p, s["status"]) for p, s in seen] == [
        ("prestart", "created"),
        ("createRuntime", "created"),
        ("createContainer", "created"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ]
    assert {s["id"] for _, s in seen} == {"c"}


def test_id_can_be_reused_after_delete(service: Service, world: FakeWorld) -> None:
    run(service, "c", "create", "start", "kill")
    run(service, "c", "delete", "create")
    history = service.store.history("c")
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert (history[-1].trigger, history[-1].source, history[-1].dest) == (
        "create",
        None,
        "created",
    )


def test_a_site_machine_changes_behaviour(world: FakeWorld) -> None:
    # Without pause in the machine, pause is rejected even when running.
    text = (
        Path(default_path())
        .read_text()
        .replace("- {trigger: pause,", "# ")
        .replace("- {trigger: resume,", "# ")
    )
    text = text.replace(
        "states: [creating, created, running, paused,", "states: [creating, created, running,"
    )
    text = text.replace("source: [created, running, paused]", "source: [created, running]")
    text = text.replace("running, paused, stopped]", "running, stopped]")
    text = text.replace("source: [running, paused]", "source: [running]")
    definition = parse(text.encode(), "site.yaml")
    with MemoryStore() as store:
        service = Service(store, Lifecycle(definition, REGISTRY), world.drivers)
        run(service, "c", "create", "start")
        with pytest.raises(TransitionRejected):
            service.request("c", "pause", ACTOR)
        assert store.history("c")[-1].machine_digest == definition.digest


def test_the_machine_text_is_archived_by_digest(service: Service) -> None:
    definition = service.definition
    assert definition.text == Path(default_path()).read_text()
    assert service.store.machine_text(definition.digest) == definition.text
