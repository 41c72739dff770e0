"""pytest plugin: recorded histories as regression tests for a machine definition.

Every file named ``*.history.jsonl`` (what ``runlog replay --export DIR``
writes) that pytest finds under its test paths becomes one test per history:
the history is replayed and the test fails if the machine rejects a recorded
transition, reaches another state, or accepts a request that was rejected;
the failure names the seq, the event and what the machine would do instead.

Which machine: ``--runlog-machine FILE`` on the command line, or the ini
option ``runlog_machine``; without either, the machine each history was
recorded with (its text travels in the fixture's header). A site that keeps
its own ``statemachine.yaml`` under review sets ``runlog_machine`` to it, so
a change that breaks a recorded lifecycle fails the test suite.

Enable it in a ``conftest.py`` at the root of the tests::

    pytest_plugins = ["engine.replay.pytest_plugin"]

or with ``pytest -p engine.replay.pytest_plugin``. A conftest lower in the
tree (where ``pytest_plugins`` is not allowed) can import the collection
hook instead; the machine options are then those of the command line only
if the plugin is also loaded::

    from engine.replay.pytest_plugin import pytest_collect_file
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.machine.definition import MachineDefinition, default_path, load
from engine.replay.fixtures import SUFFIX, Fixture, read_fixture
from engine.replay.fold import HistoryResult, replay, rows_of
from engine.replay.machines import MachineCatalog

__all__ = [
    "HistoryDiverged",
    "HistoryFile",
    "HistoryItem",
    "pytest_addoption",
    "pytest_collect_file",
]

OPTION = "runlog_machine"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runlog", "runlog recorded histories")
    group.addoption(
        "--runlog-machine",
        dest=OPTION,
        metavar="FILE",
        default=None,
        help="replay *.history.jsonl fixtures through FILE, not their recorded machine",
    )
    parser.addini(OPTION, "machine definition to replay *.history.jsonl fixtures through")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        collector: pytest.Collector = HistoryFile.from_parent(parent, path=file_path)
        return collector
    return None


def _machine_option(config: pytest.Config) -> str | None:
    """``--runlog-machine``, else the ini option, relative to the rootdir."""
    value = config.getoption(OPTION, default=None)
    if value:
        return str(value)
    try:
        ini = config.getini(OPTION)
    except ValueError:  # the plugin's options are not registered: hook imported alone
        return None
    return str(Path(config.rootpath, str(ini))) if ini else None


class HistoryDiverged(Exception):
    """A recorded history the machine does not reproduce."""

    def __init__(self, history: HistoryResult, machine: str, notes: list[str]) -> None:
        self.history = history
        self.machine = machine
        self.notes = notes
        super().__init__(f"{history.container_id}: {len(history.divergences)} divergences")


class HistoryFile(pytest.File):
    """One fixture file; one test for the history it holds."""

    def collect(self) -> list[pytest.Item]:
        fixture = read_fixture(self.path)  # FixtureError names the file and line
        return [HistoryItem.from_parent(self, name=fixture.container_id, fixture=fixture)]


class HistoryItem(pytest.Item):
    def __init__(self, *, fixture: Fixture, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixture = fixture

    def _catalog(self) -> MachineCatalog:
        path = _machine_option(self.config)
        override: MachineDefinition | None = load(path) if path else None
        return MachineCatalog(
            override=override,
            archived=self.fixture.machines,
            current=lambda: load(default_path()),
        )

    def runtest(self) -> None:
        catalog = self._catalog()
        result = replay(rows_of(self.fixture.events), catalog)
        history = result.histories[self.fixture.container_id]
        if history.divergences:
            if catalog.override is not None:
                machine = f"{catalog.override.path} (sha256 {catalog.override.digest[:12]})"
            else:
                machine = "the machine it was recorded with"
            raise HistoryDiverged(history, machine, catalog.notes)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        error = excinfo.value
        if not isinstance(error, HistoryDiverged):
            return str(super().repr_failure(excinfo, style=style))
        h = error.history
        lines = [
            f"history of {h.container_id} ({self.path.name}) diverges "
            f"when replayed through {error.machine}:"
        ]
        lines += [f"  seq {d.seq}: {d.event_text()}: {d.message()}" for d in h.divergences]
        lines += [f"  note: {n}" for n in error.notes]
        return "\n".join(lines)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"history {self.name}"
