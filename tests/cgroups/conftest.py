"""Fixtures for the cgroup tests: a sandbox in the host's real cgroup tree.

Every real test gets a cgroup path of its own under one test parent
(``/runlog-test-<pid>-<random>``), made in every hierarchy. After each test
its processes are thawed, killed and reaped, its directories removed and
checked gone; after the session the parent is removed from every hierarchy,
the cgroup2 root's subtree_control is put back as it was, and the whole
/sys/fs/cgroup tree is searched for anything left with the parent's name.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from engine.cgroups.errors import CgroupError
from engine.cgroups.files import remove_tree

CGROUP_ROOT = "/sys/fs/cgroup"


def hierarchies() -> list[str]:
    return sorted(
        os.path.join(CGROUP_ROOT, name)
        for name in os.listdir(CGROUP_ROOT)
        if os.path.isdir(os.path.join(CGROUP_ROOT, name))
    )


def left_behind(token: str) -> list[str]:
    found: list[str] = []
    for top in hierarchies():
        for dirpath, dirnames, _files in os.walk(top):
            found += [os.path.join(dirpath, d) for d in dirnames if token in d]
    return found


def unified_root() -> str | None:
    path = os.path.join(CGROUP_ROOT, "unified")
    return path if os.path.exists(os.path.join(path, "cgroup.subtree_control")) else None


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Procs:
    """Processes a test starts; all are killed and reaped at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def __call__(self, *argv: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), stdin=stdin)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdin is not None:
                proc.stdin.close()


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """The absolute cgroupsPath every real test cgroup goes under."""
    token = f"runlog-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    unified = unified_root()
    subtree_before = (
        read(os.path.join(unified, "cgroup.subtree_control")).split() if unified else []
    )
    yield f"/{token}"
    for top in hierarchies():
        remove_tree(os.path.join(top, token), controller=os.path.basename(top))
    if unified:
        # Tests may have enabled a controller (hugetlb) at the cgroup2 root.
        control = os.path.join(unified, "cgroup.subtree_control")
        busy = False
        for controller in read(control).split():
            if controller not in subtree_before:
                try:
                    with open(control, "w") as f:
                        f.write(f"-{controller}")
                except OSError as err:
                    # EBUSY: another cgroup (another runlog, or a concurrent
                    # test run) uses the controller right now; it is not ours
                    # to take away.
                    if err.errno != errno.EBUSY:
                        raise
                    busy = True
        assert busy or read(control).split() == subtree_before
    assert left_behind(token) == [], "cgroups left behind under /sys/fs/cgroup"


@pytest.fixture
def procs() -> Iterator[Procs]:
    registry = Procs()
    yield registry
    registry.kill_all()


@pytest.fixture
def cgroup_path(cgroup_parent: str, procs: Procs) -> Iterator[str]:
    """A fresh absolute cgroupsPath for one test; checked gone afterwards.

    Teardown order matters: a task in a frozen v1 cgroup does not die of
    SIGKILL until thawed, so thaw first, then kill, then rmdir."""
    path = f"{cgroup_parent}/{uuid.uuid4().hex[:10]}"
    yield path
    for top in hierarchies():
        leaf = os.path.join(top, path.lstrip("/"))
        if not os.path.isdir(leaf):
            continue
        freezer_state = os.path.join(leaf, "freezer.state")
        if os.path.exists(freezer_state):
            with open(freezer_state, "w") as f:
                f.write("THAWED")
        cgroup_freeze = os.path.join(leaf, "cgroup.freeze")
        if os.path.exists(cgroup_freeze):
            with open(cgroup_freeze, "w") as f:
                f.write("0")
    procs.kill_all()
    for top in hierarchies():
        leaf = os.path.join(top, path.lstrip("/"))
        try:
            remove_tree(leaf, controller=os.path.basename(top))
        except CgroupError:
            pytest.fail(f"test cgroup {leaf} could not be removed")
    assert all(not os.path.exists(os.path.join(t, path.lstrip("/"))) for t in hierarchies())
