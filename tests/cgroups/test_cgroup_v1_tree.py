"""The v1 freezer loop against a freezer directory in tmp_path.

A real kernel freezes an idle task at once, so the FREEZING path (runc's
retry loop, the timeout, the thaw on giving up) is driven here by a
freezer.state that keeps reading FREEZING for as long as the test says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cgroups import FreezerState, V1Manager, files
from engine.cgroups.errors import CgroupError
from engine.cgroups.resources import Resources


class StickyFreezer:
    """Reads of freezer.state answer FREEZING while ``pending`` > 0."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pending: int) -> None:
        self.pending = pending
        self.writes: list[str] = []
        real_read, real_write = files.read_text, files.write

        def read_text(directory: str, name: str, *, controller: str) -> str:
            if name == "freezer.state" and self.pending > 0:
                self.pending -= 1
                return "FREEZING\n"
            return real_read(directory, name, controller=controller)

        def write(directory: str, name: str, value: str, *, controller: str) -> None:
            if name == "freezer.state":
                self.writes.append(value)
            real_write(directory, name, value, controller=controller)

        monkeypatch.setattr(files, "read_text", read_text)
        monkeypatch.setattr(files, "write", write)


@pytest.fixture
def freezer(tmp_path: Path) -> Path:
    directory = tmp_path / "freezer" / "runlog" / "c1"
    directory.mkdir(parents=True)
    (directory / "freezer.state").write_text("THAWED\n")
    (directory / "freezer.self_freezing").write_text("0\n")
    return directory


def test_freeze_retries_while_the_kernel_says_freezing(
    freezer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sticky = StickyFreezer(monkeypatch, pending=3)
    V1Manager({"freezer": str(freezer)}).freeze(timeout=5)
    assert sticky.writes == ["FROZEN"] * 4
    assert (freezer / "freezer.state").read_text() == "FROZEN"


def test_freeze_thaws_now_and_then_as_runc_does(
    freezer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sticky = StickyFreezer(monkeypatch, pending=60)
    V1Manager({"freezer": str(freezer)}).freeze(timeout=5)
    # runc fs/freezer.go: every 50th attempt thaws before freezing again.
    assert sticky.writes.count("THAWED") == 1
    assert sticky.writes.index("THAWED") == 49
    assert sticky.writes[-1] == "FROZEN"


def test_a_freeze_that_never_completes_times_out_thawed(
    freezer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sticky = StickyFreezer(monkeypatch, pending=10**9)
    with pytest.raises(CgroupError, match="still FREEZING") as caught:
        V1Manager({"freezer": str(freezer)}).freeze(timeout=0.1)
    assert caught.value.controller == "freezer"
    assert sticky.writes[-1] == "THAWED"
    assert (freezer / "freezer.state").read_text() == "THAWED"


def test_freezer_state_readings(freezer: Path) -> None:
    manager = V1Manager({"freezer": str(freezer)})
    (freezer / "freezer.state").write_text("FREEZING\n")
    assert manager.freezer_state() == FreezerState.FREEZING
    (freezer / "freezer.state").write_text("FROZEN\n")
    (freezer / "freezer.self_freezing").write_text("1\n")
    assert manager.freezer_state() == FreezerState.FROZEN
    # Frozen only because an ancestor is: not this container's pause (runc).
    (freezer / "freezer.self_freezing").write_text("0\n")
    assert manager.freezer_state() == FreezerState.THAWED


def test_no_freezer_hierarchy_cannot_pause(tmp_path: Path) -> None:
    manager = V1Manager({"memory": str(tmp_path / "memory" / "c1")})
    assert manager.freezer_state() == FreezerState.THAWED
    with pytest.raises(CgroupError, match="no freezer cgroup hierarchy"):
        manager.freeze()


def test_create_and_destroy_every_directory_once(tmp_path: Path) -> None:
    shared = str(tmp_path / "cpu,cpuacct" / "runlog" / "c1")
    manager = V1Manager(
        {"cpu": shared, "cpuacct": shared, "pids": str(tmp_path / "pids" / "runlog" / "c1")}
    )
    assert not manager.exists()
    manager.create()
    assert (tmp_path / "cpu,cpuacct" / "runlog" / "c1").is_dir()
    assert (tmp_path / "pids" / "runlog" / "c1").is_dir()
    manager.destroy()
    assert not manager.exists()
    # The parent stays: other containers live there too.
    assert (tmp_path / "pids" / "runlog").is_dir()


def test_make_says_what_it_made(tmp_path: Path) -> None:
    leaf = tmp_path / "pids" / "runlog" / "c1"
    manager = V1Manager({"pids": str(leaf)})
    made = [str(leaf.parent.parent), str(leaf.parent), str(leaf)]
    assert manager.make() == made  # parents first
    assert manager.make() == []
    (leaf.parent / "c2").mkdir()
    sibling = V1Manager({"pids": str(leaf.parent / "c3")})
    assert sibling.make() == [str(leaf.parent / "c3")]


def _cpuset(directory: Path, cpus: str, mems: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpuset.cpus").write_text(cpus)
    (directory / "cpuset.mems").write_text(mems)


def test_an_empty_cpuset_takes_its_values_from_the_nearest_ancestor(tmp_path: Path) -> None:
    # As the kernel makes them: a new v1 cpuset cgroup's files are empty.
    top = tmp_path / "cpuset"
    _cpuset(top, "0-3\n", "0\n")
    _cpuset(top / "runlog", "\n", "\n")
    _cpuset(top / "runlog" / "c1", "\n", "\n")
    V1Manager({"cpuset": str(top / "runlog" / "c1")}).create()
    for directory in (top / "runlog", top / "runlog" / "c1"):
        assert (directory / "cpuset.cpus").read_text() == "0-3"
        assert (directory / "cpuset.mems").read_text() == "0"


def test_cgroup_files_are_read_as_ascii_without_a_codec(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "cgroup.procs").write_bytes(b"12\n\xff34\n")
    code = (
        "import sys; from engine.cgroups import files; "
        f"print(ascii(files.read_text({str(tmp_path)!r}, 'cgroup.procs', controller='pids'))); "
        "print('encodings.ascii' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout.splitlines() == ["'12\\n\\ufffd34\\n'", "False"]
    with pytest.raises(CgroupError, match=r"cannot read .*missing: no such file"):
        files.read_text(str(tmp_path), "missing", controller="pids")


def test_the_v1_memory_knobs_are_written_where_the_kernel_has_their_file(
    tmp_path: Path,
) -> None:
    memory = tmp_path / "memory" / "runlog" / "c1"
    memory.mkdir(parents=True)
    for name in ("memory.limit_in_bytes", "memory.oom_control", "memory.swappiness"):
        (memory / name).write_text("0\n")
    knobs = Resources(memory_swappiness=10, memory_disable_oom_killer=True, memory_kernel_tcp=4096)
    warnings = V1Manager({"memory": str(memory)}).apply(knobs)
    assert (memory / "memory.oom_control").read_text() == "1"
    assert (memory / "memory.swappiness").read_text() == "10"
    # A kernel built without TCP kernel memory accounting has no such file.
    assert warnings == [
        "linux.resources.memory.kernelTCP ignored: this kernel has no "
        "memory.kmem.tcp.limit_in_bytes"
    ]


BLOCK_IO = Resources.from_oci(
    {
        "blockIO": {
            "weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 600}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}],
        }
    }
)


@pytest.mark.parametrize("scheduler", ["", "bfq."])
def test_block_io_goes_to_the_weight_files_the_kernel_has(tmp_path: Path, scheduler: str) -> None:
    """runc: CFQ's blkio.weight where it exists, else BFQ's blkio.bfq.weight."""
    blkio = tmp_path / "blkio" / "c1"
    blkio.mkdir(parents=True)
    names = (f"blkio.{scheduler}weight", f"blkio.{scheduler}weight_device")
    for name in (*names, "blkio.throttle.read_bps_device"):
        (blkio / name).write_text("")
    assert V1Manager({"blkio": str(blkio)}).apply(BLOCK_IO) == []
    assert (blkio / names[0]).read_text() == "500"
    assert (blkio / names[1]).read_text() == "8:0 600"
    assert (blkio / "blkio.throttle.read_bps_device").read_text() == "8:0 4096"


def test_block_io_without_a_weight_file_fails_naming_it(tmp_path: Path) -> None:
    blkio = tmp_path / "blkio" / "c1"
    blkio.mkdir(parents=True)
    with pytest.raises(CgroupError, match=r"blockIO \(weight\): .*/blkio\.bfq\.weight does not"):
        V1Manager({"blkio": str(blkio)}).apply(BLOCK_IO)


def test_network_class_and_priorities(tmp_path: Path) -> None:
    cls, prio = tmp_path / "net_cls" / "c1", tmp_path / "net_prio" / "c1"
    for directory, name in ((cls, "net_cls.classid"), (prio, "net_prio.ifpriomap")):
        directory.mkdir(parents=True)
        (directory / name).write_text("")
    r = Resources.from_oci(
        {"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 2}]}}
    )
    assert V1Manager({"net_cls": str(cls), "net_prio": str(prio)}).apply(r) == []
    assert (cls / "net_cls.classid").read_text() == "1048577"
    assert (prio / "net_prio.ifpriomap").read_text() == "lo 2"


def test_network_without_a_net_cls_hierarchy_fails(tmp_path: Path) -> None:
    r = Resources.from_oci({"network": {"classID": 1}})
    with pytest.raises(CgroupError, match="no net_cls cgroup hierarchy is mounted"):
        V1Manager({"memory": str(tmp_path)}).apply(r)
