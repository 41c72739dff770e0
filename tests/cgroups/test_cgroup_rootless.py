"""Rootless cgroups on a directory tree standing in for /sys/fs/cgroup: the
hierarchies the caller may write are kept, the rest done without."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cgroups import manager_for
from engine.cgroups.errors import CgroupError
from engine.cgroups.resources import Resources
from engine.cgroups.rootless import NO_FREEZER, RootlessManager, may_write, writable

HYBRID = """\
21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/freezer rw,relatime shared:11 - cgroup cgroup rw,freezer
32 25 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:12 - cgroup2 cgroup2 rw
"""
OWN = "2:memory:/\n1:freezer:/job\n0::/\n"


def test_unwritable_places_are_left_out(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    (open_dir / "cgroup.procs").write_text("")
    assert may_write(str(open_dir / "a" / "b"), "freezer")
    assert may_write(str(open_dir / "c"), "unified")
    assert not may_write("/proc/1/c", "memory")
    kept, skipped = writable({"freezer": str(open_dir / "x"), "memory": "/proc/1/x"})
    assert kept == {"freezer": str(open_dir / "x")}
    assert skipped == ["memory"]


def test_rootless_default_path_is_below_the_callers_cgroup(tmp_path: Path) -> None:
    for name in ("memory", "freezer", "unified"):
        (tmp_path / name).mkdir()
    (tmp_path / "freezer" / "job").mkdir()
    (tmp_path / "freezer" / "job" / "cgroup.procs").write_text("")
    manager = manager_for(
        "c1", None, root=tmp_path, mountinfo=HYBRID, proc_cgroup=OWN, rootless=True
    )
    assert isinstance(manager, RootlessManager)
    # As root every place here is writable; the freezer one is below the job's cgroup.
    assert manager.paths["freezer"] == str(tmp_path / "freezer" / "job" / "c1")


def test_limits_without_their_hierarchy_fail_with_runcs_words() -> None:
    manager = RootlessManager(None, ["memory", "freezer"])
    with pytest.raises(CgroupError, match="cannot set memory limit: container could not join"):
        manager.apply(Resources.from_oci({"memory": {"limit": 1 << 26}}))
    # Device rules are not enforced rootless, as runc's.
    manager.apply(Resources.from_oci({"devices": [{"allow": False, "access": "rwm"}]}))
    with pytest.raises(CgroupError, match=NO_FREEZER):
        manager.freeze()
    with pytest.raises(CgroupError, match=NO_FREEZER):
        manager.thaw()
    assert manager.freezer_state() == "thawed"
    assert manager.pids() == []
    assert manager.report() == {"cgroups": [], "cgroups_skipped": ["freezer", "memory"]}
    manager.create()
    manager.destroy()
    assert manager.entry() == ([], None)


def test_what_a_manager_lacks_is_said_before_anything_is_asked(tmp_path: Path) -> None:
    """pause, resume and update are refused up front (a rejected event)
    where the hierarchy they need was done without."""
    none = RootlessManager(None, ["memory", "freezer", "pids"])
    assert none.lacks("pause", None) == NO_FREEZER
    assert none.lacks("resume", None) == NO_FREEZER
    memory = {"memory": {"limit": 1 << 26}}
    assert none.lacks("update", memory) == (
        "cannot set memory limit: container could not join or create cgroup"
    )
    assert none.lacks("update", {"devices": [{"allow": False, "access": "rwm"}]}) is None
    assert none.lacks("update", {}) is None
    assert none.lacks("kill", None) is None
    (tmp_path / "freezer").mkdir()
    (tmp_path / "pids").mkdir()
    some = manager_for(
        "c1",
        "/c1",
        root=tmp_path,
        mountinfo=HYBRID.replace("memory", "pids"),
        proc_cgroup="2:pids:/\n1:freezer:/\n0::/\n",
        rootless=True,
    )
    assert isinstance(some, RootlessManager)
    assert some.lacks("pause", None) is None
    assert some.lacks("update", {"pids": {"limit": 10}}) is None
    assert some.lacks("update", memory) is not None


def test_disabled_makes_no_cgroup_and_names_what_it_went_without(tmp_path: Path) -> None:
    """``--cgroup-manager=disabled``: nothing made or removed, every
    hierarchy named as gone without; a limit, pause and resume refused."""
    for name in ("memory", "freezer", "unified"):
        (tmp_path / name).mkdir()
    manager = manager_for(
        "c1", "/runlog/c1", root=tmp_path, mountinfo=HYBRID, proc_cgroup=OWN, disabled=True
    )
    assert isinstance(manager, RootlessManager)
    assert manager.kind == "disabled"
    assert manager.paths == {}
    assert manager.report() == {
        "cgroups": [],
        "cgroups_skipped": ["freezer", "memory", "unified"],
        "cgroup_manager": "disabled",
    }
    manager.create()
    assert manager.apply(Resources.from_oci({})) == []
    manager.destroy()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["freezer", "memory", "unified"]
    with pytest.raises(CgroupError) as err:
        manager.apply(Resources.from_oci({"pids": {"limit": 10}}))
    assert str(err.value) == (
        "cannot set pids limit: --cgroup-manager=disabled gives the container no cgroup"
    )
    assert manager.lacks("pause", None) == NO_FREEZER
    assert manager.lacks("update", {"memory": {"limit": 1 << 26}}) is not None
    assert not manager.exists() and manager.pids() == []


def test_disabled_as_root_too(tmp_path: Path) -> None:
    """Not only rootless: root's container goes without as well (crun's
    ``--cgroup-manager=disabled``), on a pure cgroup v2 host too."""
    v2 = (
        "21 1 8:1 / / rw - ext4 /dev/sda1 rw\n32 25 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    manager = manager_for(
        "c1", None, root=tmp_path, mountinfo=v2, proc_cgroup="0::/\n", disabled=True
    )
    assert manager.paths == {}
    assert manager.report()["cgroups_skipped"] == ["unified"]
    assert list(tmp_path.iterdir()) == []
