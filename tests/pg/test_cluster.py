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
