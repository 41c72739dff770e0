"""run_actions: order, records, undo in reverse, and what could not be undone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from engine.actions.base import Action, ActionContext
from engine.actions.fakes import FakeWorld
from engine.errors import ActionError
from engine.lifecycle import ActionsFailed, run_actions

LOG: list[str] = []


class Step:
    def __init__(self, name: str, **params: object) -> None:
        self.name = name
        self.params: Mapping[str, object] = params

    def label(self) -> str:
        return self.name


class Recorder(Action):
    reversible = True

    def __init__(self, name: str, fail: BaseException | None = None, undo_fails: bool = False):
        self.name = name
        self.fail = fail
        self.undo_fails = undo_fails

    def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        LOG.append(f"run {self.name}")
        if self.fail is not None:
            raise self.fail
        return {"n": params.get("n")}

    def undo(
        self, ctx: ActionContext, params: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        LOG.append(f"undo {self.name}")
        if self.undo_fails:
            raise ActionError("cannot")


class OneWay(Recorder):
    reversible = False


@pytest.fixture
def ctx() -> ActionContext:
    LOG.clear()
    return ActionContext("c", "t", "s", FakeWorld().drivers("c"), {})


def test_records_in_order(ctx: ActionContext) -> None:
    registry = {"a": Recorder("a"), "b": Recorder("b")}
    records = run_actions([Step("a", n=1), Step("b", n=2)], ctx, registry)
    assert [(r["action"], r["result"]) for r in records] == [("a", {"n": 1}), ("b", {"n": 2})]
    assert all(r["ms"] >= 0 for r in records)
    assert LOG == ["run a", "run b"]


def test_failure_undoes_in_reverse_and_names_the_rest(ctx: ActionContext) -> None:
    registry = {
        "a": Recorder("a"),
        "b": OneWay("b"),
        "c": Recorder("c", undo_fails=True),
        "d": Recorder("d"),
        "x": Recorder("x", fail=ActionError("boom", code=5)),
    }
    steps = [Step(n) for n in "abcdx"]
    with pytest.raises(ActionsFailed) as info:
        run_actions(steps, ctx, registry)
    err = info.value
    assert LOG == ["run a", "run b", "run c", "run d", "run x", "undo d", "undo c", "undo a"]
    assert (err.action, err.cause, err.details) == ("x", "boom", {"code": 5})
    assert err.undone == ["d", "a"]
    assert err.not_undone == ["c", "b"]
    assert err.undo_errors == ["c: cannot"]
    assert [r["action"] for r in err.done] == ["a", "b", "c", "d"]


def test_unexpected_exception_aborts_the_same_way(ctx: ActionContext) -> None:
    registry = {"a": Recorder("a"), "x": Recorder("x", fail=OSError(28, "No space left"))}
    with pytest.raises(ActionsFailed) as info:
        run_actions([Step("a"), Step("x")], ctx, registry)
    assert info.value.cause.startswith("OSError")
    assert info.value.undone == ["a"]
