"""detect() on sample mountinfo texts, and where manager_for puts a container's cgroup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cgroups import (
    HybridManager,
    V1Manager,
    V2Manager,
    detect,
    manager_at,
    manager_for,
    resolve_inner,
)
from engine.cgroups.errors import CgroupError
from engine.cgroups.mounts import (
    clean_path,
    parse_mountinfo,
    parse_proc_cgroup,
    proc_cgroup_hierarchies,
)
from engine.errors import UnsupportedError

REPO = Path(__file__).resolve().parents[2]

# A systemd-era v1 host: cpu and cpuacct comounted, name=systemd, net_cls,net_prio.
V1_MOUNTINFO = """\
21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup \
rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup \
cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup \
rw,memory
31 25 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup \
rw,freezer
32 25 0:29 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup \
rw,devices
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup \
cgroup rw,net_cls,net_prio
"""

V2_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
"""

# These machines: separate v1 mounts, name=systemd, cgroup2 at /sys/fs/cgroup/unified.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

HYBRID_PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/184cae10
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

V1_PROC_CGROUP = """\
11:net_cls,net_prio:/
6:pids:/user.slice/user-0.slice/session-1.scope
5:devices:/user.slice
4:freezer:/
3:memory:/user.slice/user-0.slice/session-1.scope
2:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-0.slice/session-1.scope
"""


# -- detect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mountinfo", "mode"),
    [(V1_MOUNTINFO, "v1"), (V2_MOUNTINFO, "v2"), (HYBRID_MOUNTINFO, "hybrid")],
)
def test_detect_tells_the_layouts_apart(mountinfo: str, mode: str) -> None:
    assert detect(mountinfo) == mode


def test_detect_named_only_v1_beside_cgroup2_is_v2() -> None:
    # A name=systemd compatibility mount holds no controller: the host is v2.
    text = V2_MOUNTINFO + (
        "40 26 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    )
    assert detect(text) == "v2"


def test_detect_without_any_cgroup_mount_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="no cgroup filesystem"):
        detect("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")


def test_detect_reads_this_host_by_default() -> None:
    with open("/proc/self/mountinfo") as f:
        assert detect() == detect(f.read())


def test_mountinfo_parsing_skips_optional_fields_and_unescapes() -> None:
    text = (
        "50 31 0:40 /sub /mnt/my\\040cgroups rw shared:3 master:1 - cgroup cgroup "
        "rw,nosuid,memory,clone_children\n"
    )
    [mount] = parse_mountinfo(text)
    assert mount.fstype == "cgroup"
    assert mount.mountpoint == "/mnt/my cgroups"
    assert mount.root == "/sub"
    assert mount.controllers == ("memory",)


def test_proc_cgroup_parsing_splits_comounted_controllers() -> None:
    own = parse_proc_cgroup(V1_PROC_CGROUP + "0::/init.scope\n")
    assert own["cpu"] == own["cpuacct"] == "/user.slice"
    assert own["name=systemd"] == "/user.slice/user-0.slice/session-1.scope"
    assert own[""] == "/init.scope"


def test_proc_cgroup_hierarchies_keep_the_controller_field_as_written() -> None:
    text = V1_PROC_CGROUP + "0::/init.scope\nnot a line\n"
    found = proc_cgroup_hierarchies(text)
    assert found["cpu,cpuacct"] == "/user.slice"
    assert "cpu" not in found
    assert found[""] == "/init.scope"
    assert "not a line" not in found
    # a path may hold a colon: only the first two separate fields
    assert proc_cgroup_hierarchies("0::/a:b\n") == {"": "/a:b"}


# -- cgroupsPath ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [
        ("", ""),
        ("/a/b", "/a/b"),
        ("a/./b/", "a/b"),
        ("../../etc", "etc"),
        ("/a/../../b", "/b"),
        ("//a//b", "/a/b"),
        ("/", "/"),
    ],
)
def test_clean_path_never_climbs_out(given: str, cleaned: str) -> None:
    assert clean_path(given) == cleaned


def test_empty_cgroups_path_defaults_to_runlog_id() -> None:
    assert resolve_inner("job-4711", None) == "/runlog/job-4711"
    assert resolve_inner("job-4711", "") == "/runlog/job-4711"
    assert resolve_inner("job-4711", "/slurm/job") == "/slurm/job"


def test_absolute_path_is_below_each_hierarchy_root_v1(tmp_path: Path) -> None:
    m = manager_for("c1", "/kube/pod1/c1", root=tmp_path, mountinfo=V1_MOUNTINFO)
    assert isinstance(m, V1Manager)
    paths = m.paths
    assert paths["memory"] == f"{tmp_path}/memory/kube/pod1/c1"
    # Comounted controllers share the mount's directory.
    assert paths["cpu"] == paths["cpuacct"] == f"{tmp_path}/cpu,cpuacct/kube/pod1/c1"
    assert paths["net_cls"] == f"{tmp_path}/net_cls,net_prio/kube/pod1/c1"
    assert paths["name=systemd"] == f"{tmp_path}/systemd/kube/pod1/c1"
    assert "unified" not in paths


def test_relative_path_is_below_the_callers_own_cgroup_v1(tmp_path: Path) -> None:
    m = manager_for(
        "c1", "runc-c1", root=tmp_path, mountinfo=V1_MOUNTINFO, proc_cgroup=V1_PROC_CGROUP
    )
    paths = m.paths
    assert paths["memory"] == f"{tmp_path}/memory/user.slice/user-0.slice/session-1.scope/runc-c1"
    assert paths["cpu"] == f"{tmp_path}/cpu,cpuacct/user.slice/runc-c1"
    assert paths["freezer"] == f"{tmp_path}/freezer/runc-c1"


def test_relative_path_cannot_climb_above_the_callers_cgroup(tmp_path: Path) -> None:
    m = manager_for(
        "c1", "../../../x", root=tmp_path, mountinfo=V1_MOUNTINFO, proc_cgroup=V1_PROC_CGROUP
    )
    assert m.paths["devices"] == f"{tmp_path}/devices/user.slice/x"


def test_relative_path_on_v2_goes_below_the_parent_of_the_callers_cgroup(tmp_path: Path) -> None:
    # runc fs2: the caller's own cgroup has processes, so it cannot
    # delegate controllers; its parent can.
    m = manager_for(
        "c1",
        "runc-c1",
        root=tmp_path,
        mountinfo=V2_MOUNTINFO,
        proc_cgroup="0::/user.slice/user-0.slice/session-1.scope\n",
    )
    assert isinstance(m, V2Manager)
    assert m.paths == {"unified": f"{tmp_path}/user.slice/user-0.slice/runc-c1"}


def test_absolute_path_on_v2_is_below_the_mount(tmp_path: Path) -> None:
    m = manager_for("c1", None, root=tmp_path, mountinfo=V2_MOUNTINFO)
    assert m.paths == {"unified": f"{tmp_path}/runlog/c1"}


def test_hybrid_joins_v1_and_the_unified_tree(tmp_path: Path) -> None:
    m = manager_for(
        "c1", "x", root=tmp_path, mountinfo=HYBRID_MOUNTINFO, proc_cgroup=HYBRID_PROC_CGROUP
    )
    assert isinstance(m, HybridManager)
    paths = m.paths
    assert paths["unified"] == f"{tmp_path}/unified/x"
    assert paths["memory"] == f"{tmp_path}/memory/process_api/184cae10/x"
    assert paths["cpu"] == f"{tmp_path}/cpu/x"
    assert paths["cpuacct"] == f"{tmp_path}/cpuacct/x"
    assert set(paths) == {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "name=systemd",
        "unified",
    }


def test_mount_of_a_sub_cgroup_is_accounted_for(tmp_path: Path) -> None:
    # Inside a container the memory hierarchy may be a bind mount of /docker/abc.
    text = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    m = manager_for(
        "c1", "x", root=tmp_path, mountinfo=text, proc_cgroup="4:memory:/docker/abc/y\n"
    )
    assert m.paths == {"memory": f"{tmp_path}/memory/y/x"}


@pytest.mark.parametrize(("cid", "path"), [("c1", "/"), ("c1", "/a/.."), ("..", None)])
def test_the_hierarchy_root_is_refused(tmp_path: Path, cid: str, path: str | None) -> None:
    with pytest.raises(CgroupError, match="root of the"):
        manager_for(cid, path, root=tmp_path, mountinfo=HYBRID_MOUNTINFO)


def test_relative_path_without_an_own_cgroup_entry_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="absolute cgroupsPath"):
        manager_for("c1", "x", root=tmp_path, mountinfo=V1_MOUNTINFO, proc_cgroup="1:cpu:/\n")


def test_systemd_cgroup_is_refused_with_the_flag_named() -> None:
    with pytest.raises(UnsupportedError, match=r"^--systemd-cgroup: .*systemd"):
        manager_for("c1", None, systemd=True)


# -- manager_at -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mountinfo", "kind"),
    [(V1_MOUNTINFO, "v1"), (V2_MOUNTINFO, "v2"), (HYBRID_MOUNTINFO, "hybrid")],
)
def test_manager_at_rebuilds_the_same_manager(tmp_path: Path, mountinfo: str, kind: str) -> None:
    first = manager_for("c1", "/runlog/c1", root=tmp_path, mountinfo=mountinfo)
    again = manager_at(first.paths, root=tmp_path, mountinfo=mountinfo)
    assert first.kind == again.kind == kind
    assert again.paths == first.paths


def test_manager_at_needs_paths() -> None:
    with pytest.raises(CgroupError, match="no cgroup paths"):
        manager_at({})


# -- import cost ----------------------------------------------------------------------


def test_pause_path_imports_stay_light() -> None:
    """``runlog pause`` imports this package; dataclasses, pathlib, enum,
    typing and contextlib (several ms each) must not come with it."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); import engine.cgroups"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}
    assert "engine.cgroups.v1" in loaded  # the measurement saw the package
    heavy = loaded & {"dataclasses", "pathlib", "enum", "typing", "contextlib", "re"}
    assert heavy == set()
