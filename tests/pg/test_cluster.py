"""The test cluster itself: a real server on a unix socket, no TCP."""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")


def test_the_cluster_answers_on_its_socket_only(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone() or ("",)
        (listen,) = conn.execute("SHOW listen_addresses").fetchone() or ("x",)
    assert str(version).startswith("15")
    assert listen == ""


def _recipe(makefile: str, target: str) -> str:
    return makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]


def test_make_test_runs_these_tests_and_make_demo_stays_on_sqlite() -> None:
    """make installs postgresql-15 and psycopg (the postgres extra) and its
    unit target runs the whole of tests/ (this directory too); the demo's
    log is an SQLite file."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    makefile = (root / "Makefile").read_text()
    assert "postgresql-15" in makefile and "[dev,postgres]" in makefile
    assert _recipe(makefile, "unit").split("\n", 1)[1].split() == ["$(PY)", "-m", "pytest", "-q"]
    assert 'testpaths = ["tests"]' in (root / "pyproject.toml").read_text()
    demo = _recipe(makefile, "demo")
    assert "--db $(DEMO_DIR)/events.db" in demo and "postgres" not in demo
