"""One contract, run against every cgroup manager that works here.

``ManagerContract`` holds what every implementation must do; each
``Test...`` subclass supplies a fresh, not yet created manager. The real
ones (v1 hierarchies alone, and the hybrid manager) run as root against
/sys/fs/cgroup, with a cgroup path of their own from the ``cgroup_path``
fixture; the fake runs everywhere. Real-only checks (kernel files, task
states, stats after work) live in ``RealContract``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cgroups import (
    CgroupManager,
    FreezerState,
    HybridManager,
    V1Manager,
    V2Manager,
    detect,
    manager_at,
    manager_for,
)
from engine.cgroups.errors import CgroupError
from engine.cgroups.fake import FakeCgroupManager
from engine.cgroups.mounts import proc_cgroup_hierarchies
from engine.cgroups.resources import DeviceRule, HugepageLimit, Resources
from engine.errors import UnsupportedError

MiB = 1024 * 1024

# The ``procs`` fixture (conftest.py): start a process the test owns.
Procs = Callable[..., "subprocess.Popen[bytes]"]


def _host_mode() -> str | None:
    try:
        return detect()
    except UnsupportedError:
        return None


needs_root_v1 = pytest.mark.skipif(
    os.geteuid() != 0 or _host_mode() not in ("v1", "hybrid"),
    reason="needs root on a host with cgroup v1 controllers",
)
UNIFIED = "/sys/fs/cgroup/unified"
needs_root_hybrid = pytest.mark.skipif(
    os.geteuid() != 0 or _host_mode() != "hybrid", reason="needs root on a hybrid cgroup host"
)


def _no_hugetlb() -> str | None:
    """Why 2MB hugetlb limits cannot be tested in the unified tree here, or
    None. The host's cgroup2 tree offers hugetlb only while no v1 hierarchy
    has taken it (a v1 mount of it keeps it until reboot)."""
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        return "no 2MB huge pages on this kernel"
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
            offered = f.read().split()
    except OSError as err:
        return f"no cgroup2 tree at {UNIFIED}: {err.strerror}"
    if "hugetlb" not in offered:
        return f"{UNIFIED} does not offer hugetlb here (a v1 hierarchy holds it until reboot)"
    return None


def _wait_until(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def _task_state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("State:"):
                return line.split()[1]
    raise AssertionError(f"no State in /proc/{pid}/status")


class ManagerContract:
    """Every manager. Subclasses define the ``manager`` fixture and may
    override the hooks below."""

    def reap(self, manager: CgroupManager, proc: subprocess.Popen[bytes]) -> None:
        """Kill ``proc`` and wait until the cgroup no longer lists it."""
        proc.kill()
        proc.wait(timeout=10)

    def assert_frozen_task(self, pid: int) -> None:
        """What a frozen task looks like from outside (nothing for the fake)."""

    def assert_running_task(self, pid: int) -> None:
        """What a thawed task looks like from outside."""

    def test_create_makes_the_cgroup(self, manager: CgroupManager) -> None:
        assert not manager.exists()
        manager.create()
        assert manager.exists()
        assert manager.paths

    def test_create_twice_joins_the_existing_cgroup(self, manager: CgroupManager) -> None:
        manager.create()
        manager.create()
        assert manager.exists()

    def test_limits_read_back_through_stats(self, manager: CgroupManager) -> None:
        manager.create()
        manager.apply(Resources(memory_limit=64 * MiB, pids_limit=32))
        stats = manager.stats()
        memory = stats["memory"]
        pids = stats["pids"]
        assert isinstance(memory, dict) and isinstance(pids, dict)
        assert memory["usage"]["limit"] == 64 * MiB
        assert pids["limit"] == 32

    def test_added_process_is_listed_until_it_exits(
        self, manager: CgroupManager, procs: Procs
    ) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        assert proc.pid in manager.pids()
        stats = manager.stats()["pids"]
        assert isinstance(stats, dict) and stats["current"] == 1
        self.reap(manager, proc)
        assert proc.pid not in manager.pids()

    def test_add_before_create_fails(self, manager: CgroupManager, procs: Procs) -> None:
        proc = procs("sleep", "30")
        with pytest.raises(CgroupError, match="does not exist"):
            manager.add(proc.pid)

    def test_freeze_then_thaw(self, manager: CgroupManager, procs: Procs) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        assert manager.freezer_state() == FreezerState.THAWED
        manager.freeze(timeout=5)
        assert manager.freezer_state() == FreezerState.FROZEN
        self.assert_frozen_task(proc.pid)
        manager.thaw(timeout=5)
        assert manager.freezer_state() == FreezerState.THAWED
        self.assert_running_task(proc.pid)

    def test_freeze_before_create_fails(self, manager: CgroupManager) -> None:
        with pytest.raises(CgroupError):
            manager.freeze(timeout=0.1)

    def test_missing_cgroup_reads_as_thawed_and_empty(self, manager: CgroupManager) -> None:
        assert manager.freezer_state() == FreezerState.THAWED
        assert manager.pids() == []

    def test_destroy_refuses_a_cgroup_with_processes_and_kills_nothing(
        self, manager: CgroupManager, procs: Procs
    ) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        with pytest.raises(CgroupError, match=str(proc.pid)):
            manager.destroy()
        assert proc.poll() is None
        assert manager.exists()
        assert proc.pid in manager.pids()

    def test_destroy_after_the_processes_exit(self, manager: CgroupManager, procs: Procs) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        self.reap(manager, proc)
        manager.destroy()
        assert not manager.exists()

    def test_destroy_is_idempotent(self, manager: CgroupManager) -> None:
        manager.create()
        manager.destroy()
        assert not manager.exists()
        manager.destroy()
        assert not manager.exists()


class TestFakeManager(ManagerContract):
    @pytest.fixture
    def manager(self) -> FakeCgroupManager:
        return FakeCgroupManager()

    def reap(self, manager: CgroupManager, proc: subprocess.Popen[bytes]) -> None:
        super().reap(manager, proc)
        assert isinstance(manager, FakeCgroupManager)
        manager.discard(proc.pid)


class EntersThroughEntry:
    """A process forked as the init's first stage is lands in every hierarchy."""

    def test_a_new_process_enters_through_entry(self, manager: CgroupManager) -> None:
        # As the init's first stage does: forked into the cgroup2 directory
        # (clone3), then "0" to each v1 tasks file; then it forks once more.
        manager.create()
        tasks, unified = manager.entry()
        assert tasks or unified
        script = (
            "import os, sys\n"
            "from engine.runtime.monitor.spawn import _fork_intermediate\n"
            f"pid, joins = _fork_intermediate({tasks!r}, {unified!r})\n"
            "if pid == 0:\n"
            "    for name in joins:\n"
            "        open(name, 'w').write('0')\n"
            "    if os.fork() == 0:\n"
            "        sys.stdout.write(open('/proc/self/cgroup').read())\n"
            "        sys.stdout.flush()\n"
            "        os._exit(0)\n"
            "    os._exit(0 if os.wait()[1] == 0 else 1)\n"
            "assert os.waitpid(pid, 0)[1] == 0\n"
            "print('joined', *joins)\n"
        )
        out = subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n{script}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines = out.splitlines()
        joined = lines[-1].split()[1:]
        # clone3 put it in the cgroup2 directory: cgroup.procs was not written.
        assert joined == tasks
        shown = proc_cgroup_hierarchies("\n".join(lines[:-1]))
        for controller, directory in manager.paths.items():
            key = "" if controller == "unified" else controller
            entry = next(k for k in shown if key in k.split(",")) if key else ""
            assert directory.endswith(shown[entry]), (controller, directory, shown)


class RealContract(EntersThroughEntry, ManagerContract):
    """The kernel's side of the contract, for managers on /sys/fs/cgroup."""

    def reap(self, manager: CgroupManager, proc: subprocess.Popen[bytes]) -> None:
        super().reap(manager, proc)
        assert _wait_until(lambda: proc.pid not in manager.pids())

    def assert_frozen_task(self, pid: int) -> None:
        # A task stopped by the freezer shows as "D (disk sleep)" on this
        # kernel (TASK_FROZEN since Linux 6.1); never "R" or "S".
        assert _wait_until(lambda: _task_state(pid) in ("D", "T"))

    def assert_running_task(self, pid: int) -> None:
        assert _wait_until(lambda: _task_state(pid) in ("S", "R"))

    def v1_dir(self, manager: CgroupManager, controller: str) -> str:
        return manager.paths[controller]

    def test_destroy_removes_cgroups_made_below_it(self, manager: CgroupManager) -> None:
        # As a container that manages cgroups of its own leaves them.
        manager.create()
        for directory in set(manager.paths.values()):
            os.makedirs(os.path.join(directory, "child", "grandchild"))
        manager.destroy()
        assert not manager.exists()
        assert [d for d in set(manager.paths.values()) if os.path.exists(d)] == []

    def test_limits_are_in_the_kernel_files(self, manager: CgroupManager) -> None:
        manager.create()
        manager.apply(Resources(memory_limit=64 * MiB, pids_limit=32))
        memory = self.v1_dir(manager, "memory")
        pids = self.v1_dir(manager, "pids")
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 64 * MiB
        with open(os.path.join(pids, "pids.max")) as f:
            assert f.read().strip() == "32"

    def test_memory_and_swap_can_go_up_and_down(self, manager: CgroupManager) -> None:
        manager.create()
        memory = self.v1_dir(manager, "memory")
        memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
        if not os.path.exists(memsw):
            pytest.skip("the kernel does not account swap")
        manager.apply(Resources(memory_limit=64 * MiB, memory_swap=128 * MiB))
        # Raising both needs memsw written first (the kernel keeps memsw >= limit).
        manager.apply(Resources(memory_limit=256 * MiB, memory_swap=512 * MiB))
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 256 * MiB
        with open(memsw) as f:
            assert int(f.read()) == 512 * MiB
        manager.apply(Resources(memory_limit=32 * MiB, memory_swap=48 * MiB))
        with open(memsw) as f:
            assert int(f.read()) == 48 * MiB

    def test_kernel_refusal_is_a_cgroup_error_naming_the_file(self, manager: CgroupManager) -> None:
        manager.create()
        with pytest.raises(CgroupError) as caught:
            manager.apply(Resources(memory_limit=256 * MiB, memory_swap=128 * MiB))
        assert caught.value.controller == "memory"
        assert "memory." in str(caught.value)

    def test_cpu_shares_outside_the_kernel_range_are_refused(self, manager: CgroupManager) -> None:
        manager.create()
        manager.apply(Resources(cpu_shares=512, cpu_quota=50_000, cpu_period=100_000))
        cpu = self.v1_dir(manager, "cpu")
        with open(os.path.join(cpu, "cpu.cfs_quota_us")) as f:
            assert f.read().strip() == "50000"
        with pytest.raises(CgroupError, match="shares"):
            manager.apply(Resources(cpu_shares=1))

    def test_cpuset_is_usable_after_create(self, manager: CgroupManager, procs: Procs) -> None:
        manager.create()
        cpuset = self.v1_dir(manager, "cpuset")
        for directory in (cpuset, os.path.dirname(cpuset)):
            with open(os.path.join(directory, "cpuset.cpus")) as f:
                assert f.read().strip()
        manager.apply(Resources(cpu_cpus="0", cpu_mems="0"))
        proc = procs("sleep", "30")
        manager.add(proc.pid)  # an empty cpuset would refuse this (ENOSPC)
        with open(f"/proc/{proc.pid}/status") as f:
            allowed = [line for line in f if line.startswith("Cpus_allowed_list:")]
        assert allowed[0].split()[1] == "0"

    def test_device_rules_become_the_allow_list(self, manager: CgroupManager) -> None:
        manager.create()
        manager.apply(
            Resources(
                devices=(
                    DeviceRule(allow=False, access="rwm"),
                    DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),
                    DeviceRule(allow=True, type="c", major=136, access="rw"),
                )
            )
        )
        with open(os.path.join(self.v1_dir(manager, "devices"), "devices.list")) as f:
            assert f.read().split("\n")[:2] == ["c 1:3 rwm", "c 136:* rw"]

    def test_stats_after_work(self, manager: CgroupManager, procs: Procs) -> None:
        manager.create()
        manager.apply(Resources(memory_limit=256 * MiB))
        work = (
            "import sys, time\n"
            "sys.stdin.buffer.read(1)\n"
            "block = bytearray(32 * 1024 * 1024)\n"
            "for i in range(0, len(block), 4096): block[i] = 1\n"
            "end = time.monotonic() + 0.2\n"
            "while time.monotonic() < end: pass\n"
        )
        proc = procs(sys.executable, "-I", "-S", "-c", work, stdin=subprocess.PIPE)
        manager.add(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"x")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        stats = manager.stats()
        cpu, memory = stats["cpu"], stats["memory"]
        assert isinstance(cpu, dict) and isinstance(memory, dict)
        assert cpu["usage"]["total"] >= 100_000_000  # spun at least 0.1 s, in ns
        assert cpu["usage"]["user"] > 0
        assert "throttling" in cpu
        assert memory["usage"]["max"] >= 32 * MiB
        assert memory["usage"]["limit"] == 256 * MiB
        assert "raw" in memory

    def test_manager_at_rebuilds_from_recorded_paths(
        self, manager: CgroupManager, procs: Procs
    ) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        again = manager_at(manager.paths)
        assert type(again) is type(manager)
        assert again.paths == manager.paths
        again.freeze(timeout=5)
        assert manager.freezer_state() == FreezerState.FROZEN
        again.thaw(timeout=5)
        assert again.pids() == [proc.pid]


@pytest.mark.root
@needs_root_v1
class TestV1Manager(RealContract):
    @pytest.fixture
    def manager(self, cgroup_path: str) -> V1Manager:
        built = manager_for("contract", cgroup_path)
        v1 = built.v1 if isinstance(built, HybridManager) else built
        assert isinstance(v1, V1Manager)
        return v1

    def test_one_directory_per_hierarchy(self, manager: CgroupManager) -> None:
        paths = manager.paths
        assert {"memory", "pids", "freezer", "devices", "cpu", "cpuacct"} <= set(paths)
        assert "unified" not in paths
        manager.create()
        for directory in paths.values():
            assert os.path.isdir(directory)


@pytest.mark.root
@needs_root_hybrid
class TestHybridManager(RealContract):
    @pytest.fixture
    def manager(self, cgroup_path: str) -> HybridManager:
        built = manager_for("contract", cgroup_path)
        assert isinstance(built, HybridManager)
        return built

    def test_processes_join_the_unified_tree_too(
        self, manager: CgroupManager, procs: Procs
    ) -> None:
        manager.create()
        proc = procs("sleep", "30")
        manager.add(proc.pid)
        with open(f"/proc/{proc.pid}/cgroup") as f:
            unified = [line for line in f.read().splitlines() if line.startswith("0::")]
        expected = manager.paths["unified"].removeprefix("/sys/fs/cgroup/unified")
        assert unified == [f"0::{expected}"]

    def test_hugetlb_goes_to_the_unified_tree(self, manager: CgroupManager) -> None:
        why = _no_hugetlb()
        if why is not None:
            pytest.skip(why)
        manager.create()
        manager.apply(Resources(hugepage_limits=(HugepageLimit("2MB", 4 * MiB),)))
        with open(os.path.join(manager.paths["unified"], "hugetlb.2MB.max")) as f:
            assert int(f.read()) == 4 * MiB
        hugetlb = manager.stats()["hugetlb"]
        assert isinstance(hugetlb, dict) and hugetlb["2MB"]["usage"] == 0

    def test_a_create_that_fails_in_the_unified_tree_takes_back_what_it_made(
        self, manager: HybridManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse() -> None:
            raise CgroupError("refused", controller="unified")

        monkeypatch.setattr(manager.unified, "create", refuse)
        with pytest.raises(CgroupError, match="refused"):
            manager.create()
        assert not manager.v1.exists()

    def test_a_failed_create_leaves_the_cgroups_that_were_there_before(
        self, manager: HybridManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        manager.v1.create()
        assert manager.v1.make() == []  # there already: this call made nothing

        def refuse() -> None:
            raise CgroupError("refused", controller="unified")

        monkeypatch.setattr(manager.unified, "create", refuse)
        with pytest.raises(CgroupError, match="refused"):
            manager.create()
        assert all(os.path.isdir(d) for d in manager.v1.paths.values())

    def test_unknown_huge_page_size_is_refused(self, manager: CgroupManager) -> None:
        manager.create()
        with pytest.raises(CgroupError, match="3MB"):
            manager.apply(Resources(hugepage_limits=(HugepageLimit("3MB", 4 * MiB),)))


@pytest.mark.root
@needs_root_hybrid
class TestV2ManagerOnTheUnifiedTree(EntersThroughEntry, ManagerContract):
    """The v2 manager against the kernel: the cgroup2 tree of this hybrid
    host offers only hugetlb, but the core files (cgroup.procs,
    cgroup.freeze, cgroup.events, cpu.stat) are all there."""

    @pytest.fixture
    def manager(self, cgroup_path: str) -> V2Manager:
        return V2Manager(f"{UNIFIED}{cgroup_path}", mount=UNIFIED)

    def reap(self, manager: CgroupManager, proc: subprocess.Popen[bytes]) -> None:
        super().reap(manager, proc)
        assert _wait_until(lambda: proc.pid not in manager.pids())

    def test_limits_read_back_through_stats(self, manager: CgroupManager) -> None:
        manager.create()
        # What the tree lacks is refused, naming the controller and the tree...
        with pytest.raises(CgroupError, match=f"{UNIFIED} does not offer the memory") as caught:
            manager.apply(Resources(memory_limit=64 * MiB))
        assert caught.value.controller == "memory"
        # ... and the process count comes from cgroup.procs, as runc's does.
        assert manager.stats()["pids"] == {"current": 0, "limit": 0}
        if _no_hugetlb() is None:
            manager.apply(Resources(hugepage_limits=(HugepageLimit("2MB", 4 * MiB),)))
            hugetlb = manager.stats()["hugetlb"]
            assert isinstance(hugetlb, dict) and hugetlb["2MB"]["usage"] == 0

    def test_freeze_then_thaw(self, manager: CgroupManager, procs: Procs, tmp_path: Path) -> None:
        # A task frozen by cgroup2 sleeps in the signal path ("S", and a
        # fatal signal still kills it): what shows it frozen is that it
        # makes no progress until thawed.
        counter = tmp_path / "counter"
        loop = (
            "import itertools, time\n"
            "for i in itertools.count():\n"
            f"    open({str(counter)!r}, 'w').write(str(i))\n"
            "    time.sleep(0.01)\n"
        )
        manager.create()
        proc = procs(sys.executable, "-I", "-S", "-c", loop)  # one process, no children
        manager.add(proc.pid)
        assert _wait_until(lambda: counter.exists() and counter.read_text().strip() != "")
        manager.freeze(timeout=5)
        assert manager.freezer_state() == FreezerState.FROZEN
        with open(os.path.join(manager.paths["unified"], "cgroup.events")) as f:
            assert "frozen 1" in f.read().split("\n")
        frozen_at = counter.read_text()
        time.sleep(0.2)
        assert counter.read_text() == frozen_at
        manager.thaw(timeout=5)
        assert manager.freezer_state() == FreezerState.THAWED
        assert _wait_until(lambda: counter.read_text() not in ("", frozen_at))
