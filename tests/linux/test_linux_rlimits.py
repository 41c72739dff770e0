"""Rlimit checks and messages, in this process: nothing here changes a limit."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from engine.errors import RunlogError
from engine.linux import caps, rlimits
from engine.linux.rlimits import UNLIMITED, RlimitError
from engine.oci.model import Rlimit

NO_CAP = "CAP_SYS_RESOURCE is not in this process's capability bounding set"


def _hard(kind: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return UNLIMITED if hard == resource.RLIM_INFINITY else hard


def _nr_open() -> int:
    return int(Path("/proc/sys/fs/nr_open").read_text())


def test_refusal_soft_above_hard() -> None:
    reason = rlimits.refusal(
        Rlimit("RLIMIT_CORE", 10, 5), 100, lacking_sys_resource="", nr_open=None
    )
    assert reason == "the soft limit is above the hard limit; make soft at most hard"


def test_refusal_raising_hard_without_the_capability() -> None:
    limit = Rlimit("RLIMIT_NOFILE", 1024, 40000)
    reason = rlimits.refusal(limit, 20000, lacking_sys_resource=NO_CAP, nr_open=1048576)
    assert reason == (
        "raising a hard limit needs CAP_SYS_RESOURCE, and "
        f"{NO_CAP}; ask for a hard limit of at most 20000"
    )
    # With the capability, or without raising, nothing to refuse.
    assert rlimits.refusal(limit, 20000, lacking_sys_resource="", nr_open=1048576) is None
    assert rlimits.refusal(limit, 40000, lacking_sys_resource=NO_CAP, nr_open=None) is None


def test_refusal_nofile_above_nr_open_even_with_the_capability() -> None:
    limit = Rlimit("RLIMIT_NOFILE", 1024, UNLIMITED)
    reason = rlimits.refusal(limit, UNLIMITED, lacking_sys_resource="", nr_open=1048576)
    assert reason == (
        "the kernel caps RLIMIT_NOFILE at fs.nr_open (1048576); "
        "ask for a hard limit of at most 1048576"
    )
    # nr_open concerns NOFILE only.
    other = Rlimit("RLIMIT_CORE", 1024, UNLIMITED)
    assert rlimits.refusal(other, UNLIMITED, lacking_sys_resource="", nr_open=1) is None


def test_error_message_names_limit_asked_current_and_why() -> None:
    err = RlimitError("RLIMIT_NOFILE", 1024, 40000, 20000, "because", 1)
    assert isinstance(err, RunlogError)
    assert str(err) == (
        "cannot set RLIMIT_NOFILE to soft 1024, hard 40000 (current hard limit 20000): because"
    )
    assert (err.type, err.soft, err.hard, err.current_hard, err.errno) == (
        "RLIMIT_NOFILE",
        1024,
        40000,
        20000,
        1,
    )
    assert "hard unlimited (current hard limit unlimited)" in str(
        RlimitError("RLIMIT_CORE", 0, UNLIMITED, UNLIMITED, "x")
    )


def test_check_accepts_limits_at_or_below_the_current_ones() -> None:
    nofile = _hard(resource.RLIMIT_NOFILE)
    rlimits.check(
        [
            Rlimit("RLIMIT_NOFILE", min(nofile, 1024), nofile),
            Rlimit("RLIMIT_CORE", 0, 0),
        ]
    )


def test_check_refuses_nofile_above_nr_open() -> None:
    nr_open = _nr_open()
    with pytest.raises(RlimitError, match=rf"fs\.nr_open \({nr_open}\)") as info:
        rlimits.check([Rlimit("RLIMIT_CORE", 0, 0), Rlimit("RLIMIT_NOFILE", 1024, nr_open + 1)])
    assert info.value.type == "RLIMIT_NOFILE"
    assert info.value.current_hard == _hard(resource.RLIMIT_NOFILE)


def test_check_refuses_soft_above_hard() -> None:
    with pytest.raises(RlimitError, match="soft limit is above the hard limit"):
        rlimits.check([Rlimit("RLIMIT_CORE", 10, 5)])


def test_check_raising_hard_depends_on_cap_sys_resource() -> None:
    current = _hard(resource.RLIMIT_NOFILE)
    if current >= _nr_open():
        pytest.skip("the NOFILE hard limit is already at fs.nr_open")
    asked = [Rlimit("RLIMIT_NOFILE", 1024, current + 1)]
    why = caps.lacking("CAP_SYS_RESOURCE")
    if not why:
        rlimits.check(asked)  # the kernel would allow it: so does the check
        return
    with pytest.raises(RlimitError) as info:
        rlimits.check(asked)
    assert str(info.value) == (
        f"cannot set RLIMIT_NOFILE to soft 1024, hard {current + 1} "
        f"(current hard limit {current}): raising a hard limit needs CAP_SYS_RESOURCE, "
        f"and {why}; ask for a hard limit of at most {current}"
    )


def test_check_in_a_user_namespace_refuses_any_raise() -> None:
    current = _hard(resource.RLIMIT_NOFILE)
    if current >= _nr_open():
        pytest.skip("the NOFILE hard limit is already at fs.nr_open")
    with pytest.raises(RlimitError, match="inside a new user namespace"):
        rlimits.check([Rlimit("RLIMIT_NOFILE", 0, current + 1)], user_namespace=True)
    rlimits.check([Rlimit("RLIMIT_NOFILE", 0, current)], user_namespace=True)
