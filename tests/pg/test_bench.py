"""The cluster's benchmarks still run (at a small size): ship throughput and the
queries on the cluster's table (bench/cluster.py), the hash chain's cost per
append (bench/chain.py). Their figures are for `make bench`, not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

REPO = Path(__file__).resolve().parents[2]


def _bench(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_cluster_runs(pg_url: str) -> None:
    out = _bench(
        "bench/cluster.py", "--to", pg_url, "--ship-events", "3000", "--events", "20000",
        "--containers", "200", "--nodes", "2",
    )  # fmt: skip
    for row in ("ship 3,000 events", "one container's history", "one-day summary"):
        assert row in out, out
    assert "current state of 200 containers" in out, out


def test_bench_chain_runs() -> None:
    out = _bench("bench/chain.py", "--count", "50", "--runs", "1")
    assert "hash one event (chain.link)" in out
    mixes = [line.split("|")[1].strip() for line in out.splitlines() if str(REPO) in line]
    assert mixes == ["kill", "lifecycle"], out


def test_make_bench_runs_them() -> None:
    recipe = (REPO / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "bench/cluster.py" in recipe and "bench/chain.py" in recipe
