"""Requests refused before the machine was asked, and queries that changed
nothing, are not held against the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.actions.fakes import FakeWorld
from engine.actions.registry import REGISTRY
from engine.cli import main
from engine.errors import RunlogError
from engine.eventlog.record import NewEvent
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.status import Actor

ACTOR = Actor(0, 1, "socket")


def _log(db: Path, marked: bool) -> None:
    world = FakeWorld()
    with SQLiteStore(str(db)) as store:
        service = Service(store, Lifecycle(load(default_path()), REGISTRY), world.drivers)
        service.request("c", "create", ACTOR)
        service.request("c", "start", ACTOR)
        service.record_query("c", "state", ACTOR, {})  # asked, nothing changed
        error = RunlogError("permission denied: uid 65534 is neither root nor the owner")
        if marked:
            service.refuse("c", "pause", Actor(65534, 2, "socket"), error, {}, "permission")
        else:
            # The same event without the marker: as if the machine refused it.
            digest = service.definition.digest
            payload = {"error": str(error), "request": {}}
            new = NewEvent("c", "pause", "running", None, "rejected", ACTOR, digest, payload)
            store.append(new)


@pytest.mark.parametrize(("marked", "code"), [(True, 0), (False, 1)])
def test_replay_skips_refused_requests_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], marked: bool, code: int
) -> None:
    db = tmp_path / "events.db"
    _log(db, marked)
    assert main(["--db", str(db), "replay", "--all"]) == code
    out = capsys.readouterr().out
    if not marked:
        assert "accepts" in out or "now accepts" in out
