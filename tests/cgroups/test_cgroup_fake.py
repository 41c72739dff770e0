"""FakeCgroupManager's own controls: the call record and injected failures."""

from __future__ import annotations

import pytest

from engine.cgroups import FreezerState
from engine.cgroups.errors import CgroupError
from engine.cgroups.fake import FakeCgroupManager
from engine.cgroups.resources import Resources
from engine.errors import UnsupportedError


def test_calls_are_recorded_in_order_with_their_arguments() -> None:
    fake = FakeCgroupManager()
    limits = Resources(pids_limit=3)
    fake.create()
    fake.apply(limits)
    fake.add(4242)
    fake.freeze(timeout=1.5)
    assert fake.calls == [
        ("create", ()),
        ("apply", (limits,)),
        ("add", (4242,)),
        ("freeze", (1.5,)),
    ]
    assert fake.applied == [limits]


def test_an_injected_failure_raises_a_cgroup_error_until_healed() -> None:
    fake = FakeCgroupManager("/runlog/c9")
    fake.fail("create")
    for _ in range(2):
        with pytest.raises(CgroupError, match="create: failure injected") as caught:
            fake.create()
        assert caught.value.path == "/runlog/c9"
    assert not fake.exists()
    fake.heal("create")
    fake.create()
    assert fake.exists()


def test_a_failure_can_be_limited_and_chosen() -> None:
    fake = FakeCgroupManager()
    fake.create()
    fake.fail("freeze", UnsupportedError("no freezer"), times=1)
    with pytest.raises(UnsupportedError):
        fake.freeze()
    fake.freeze()
    assert fake.freezer_state() == FreezerState.FROZEN


def test_failing_an_unknown_method_is_a_test_bug() -> None:
    with pytest.raises(ValueError, match="frezee"):
        FakeCgroupManager().fail("frezee")


def test_a_sticking_freeze_times_out_and_leaves_the_cgroup_thawed() -> None:
    fake = FakeCgroupManager()
    fake.create()
    fake.add(7)
    fake.freeze_sticks = True
    with pytest.raises(CgroupError, match="FREEZING"):
        fake.freeze(timeout=0.5)
    assert fake.freezer_state() == FreezerState.THAWED


def test_destroy_forgets_limits_and_state() -> None:
    fake = FakeCgroupManager()
    fake.create()
    fake.apply(Resources(memory_limit=1 << 20))
    fake.freeze()
    fake.destroy()
    assert not fake.exists()
    assert fake.freezer_state() == FreezerState.THAWED
    fake.create()
    memory = fake.stats()["memory"]
    assert isinstance(memory, dict) and memory["usage"]["limit"] == 0
