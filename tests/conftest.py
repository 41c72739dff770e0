"""Shared fixtures: every test runs with its own root and database under tmp_path,
and the session fails if anything was left under /run/runlog, /var/lib/runlog,
or runlog's cgroup parents."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.layout import DEFAULT_ROOT
from engine.settings import DEFAULT_DB
from engine.siteconfig import CONFIG

REPO = Path(__file__).resolve().parent.parent
# /run/runlog, /var/lib/runlog, /etc/runlog
GUARDED = (DEFAULT_ROOT, os.path.dirname(DEFAULT_DB), os.path.dirname(CONFIG))


def _runlog_cgroups() -> set[str]:
    """runlog's default cgroup parent (and the tests' own) in every hierarchy."""
    found = set()
    base = "/sys/fs/cgroup"
    if os.path.isdir(base):
        for controller in os.listdir(base):
            for name in ("runlog", "runlog-test"):
                path = os.path.join(base, controller, name)
                if os.path.isdir(path):
                    found.add(path)
    return found


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No RUNLOG_* variable of the caller leaks in; defaults point into tmp_path,
    so a command run without --db or --root cannot touch the host's."""
    for key in list(os.environ):
        if key.startswith("RUNLOG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RUNLOG_DB", str(tmp_path / "default-events.db"))
    monkeypatch.setenv("RUNLOG_ROOT", str(tmp_path / "default-root"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not even the temporary defaults: for tests of the environment itself."""
    for key in list(os.environ):
        if key.startswith("RUNLOG_"):
            monkeypatch.delenv(key)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture(autouse=True, scope="session")
def nothing_left_on_the_host() -> Iterator[None]:
    before = {path: os.path.exists(path) for path in GUARDED}
    cgroups_before = _runlog_cgroups()
    yield
    left = [path for path, existed in before.items() if not existed and os.path.exists(path)]
    left += sorted(_runlog_cgroups() - cgroups_before)
    assert not left, f"tests left {left} behind"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A PostgreSQL cluster for the session (tests/pgcluster.py), removed after."""
    from tests import pgcluster

    why = pgcluster.missing()
    if why is not None:
        pytest.skip(why)
    cluster = pgcluster.Cluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: object, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database in the session's cluster, dropped after the test."""
    from tests.pgcluster import Cluster

    assert isinstance(pg_cluster, Cluster)
    if not pg_cluster.running:
        pg_cluster.start()
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    pg_cluster.dropdb(name)
    url = pg_cluster.createdb(name)
    yield url
    if not pg_cluster.running:
        pg_cluster.start()
    pg_cluster.dropdb(name)
