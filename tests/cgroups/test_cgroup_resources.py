"""Resources.from_oci: linux.resources of config.json, and its errors."""

from __future__ import annotations

import pytest

from engine.cgroups.errors import CgroupError, ResourcesError
from engine.cgroups.resources import DeviceRule, HugepageLimit, Resources, from_oci
from engine.errors import RunlogError

# The example of runtime-spec config-linux.md, trimmed to what runlog reads
# plus one field it does not apply.
SPEC_EXAMPLE: dict[str, object] = {
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
    ],
    "memory": {"limit": 536870912, "reservation": 536870912, "swap": 536870912, "swappiness": 0},
    "cpu": {"shares": 1024, "quota": 1000000, "period": 500000, "cpus": "2-3", "mems": "0-7"},
    "pids": {"limit": 32771},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}, {"pageSize": "64KB", "limit": 1}],
    "blockIO": {"weight": 10},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
}


def test_the_spec_example_parses() -> None:
    r = Resources.from_oci(SPEC_EXAMPLE)
    assert r.memory_limit == r.memory_reservation == r.memory_swap == 536870912
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period) == (1024, 1000000, 500000)
    assert (r.cpu_cpus, r.cpu_mems) == ("2-3", "0-7")
    assert r.pids_limit == 32771
    assert r.hugepage_limits == (HugepageLimit("2MB", 209715200), HugepageLimit("64KB", 1))
    assert r.devices == (
        DeviceRule(allow=False, type="a", major=None, minor=None, access="rwm"),
        DeviceRule(allow=True, type="c", major=10, minor=229, access="rw"),
        DeviceRule(allow=True, type="b", major=8, minor=0, access="r"),
    )
    assert r.memory_swappiness == 0
    assert r.blkio_weight == 10
    assert r.unsupported == ("linux.resources.rdma",)
    assert r.ignored() == ["linux.resources.rdma ignored: runlog does not apply it"]


def test_the_v1_memory_knobs_in_runc_order() -> None:
    r = from_oci(
        {
            "memory": {
                "kernel": 1 << 20,
                "kernelTCP": 1 << 21,
                "swappiness": 10,
                "disableOOMKiller": True,
            }
        }
    )
    where = "linux.resources.memory"
    assert r.v1_memory_knobs() == [
        (f"{where}.disableOOMKiller", "memory.oom_control", "1"),
        (f"{where}.swappiness", "memory.swappiness", "10"),
        (f"{where}.kernelTCP", "memory.kmem.tcp.limit_in_bytes", str(1 << 21)),
    ]
    assert r.controllers() == ["memory"]
    # runc 1.1: "Kernel memory settings are ignored".
    assert r.ignored() == [
        f"{where}.kernel ignored: kernel memory limits are deprecated (runc 1.1 ignores them too)"
    ]


def test_the_oom_killer_left_on_is_nothing_to_write() -> None:
    r = from_oci({"memory": {"disableOOMKiller": False, "kernelTCP": 0}})
    assert r.v1_memory_knobs() == []
    assert r.controllers() == []


@pytest.mark.parametrize(
    ("memory", "field", "problem"),
    [
        (
            {"swappiness": 101},
            "swappiness",
            "invalid memory swappiness value: 101 (valid range is 0-100)",
        ),
        ({"swappiness": -1}, "swappiness", "-1 is out of range (at least 0)"),
        ({"disableOOMKiller": 1}, "disableOOMKiller", "expected true or false, got 1"),
        ({"kernelTCP": "1M"}, "kernelTCP", "expected an integer, got str '1M'"),
    ],
)
def test_a_bad_memory_knob_is_named(memory: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(ResourcesError) as caught:
        from_oci({"memory": memory})
    assert caught.value.field == f"linux.resources.memory.{field}"
    assert caught.value.problem == problem


def test_nothing_given_is_no_limit() -> None:
    assert from_oci(None) == Resources()
    assert from_oci({}) == Resources()
    assert Resources().controllers() == []


def test_zero_means_unset_as_in_runc() -> None:
    r = from_oci({"memory": {"limit": 0}, "pids": {"limit": 0}, "cpu": {"shares": 0, "quota": 0}})
    assert r == Resources()


def test_minus_one_stays_unlimited() -> None:
    r = from_oci({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}})
    assert (r.memory_limit, r.memory_swap, r.pids_limit) == (-1, -1, -1)


def test_controllers_in_runc_order() -> None:
    r = Resources.from_oci(SPEC_EXAMPLE)
    assert r.controllers() == ["cpuset", "devices", "memory", "cpu", "pids", "blkio", "hugetlb"]
    assert Resources(pids_limit=5).controllers() == ["pids"]


def test_device_rule_lines_for_v1() -> None:
    assert DeviceRule(allow=False).v1_line() == "a *:* rwm"
    assert DeviceRule(allow=True, type="c", major=136, access="rw").v1_line() == "c 136:* rw"
    wildcard = from_oci({"devices": [{"allow": True, "type": "c", "major": -1, "minor": -1}]})
    assert wildcard.devices[0].v1_line() == "c *:* rwm"


@pytest.mark.parametrize(
    ("resources", "field", "problem"),
    [
        ({"memory": {"limit": "1g"}}, "linux.resources.memory.limit", "expected an integer"),
        ({"memory": {"swap": 1.5}}, "linux.resources.memory.swap", "expected an integer"),
        ({"memory": {"limit": True}}, "linux.resources.memory.limit", "got bool"),
        ({"memory": {"limit": -2}}, "linux.resources.memory.limit", "out of range"),
        ({"memory": []}, "linux.resources.memory", "expected an object"),
        ({"pids": {"limit": "10"}}, "linux.resources.pids.limit", "expected an integer"),
        ({"cpu": {"cpus": 3}}, "linux.resources.cpu.cpus", "expected a string"),
        ({"cpu": {"shares": -5}}, "linux.resources.cpu.shares", "out of range"),
        ({"devices": {}}, "linux.resources.devices", "expected an array"),
        ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow", "true or false"),
        (
            {"devices": [{"allow": True}, {"allow": True, "type": "x"}]},
            "linux.resources.devices[1].type",
            "'a', 'b' or 'c'",
        ),
        (
            {"devices": [{"allow": True, "access": "rwx"}]},
            "linux.resources.devices[0].access",
            "rwm",
        ),
        (
            {"devices": [{"allow": True, "major": "8"}]},
            "linux.resources.devices[0].major",
            "expected an integer",
        ),
        (
            {"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
            "linux.resources.hugepageLimits[0].pageSize",
            "like '2MB'",
        ),
        (
            {"hugepageLimits": [{"pageSize": "2MB"}]},
            "linux.resources.hugepageLimits[0].limit",
            "required",
        ),
    ],
)
def test_wrong_types_name_the_field(resources: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(ResourcesError) as caught:
        from_oci(resources)
    err = caught.value
    assert err.field == field
    assert problem in err.problem
    assert str(err).startswith(f"config.json {field}: ")
    assert "fix the container's config.json" in str(err)


def test_resources_error_is_a_cgroup_error_of_runlog() -> None:
    assert issubclass(ResourcesError, CgroupError)
    assert issubclass(CgroupError, RunlogError)
    err = CgroupError("boom", path="/sys/fs/cgroup/memory/x", controller="memory")
    assert (err.path, err.controller, str(err)) == ("/sys/fs/cgroup/memory/x", "memory", "boom")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ResourcesError, match=r"^config.json linux.resources: expected an object"):
        from_oci(["memory"])  # type: ignore[arg-type]


def test_resources_are_frozen() -> None:
    r = Resources(pids_limit=3)
    with pytest.raises(AttributeError):
        r.pids_limit = 4  # type: ignore[misc]


def test_block_io_and_network_in_runc_order() -> None:
    r = from_oci(
        {
            "blockIO": {
                "weight": 500,
                "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 0}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
            },
            "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
        }
    )
    assert (r.blkio_weight, r.blkio_leaf_weight) == (500, 300)
    assert [(suffix, limit.line()) for suffix, limit in r.blkio_devices] == [
        ("weight_device", "8:0 600"),
        ("throttle.read_bps_device", f"8:0 {1 << 20}"),
        ("throttle.write_iops_device", "8:16 100"),
    ]
    assert (r.net_class_id, r.net_priorities) == (0x100001, (("eth0", 5),))
    assert r.controllers() == ["blkio", "net_cls", "net_prio"]
    assert r.unsupported == ()


@pytest.mark.parametrize(
    ("top", "field"),
    [
        ({"blockIO": {"throttleReadBpsDevice": [{"rate": 1}]}}, "throttleReadBpsDevice[0]"),
        ({"blockIO": {"weight": "high"}}, "weight"),
        ({"network": {"priorities": [{"name": "eth0"}]}}, "priorities[0]"),
        ({"network": {"classID": -1}}, "classID"),
    ],
)
def test_a_bad_block_io_or_network_field_is_named(top: dict[str, object], field: str) -> None:
    with pytest.raises(ResourcesError) as caught:
        from_oci(top)
    assert caught.value.field == f"linux.resources.{next(iter(top))}.{field}"
