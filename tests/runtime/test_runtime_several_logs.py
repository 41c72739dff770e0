"""root's view of a node, on logs real commands wrote: two of root's and one a
real unprivileged user's (as a site config's /var/lib/runlog/{user}/events.db
lays them out), read by audit, history and replay in one go."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.bundles import BUSYBOX
from tests.runtime.conftest import Runlog
from tests.runtime.users import User, UserRunlog, make_user, rootless_bundle, user_dir

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def carol() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("making a user needs root")
    with make_user("rlcarol", 2971) as user:
        yield user


@pytest.fixture
def base(carol: User) -> Iterator[Path]:
    """The node's logs: root/ and ops/ root's (0700), carol/ carol's (0700)."""
    directory = Path(tempfile.mkdtemp(prefix="runlog-logs-", dir="/tmp"))
    directory.chmod(0o755)
    for name in ("root", "ops", carol.name):
        (directory / name).mkdir(mode=0o700)
    os.chown(directory / carol.name, carol.uid, carol.gid)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_root_reads_every_log_of_the_node_a_user_only_their_own(
    runlog: Runlog, bundle: Any, base: Path, carol: User
) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make bench-deps): it writes carol's bundle")
    assert os.path.exists(BUSYBOX)
    a, b = base / "root" / "events.db", base / "ops" / "events.db"
    u = base / carol.name / "events.db"
    in_a, in_b = Runlog(runlog.root, a, runlog.cwd), Runlog(runlog.root, b, runlog.cwd)
    assert in_a("run", "-b", str(bundle(["true"])), "c1").returncode == 0
    assert in_b("run", "-b", str(bundle(["sh", "-c", "exit 3"])), "c1").returncode == 3
    assert in_b("run", "-b", str(bundle(["true"])), "c2").returncode == 0
    with user_dir(carol) as place:
        as_carol = UserRunlog(carol, place / "root", u, place)
        made = rootless_bundle(carol, place / "bundle", ["true"])
        assert as_carol("run", "-b", str(made), "u1").returncode == 0

        dbs = ("--db", str(a), "--db", str(b), "--db", str(u))
        only_a = _jsonl(in_a("audit", "--format", "jsonl").stdout)
        done = _root(runlog, *dbs, "audit", "--format", "jsonl")
        assert done.returncode == 0, done.stderr
        rows = _jsonl(done.stdout)
        assert [r["time_ns"] for r in rows] == sorted(r["time_ns"] for r in rows)
        by_log = {
            str(p): {r["container_id"] for r in rows if r["log"] == str(p)} for p in (a, b, u)
        }
        assert by_log == {str(a): {"c1"}, str(b): {"c1", "c2"}, str(u): {"u1"}}
        assert len([r for r in rows if r["log"] == str(a)]) == len(only_a)
        (u1_create,) = [r for r in rows if r["container_id"] == "u1" and r["trigger"] == "create"]
        assert u1_create["actor"]["uid"] == carol.uid
        # The table: a LOG column naming each row's log.
        table = _root(runlog, *dbs, "audit", "--format", "table").stdout.splitlines()
        assert table[0].split()[:3] == ["TIME", "LOG", "CONTAINER"]
        assert [line.split()[1] for line in table[1:]] == [r["log"] for r in rows]
        # A glob, as the site config's {user} pattern names every user's log.
        glob = _root(runlog, "--db", str(base / "*" / "events.db"), "audit", "-f", "jsonl")
        assert sorted(map(orjson.dumps, _jsonl(glob.stdout))) == sorted(map(orjson.dumps, rows))

        # history: c1 lived once in each of root's logs; the latest is b's.
        hist = _root(runlog, *dbs, "history", "--all", "c1")
        assert hist.returncode == 0, hist.stderr
        assert f"life 1 of 2 in log {a}" in hist.stdout
        assert f"life 2 of 2 in log {b}" in hist.stdout
        hist = _root(runlog, *dbs, "history", "--format", "jsonl", "u1")
        assert {r["log"] for r in _jsonl(hist.stdout)} == {str(u)}

        # replay: each history from its own log, all agree.
        replayed = _root(runlog, *dbs, "replay", "--all", "--format", "jsonl")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        names = sorted(r["container_id"] for r in _jsonl(replayed.stdout) if r["kind"] == "history")
        assert names == sorted([f"c1@{a}", f"c1@{b}", f"c2@{b}", f"u1@{u}"])
        text = _root(runlog, *dbs, "replay", "--all", "--verbose").stdout
        assert f"agrees    u1@{u}" in text and "0 diverge" in text

        # carol reads her own log, not root's: one line naming the file.
        own = as_carol("--db", str(u), "audit", "--format", "jsonl")
        assert own.returncode == 0, own.stderr
        assert {r["container_id"] for r in _jsonl(own.stdout)} == {"u1"}
        refused = as_carol("--db", str(u), "--db", str(a), "audit")
        assert refused.returncode != 0 and refused.stdout == ""
        assert refused.stderr.splitlines() == [f"event log {a}: cannot be read: Permission denied"]
        refused = as_carol("--db", str(a), "history", "c1")
        assert refused.returncode != 0 and str(a) in refused.stderr
        assert "Traceback" not in refused.stderr

        # root's reading left carol's log hers: she still writes it.
        assert as_carol("run", "-b", str(made), "u2").returncode == 0
        foreign = [str(p) for p in u.parent.iterdir() if p.stat().st_uid != carol.uid]
        assert not foreign, foreign


def _root(runlog: Runlog, *args: str) -> Any:
    """``runlog ARGS`` as root, the global flags in ARGS (no --db of the fixture's)."""
    import subprocess
    import sys

    from tests.runtime.conftest import REPO

    return subprocess.run(
        [sys.executable, "-m", "engine", "--root", str(runlog.root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=runlog.cwd,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
