"""V2Manager against a cgroup2 tree laid out in tmp_path.

No kernel answers here, so these check what the manager writes and how it
reads what it finds: the unit conversions (OCI memory+swap to
memory.swap.max, shares to weight, usec to ns), enabling a controller on
the way down, the freezer's wait and its timeout, and the refusals.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.cgroups import FreezerState, V2Manager, files
from engine.cgroups.errors import CgroupError
from engine.cgroups.files import MAX_UINT64
from engine.cgroups.resources import DeviceRule, HugepageLimit, Resources
from engine.cgroups.v2 import cpu_weight
from engine.errors import UnsupportedError

MiB = 1024 * 1024

CORE = {
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
}
LEAF = {
    "memory.max": "max",
    "memory.low": "0",
    "memory.swap.max": "max",
    "memory.swap.current": "4096",
    "memory.current": "1048576",
    "memory.peak": "2097152",
    "memory.stat": "anon 10\nfile 20\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n",
    "pids.max": "max",
    "pids.current": "1",
    "cpu.weight": "100",
    "cpu.max": "max 100000",
    "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
    "nr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "hugetlb.2MB.max": "max",
    "hugetlb.2MB.current": "0",
    "hugetlb.2MB.events": "max 2\n",
    "hugetlb.2MB.rsvd.current": "0",
}


def _populate(directory: Path, controllers: str, extra: dict[str, str] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {**CORE, "cgroup.controllers": controllers, **(extra or {})}.items():
        (directory / name).write_text(text)


def _tree(
    tmp_path: Path, *, offered: str = "cpuset cpu memory pids hugetlb", leaf: str | None = None
) -> tuple[Path, Path]:
    """A cgroup2 mount at tmp/cg offering ``offered``; the container at
    tmp/cg/runlog/c1 with the controllers ``leaf`` (default: all offered)."""
    mount = tmp_path / "cg"
    _populate(mount, offered)
    _populate(mount / "runlog", offered)
    _populate(mount / "runlog" / "c1", offered if leaf is None else leaf, LEAF)
    return mount, mount / "runlog" / "c1"


def _manager(mount: Path, leaf: Path) -> V2Manager:
    return V2Manager(str(leaf), mount=str(mount), enable_all=False)


def test_memory_swap_is_converted_to_swap_alone(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    _manager(mount, leaf).apply(
        Resources(memory_limit=64 * MiB, memory_swap=96 * MiB, memory_reservation=32 * MiB)
    )
    assert (leaf / "memory.max").read_text() == str(64 * MiB)
    # OCI swap is memory+swap; memory.swap.max is swap alone.
    assert (leaf / "memory.swap.max").read_text() == str(32 * MiB)
    assert (leaf / "memory.low").read_text() == str(32 * MiB)


def test_unlimited_memory_unlimits_swap_too(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    (leaf / "memory.swap.max").write_text("0")
    _manager(mount, leaf).apply(Resources(memory_limit=-1))
    assert (leaf / "memory.max").read_text() == "max"
    assert (leaf / "memory.swap.max").read_text() == "max"


def test_swap_below_memory_is_refused(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    with pytest.raises(CgroupError, match=r"at least memory\.limit"):
        _manager(mount, leaf).apply(Resources(memory_limit=64 * MiB, memory_swap=32 * MiB))
    assert (leaf / "memory.max").read_text() == "max"


def test_cpu_shares_quota_and_period(tmp_path: Path) -> None:
    assert (cpu_weight(2), cpu_weight(1024), cpu_weight(262144)) == (1, 39, 10000)
    mount, leaf = _tree(tmp_path)
    manager = _manager(mount, leaf)
    manager.apply(Resources(cpu_shares=1024, cpu_quota=50_000, cpu_period=100_000))
    assert (leaf / "cpu.weight").read_text() == "39"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    manager.apply(Resources(cpu_period=200_000))
    assert (leaf / "cpu.max").read_text() == "max 200000"
    with pytest.raises(CgroupError, match=r"2\.\.262144"):
        manager.apply(Resources(cpu_shares=1))


def test_pids_and_cpuset(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    manager = _manager(mount, leaf)
    manager.apply(Resources(pids_limit=-1, cpu_cpus="0-1", cpu_mems="0"))
    assert (leaf / "pids.max").read_text() == "max"
    assert (leaf / "cpuset.cpus").read_text() == "0-1"
    manager.apply(Resources(pids_limit=100))
    assert (leaf / "pids.max").read_text() == "100"


def test_device_rules_that_cannot_be_loaded_are_an_error_not_ignored(tmp_path: Path) -> None:
    # The kernel takes a device program only on a real cgroup2 directory
    # (tests/cgroups/test_cgroup_devices.py loads one).
    mount, leaf = _tree(tmp_path)
    with pytest.raises(
        CgroupError, match=r"cannot enforce linux\.resources\.devices in "
    ) as caught:
        _manager(mount, leaf).apply(Resources(devices=(DeviceRule(allow=False),)))
    assert caught.value.controller == "devices"


def test_a_controller_the_tree_does_not_offer_is_named(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path, offered="memory")
    with pytest.raises(CgroupError) as caught:
        _manager(mount, leaf).apply(Resources(pids_limit=5))
    assert caught.value.controller == "pids"
    assert "does not offer the pids controller" in str(caught.value)


def test_a_controller_is_enabled_on_the_way_down_on_first_use(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path, leaf="")
    _manager(mount, leaf).apply(Resources(hugepage_limits=(HugepageLimit("2MB", 4 * MiB),)))
    assert (mount / "cgroup.subtree_control").read_text() == "+hugetlb"
    assert (mount / "runlog" / "cgroup.subtree_control").read_text() == "+hugetlb"
    assert (leaf / "hugetlb.2MB.max").read_text() == str(4 * MiB)


def test_an_unknown_page_size_is_named(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    with pytest.raises(CgroupError, match="page size 1GB"):
        _manager(mount, leaf).apply(Resources(hugepage_limits=(HugepageLimit("1GB", 0),)))


def test_freeze_waits_for_the_kernel_and_times_out_thawed(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    manager = _manager(mount, leaf)
    started = time.monotonic()
    with pytest.raises(CgroupError, match=r"not frozen after 0\.2s"):
        manager.freeze(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    # Given up: thawed again, as if never attempted.
    assert (leaf / "cgroup.freeze").read_text() == "0"
    assert manager.freezer_state() == FreezerState.THAWED


def test_freezer_states_from_freeze_and_events(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    manager = _manager(mount, leaf)
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    manager.freeze(timeout=1)
    assert (leaf / "cgroup.freeze").read_text() == "1"
    assert manager.freezer_state() == FreezerState.FROZEN
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert manager.freezer_state() == FreezerState.FREEZING
    manager.thaw(timeout=1)
    assert manager.freezer_state() == FreezerState.THAWED
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    with pytest.raises(CgroupError, match="ancestor"):
        manager.thaw(timeout=0.05)


def test_no_cgroup_freeze_file_is_unsupported(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    (leaf / "cgroup.freeze").unlink()
    with pytest.raises(UnsupportedError, match=r"5\.2"):
        _manager(mount, leaf).freeze(timeout=0.1)


def test_stats_in_runc_units(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    stats = _manager(mount, leaf).stats()
    assert stats["cpu"] == {
        "usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000, "percpu": []},
        "throttling": {"periods": 4, "throttled_periods": 1, "throttled_time": 20_000},
    }
    memory = stats["memory"]
    assert isinstance(memory, dict)
    assert memory["usage"] == {"usage": MiB, "max": 2 * MiB, "limit": MAX_UINT64, "failcnt": 3}
    assert memory["swap"] == {"usage": MiB + 4096, "limit": MAX_UINT64}
    assert memory["cache"] == 20
    assert stats["pids"] == {"current": 1, "limit": 0}
    assert stats["hugetlb"] == {"2MB": {"usage": 0, "failcnt": 2}}


def test_create_makes_the_levels_and_undoes_them_on_failure(tmp_path: Path) -> None:
    mount = tmp_path / "cg"
    _populate(mount, "memory pids")
    plain = V2Manager(str(mount / "runlog" / "c1"), mount=str(mount), enable_all=False)
    plain.create()
    assert plain.exists()
    plain.destroy()
    assert not plain.exists()
    (mount / "runlog").rmdir()
    # Enabling controllers reads each new level's cgroup.controllers, which a
    # plain directory lacks: create fails and removes what it made.
    eager = V2Manager(str(mount / "runlog" / "c1"), mount=str(mount))
    with pytest.raises(CgroupError, match=r"cgroup\.controllers"):
        eager.create()
    assert not (mount / "runlog").exists()


def test_a_path_outside_the_mount_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="not below the cgroup2 mount"):
        V2Manager(str(tmp_path / "elsewhere"), mount=str(tmp_path / "cg"))
    with pytest.raises(CgroupError, match="not below the cgroup2 mount"):
        V2Manager(str(tmp_path / "cg"), mount=str(tmp_path / "cg"))


def test_the_v1_memory_knobs_are_ignored_with_warnings(tmp_path: Path) -> None:
    """cgroup v2 has no swappiness, OOM-killer switch or TCP kernel memory
    file: runc 1.1 ignores them; runlog says so."""
    mount, leaf = _tree(tmp_path)
    knobs = Resources(
        memory_limit=64 * MiB,
        memory_swappiness=10,
        memory_disable_oom_killer=True,
        memory_kernel_tcp=MiB,
    )
    assert _manager(mount, leaf).apply(knobs) == [
        "linux.resources.memory.disableOOMKiller ignored: cgroup v2 has no memory.oom_control",
        "linux.resources.memory.swappiness ignored: cgroup v2 has no memory.swappiness",
        "linux.resources.memory.kernelTCP ignored: cgroup v2 has no memory.kmem.tcp.limit_in_bytes",
    ]
    assert (leaf / "memory.max").read_text() == str(64 * MiB)


def test_network_is_ignored_with_warnings(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path)
    r = Resources.from_oci(
        {"network": {"classID": 1, "priorities": [{"name": "lo", "priority": 1}]}}
    )
    assert _manager(mount, leaf).apply(r) == [
        "linux.resources.network.classID ignored: cgroup v2 has no net_cls controller",
        "linux.resources.network.priorities ignored: cgroup v2 has no net_prio controller",
    ]


BLOCK_IO = {
    "weight": 500,
    "leafWeight": 300,
    "weightDevice": [{"major": 8, "minor": 0, "weight": 600}],
    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}],
    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
}


class IoMax:
    """io.max as the kernel keeps it: each write adds or changes a line."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines: list[str] = []
        real = files.write

        def write(directory: str, name: str, value: str, *, controller: str) -> None:
            if name == "io.max":
                self.lines.append(value)
            real(directory, name, value, controller=controller)

        monkeypatch.setattr(files, "write", write)


def test_block_io_without_bfq_goes_to_io_weight_and_io_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount, leaf = _tree(tmp_path, offered="memory io", leaf="memory io")
    (leaf / "io.weight").write_text("default 100\n")
    (leaf / "io.max").write_text("")
    io_max = IoMax(monkeypatch)
    warnings = _manager(mount, leaf).apply(Resources.from_oci({"blockIO": BLOCK_IO}))
    # runc's conversion of 10..1000 onto 1..10000.
    assert (leaf / "io.weight").read_text() == str(1 + (500 - 10) * 9999 // 990)
    assert io_max.lines == ["8:0 rbps=4096", "8:16 wiops=100"]
    assert warnings == [
        "linux.resources.blockIO.leafWeight ignored: cgroup v2 has no leaf weights",
        "linux.resources.blockIO.weightDevice weight of 8:0 ignored: cgroup v2 takes device "
        "weights only from a BFQ I/O scheduler that has them",
    ]


def test_block_io_with_bfq_takes_the_weights_as_they_are(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path, offered="io", leaf="io")
    # A BFQ with per-device weights reads back "default N" and device lines.
    (leaf / "io.bfq.weight").write_text("default 100\n")
    (leaf / "io.max").write_text("")
    block = {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 600}]}
    assert _manager(mount, leaf).apply(Resources.from_oci({"blockIO": block})) == []
    # The last write; the kernel would keep both.
    assert (leaf / "io.bfq.weight").read_text() == "8:0 600"


def test_block_io_is_io_to_the_cgroup2_tree(tmp_path: Path) -> None:
    mount, leaf = _tree(tmp_path, offered="memory")
    with pytest.raises(CgroupError, match="does not offer the blkio controller"):
        _manager(mount, leaf).apply(Resources.from_oci({"blockIO": {"weight": 500}}))
