"""Identity errors and the order of the final steps: no privilege needed."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.errors import RunlogError
from engine.linux import caps, finalize, identity, rlimits
from engine.linux.identity import IdentityError
from engine.oci.model import Capabilities, Process, Rlimit, User


def test_error_message_and_context() -> None:
    err = IdentityError("setresuid", 65534, "why", errno.EPERM)
    assert isinstance(err, RunlogError)
    assert str(err) == "setresuid 65534: why"
    assert (err.step, err.value, err.reason, err.errno) == ("setresuid", 65534, "why", 1)


def test_oom_score_adj_out_of_range_is_refused_clearly() -> None:
    before = Path("/proc/self/oom_score_adj").read_text()
    with pytest.raises(IdentityError) as info:
        identity.set_oom_score_adj(1001)
    assert str(info.value) == (
        "oom_score_adj 1001: out of range; oom_score_adj goes from -1000 to 1000"
    )
    assert info.value.errno == errno.EINVAL
    assert Path("/proc/self/oom_score_adj").read_text() == before


def test_oom_score_adj_of_a_missing_process_names_the_path() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    with pytest.raises(IdentityError, match=rf"/proc/{missing}/oom_score_adj") as info:
        identity.set_oom_score_adj(0, pid=missing)
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EINVAL, "uid 70000 is not mapped in the user namespace; add it to linux.uid"),
        (errno.EPERM, "not permitted: changing uid needs CAP_SETUID in the effective set"),
        (errno.EAGAIN, "setresuid 70000: kernel says no"),
    ],
)
def test_id_change_errors_say_what_to_do(code: int, expected: str) -> None:
    def refuse(*ids: int) -> None:
        assert ids == (70000, 70000, 70000)
        raise OSError(code, "kernel says no")

    with pytest.raises(IdentityError) as info:
        identity._set_id("setresuid", refuse, 70000, "uid")
    assert str(info.value).startswith("setresuid 70000: ")
    assert expected in str(info.value)
    assert info.value.errno == code


def _process(**changes: object) -> Process:
    fields: dict[str, object] = {
        "args": ("/bin/true",),
        "cwd": "/",
        "user": User(uid=65534, gid=65534),
        "capabilities": Capabilities(effective=("CAP_KILL",), permitted=("CAP_KILL",)),
        "rlimits": (Rlimit("RLIMIT_CORE", 0, 0),),
        "oom_score_adj": 100,
    }
    fields.update(changes)
    return Process(**fields)  # type: ignore[arg-type]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def record(name: str, result: object = None) -> object:
        def step(*args: object, **kwargs: object) -> object:
            seen.append(name)
            return result

        return step

    monkeypatch.setattr(caps, "drop_bounding", record("caps.drop_bounding"))
    monkeypatch.setattr(caps, "apply", record("caps.apply", ["a note"]))
    monkeypatch.setattr(rlimits, "apply", record("rlimits.apply"))
    monkeypatch.setattr(identity, "apply", record("identity.apply"))
    monkeypatch.setattr(identity, "set_oom_score_adj", record("identity.set_oom_score_adj"))
    return seen


def test_prepare_exec_order(calls: list[str]) -> None:
    notes = finalize.prepare_exec(_process())
    assert calls == [
        "rlimits.apply",
        "identity.set_oom_score_adj",
        "caps.drop_bounding",
        "identity.apply",
        "caps.apply",
    ]
    assert notes == ["a note"]


def test_prepare_exec_leaves_out_what_is_not_asked(calls: list[str]) -> None:
    finalize.prepare_exec(_process(oom_score_adj=None), set_rlimits=False)
    assert calls == ["caps.drop_bounding", "identity.apply", "caps.apply"]


def test_prepare_exec_checks_the_sets_before_changing_anything(calls: list[str]) -> None:
    bad = Capabilities(effective=("CAP_KILL",), permitted=())
    with pytest.raises(caps.CapabilityError, match="effective CAP_KILL"):
        finalize.prepare_exec(_process(capabilities=bad))
    assert calls == []


def test_seccomp_filtered_reads_the_status_line(tmp_path: Path) -> None:
    from engine.linux.identity import seccomp_filtered

    status = tmp_path / "status"
    status.write_text("Name:\tsh\nSeccomp:\t2\nSeccomp_filters:\t1\n")
    assert seccomp_filtered(str(status))
    status.write_text("Name:\tsh\nSeccomp:\t0\n")
    assert not seccomp_filtered(str(status))
    assert not seccomp_filtered(str(tmp_path / "missing"))
