"""The final steps applied for real, each in a forked child that reports back.

The child applies, then writes what the kernel says (/proc/self/status,
getrlimit, getgroups, getresuid…) to a pipe as JSON and leaves with
``os._exit``; the parent asserts. Needs root: CI runs these as root.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import RunlogError
from engine.linux import caps, finalize, identity, rlimits
from engine.linux.syscalls import prctl
from engine.oci.model import Capabilities, Process, Rlimit, User

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

# runc's default spec (`runc spec`): bounding = effective = permitted.
RUNC_DEFAULT = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
RUNC_DEFAULT_HEX = "0000000020000420"  # bits 5, 10 and 29
NOBODY = 65534
PR_GET_KEEPCAPS = 7


def _children() -> set[str]:
    path = Path(f"/proc/self/task/{threading.get_native_id()}/children")
    return set(path.read_text().split()) if path.exists() else set()


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = _children()
    yield
    assert _children() == before


def _read(proc: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY, dir_fd=proc)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _observe(proc: int) -> dict[str, Any]:
    status = _read(proc, "status")
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {
        "raw": {
            key: fields[key]
            for key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Umask")
        },
        "sets": {key: sorted(names) for key, names in caps.parse_status(status).items()},
        "resuid": list(os.getresuid()),
        "resgid": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "oom_score_adj": int(_read(proc, "oom_score_adj")),
        "keepcaps": prctl(PR_GET_KEEPCAPS),
    }


def in_child(work: Callable[[], object], root: Path | None = None) -> dict[str, Any]:
    """Run ``work`` in a forked child (chrooted into ``root`` if given); its
    result (or its error) and what the kernel reports afterwards."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(read_fd)
            # Opened before any chroot: the child's own /proc entry.
            proc = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
            if root is not None:
                os.chroot(root)
                os.chdir("/")
            report: dict[str, Any]
            try:
                report = {"result": work()}
            except RunlogError as err:
                report = {
                    "error": type(err).__name__,
                    "message": str(err),
                    "errno": getattr(err, "errno", None),
                }
            report.update(_observe(proc))
            with os.fdopen(write_fd, "w") as out:
                json.dump(report, out)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed to report"
    seen: dict[str, Any] = json.loads(text)
    return seen


def test_runc_default_set_exactly() -> None:
    asked = Capabilities(bounding=RUNC_DEFAULT, effective=RUNC_DEFAULT, permitted=RUNC_DEFAULT)
    seen = in_child(lambda: caps.apply(asked))
    assert seen["result"] == []
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert seen["raw"][field] == RUNC_DEFAULT_HEX, field
    assert seen["raw"]["CapInh"] == seen["raw"]["CapAmb"] == "0000000000000000"
    assert seen["sets"]["effective"] == sorted(RUNC_DEFAULT)
    assert seen["resuid"] == [0, 0, 0]


def test_no_capabilities_object_means_none_at_all() -> None:
    # runc: a process without "capabilities" gets an empty set of each kind.
    seen = in_child(lambda: finalize.prepare_exec(Process(args=("/bin/true",), cwd="/")))
    assert seen["result"] == []
    assert {seen["raw"][f] for f in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")} == {
        "0000000000000000"
    }
    assert seen["resuid"] == [0, 0, 0]
    assert seen["groups"] == []
    assert seen["raw"]["Umask"] == "0022"  # runc's default
    assert seen["raw"]["NoNewPrivs"] == "0"


def test_prepare_exec_as_nobody_keeps_the_asked_capabilities() -> None:
    process = Process(
        args=("/bin/true",),
        cwd="/",
        user=User(uid=NOBODY, gid=NOBODY, umask=0o027, additional_gids=(100, 5)),
        capabilities=Capabilities(
            bounding=(*RUNC_DEFAULT, "CAP_NET_RAW"),
            effective=RUNC_DEFAULT,
            permitted=RUNC_DEFAULT,
            inheritable=("CAP_NET_BIND_SERVICE",),
            ambient=("CAP_NET_BIND_SERVICE",),
        ),
        rlimits=(Rlimit("RLIMIT_NOFILE", 256, 512), Rlimit("RLIMIT_CORE", 0, 0)),
        no_new_privileges=True,
        oom_score_adj=500,
    )
    seen = in_child(lambda: finalize.prepare_exec(process))
    assert "error" not in seen, seen.get("message")
    assert seen["resuid"] == [NOBODY] * 3
    assert seen["resgid"] == [NOBODY] * 3
    assert seen["groups"] == [5, 100]
    assert seen["sets"]["bounding"] == sorted((*RUNC_DEFAULT, "CAP_NET_RAW"))
    assert seen["sets"]["effective"] == seen["sets"]["permitted"] == sorted(RUNC_DEFAULT)
    assert seen["sets"]["inheritable"] == seen["sets"]["ambient"] == ["CAP_NET_BIND_SERVICE"]
    assert seen["raw"]["CapAmb"] == "0000000000000400"
    assert seen["raw"]["NoNewPrivs"] == "1"
    assert seen["raw"]["Umask"] == "0027"
    assert seen["nofile"] == [256, 512]
    assert seen["core"] == [0, 0]
    assert seen["oom_score_adj"] == 500
    assert seen["keepcaps"] == 0  # cleared again after the switch, as runc does


def test_dropping_capabilities_before_the_user_switch_fails_clearly() -> None:
    # The wrong order: caps.apply first leaves no CAP_SETGID for the switch.
    asked = Capabilities(bounding=RUNC_DEFAULT, effective=RUNC_DEFAULT, permitted=RUNC_DEFAULT)

    def wrong_order_valid_sets() -> None:
        caps.apply(asked)
        identity.apply(User(uid=NOBODY, gid=NOBODY), no_new_privileges=False)

    seen = in_child(wrong_order_valid_sets)
    assert seen["error"] == "IdentityError"
    assert seen["message"] == (
        "setgroups []: not permitted: setgroups needs CAP_SETGID in the effective set; "
        "change user before dropping capabilities"
    )
    assert seen["resuid"] == [0, 0, 0]


def test_a_dropped_capability_cannot_come_back() -> None:
    without_nice = tuple(caps.current()["bounding"] - {"CAP_SYS_NICE"})

    def drop_then_ask_again() -> None:
        caps.apply(
            Capabilities(bounding=without_nice, effective=without_nice, permitted=without_nice)
        )
        caps.apply(Capabilities(bounding=without_nice, permitted=("CAP_SYS_NICE",)))

    seen = in_child(drop_then_ask_again)
    assert seen["error"] == "CapabilityError"
    assert seen["message"] == (
        "capabilities: permitted CAP_SYS_NICE: this process does not hold them "
        "(not in the bounding set)"
    )
    assert seen["sets"]["bounding"] == sorted(without_nice)
    assert seen["sets"]["permitted"] == sorted(without_nice)


def test_asking_a_capability_absent_from_the_bounding_set_is_noted() -> None:
    def drop_then_ask_again() -> list[str]:
        caps.drop_bounding(Capabilities(bounding=("CAP_KILL",)))
        return caps.apply(Capabilities(bounding=("CAP_SYS_NICE", "CAP_KILL")))

    seen = in_child(drop_then_ask_again)
    assert seen["result"] == [
        "capabilities: bounding: CAP_SYS_NICE not in this process's bounding set; "
        "it cannot be added back"
    ]
    assert seen["sets"]["bounding"] == ["CAP_KILL"]


def test_names_the_kernel_does_not_know_are_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(caps, "last_cap", lambda: 38)  # as on a kernel before 5.8
    asked = ("CAP_KILL", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
    seen = in_child(
        lambda: caps.apply(Capabilities(bounding=asked, effective=asked, permitted=asked))
    )
    assert seen["result"] == [
        f"capabilities: {key}: skipped CAP_BPF, CAP_CHECKPOINT_RESTORE: "
        "unknown to this kernel (cap_last_cap 38)"
        for key in ("bounding", "effective", "permitted")
    ]
    assert seen["sets"]["effective"] == seen["sets"]["permitted"] == ["CAP_KILL"]


def test_raising_nofile_hard_limit_fails_with_the_checks_message() -> None:
    current = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    asked = [Rlimit("RLIMIT_NOFILE", 1024, current + 1)]
    seen = in_child(lambda: rlimits.apply(asked))
    if not caps.lacking("CAP_SYS_RESOURCE"):
        assert seen["nofile"] == [1024, current + 1]
        return
    # This machine: CAP_SYS_RESOURCE is not in the bounding set.
    assert seen["error"] == "RlimitError"
    assert seen["errno"] == 1
    assert f"current hard limit {current}" in seen["message"]
    assert "raising a hard limit needs CAP_SYS_RESOURCE" in seen["message"]
    assert seen["nofile"][1] == current
    with pytest.raises(rlimits.RlimitError) as info:
        rlimits.check(asked)
    assert str(info.value) == seen["message"]


def test_nofile_above_nr_open_fails_everywhere() -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    seen = in_child(lambda: rlimits.apply([Rlimit("RLIMIT_NOFILE", 1024, nr_open + 1)]))
    assert seen["error"] == "RlimitError"
    assert f"fs.nr_open ({nr_open})" in seen["message"]


def test_oom_score_adj_raise_and_the_floor() -> None:
    def raise_then_lower() -> None:
        identity.set_oom_score_adj(500)
        identity.set_oom_score_adj(-1000)

    seen = in_child(raise_then_lower)
    if not caps.lacking("CAP_SYS_RESOURCE"):
        assert seen["oom_score_adj"] == -1000
        return
    assert seen["error"] == "IdentityError"
    assert seen["message"].startswith("oom_score_adj -1000: lowering oom_score_adj below")
    assert "CAP_SYS_RESOURCE is not in this process's capability bounding set" in seen["message"]
    assert seen["oom_score_adj"] == 500


def test_inheritable_cannot_grow_past_permitted_without_setpcap() -> None:
    bounding = (*RUNC_DEFAULT, "CAP_CHOWN")

    def grow() -> None:
        caps.apply(Capabilities(bounding=bounding, effective=RUNC_DEFAULT, permitted=RUNC_DEFAULT))
        caps.apply(
            Capabilities(bounding=bounding, permitted=RUNC_DEFAULT, inheritable=("CAP_CHOWN",))
        )

    seen = in_child(grow)
    assert seen["message"] == (
        "capabilities: inheritable CAP_CHOWN: not in the permitted set, "
        "and adding them needs CAP_SETPCAP in the effective set"
    )
    assert seen["sets"]["inheritable"] == []


def test_ambient_not_inheritable_is_dropped_as_runc_drops_it() -> None:
    # `runc spec`'s sets: ambient, but no inheritable. The kernel would not
    # raise them; runc runs the process without them, and so does runlog.
    process = Process(
        args=("/bin/true",),
        cwd="/",
        capabilities=Capabilities(
            bounding=RUNC_DEFAULT,
            effective=RUNC_DEFAULT,
            permitted=RUNC_DEFAULT,
            inheritable=("CAP_KILL",),
            ambient=RUNC_DEFAULT,
        ),
    )
    seen = in_child(lambda: finalize.prepare_exec(process))
    assert "error" not in seen, seen.get("message")
    assert seen["sets"]["effective"] == seen["sets"]["permitted"] == sorted(RUNC_DEFAULT)
    assert seen["sets"]["ambient"] == ["CAP_KILL"]  # the one also inheritable
    assert seen["raw"]["CapAmb"] == "0000000000000020"


def test_works_in_an_empty_root_and_imports_nothing(tmp_path: Path) -> None:
    # After pivot_root the init has neither /proc nor a Python library.
    process = Process(
        args=("/bin/true",),
        cwd="/",
        user=User(uid=NOBODY, gid=NOBODY, additional_gids=(NOBODY,)),
        capabilities=Capabilities(
            bounding=RUNC_DEFAULT,
            effective=RUNC_DEFAULT,
            permitted=RUNC_DEFAULT,
            inheritable=("CAP_KILL",),
            ambient=("CAP_KILL",),
        ),
        rlimits=(Rlimit("RLIMIT_CORE", 0, 0),),
        no_new_privileges=True,
    )

    def without_proc() -> dict[str, object]:
        before = set(sys.modules)
        notes = finalize.prepare_exec(process)
        try:
            rlimits.apply([Rlimit("RLIMIT_CORE", 0, 1)])
            refused = ""
        except rlimits.RlimitError as err:
            refused = str(err)
        return {"notes": notes, "imported": sorted(set(sys.modules) - before), "refused": refused}

    seen = in_child(without_proc, root=tmp_path)
    assert "error" not in seen, seen.get("message")
    assert seen["result"]["imported"] == []
    assert seen["result"]["notes"] == []
    assert seen["result"]["refused"] == (
        "cannot set RLIMIT_CORE to soft 0, hard 1 (current hard limit 0): raising a hard "
        "limit needs CAP_SYS_RESOURCE, and CAP_SYS_RESOURCE could not be checked "
        "(/proc/self/status is not readable); ask for a hard limit of at most 0"
    )
    assert seen["raw"]["CapEff"] == RUNC_DEFAULT_HEX
    assert seen["raw"]["CapAmb"] == "0000000000000020"
    assert seen["raw"]["NoNewPrivs"] == "1"
    assert seen["resuid"] == [NOBODY] * 3
    assert seen["groups"] == [NOBODY]
    assert seen["core"] == [0, 0]


def _bounding_by_prctl() -> int:
    return sum(1 << n for n in range(caps.last_cap() + 1) if prctl(23, n) == 1)  # CAPBSET_READ


@pytest.mark.parametrize("chrooted", [False, True])
def test_drop_bounding_returns_the_set_it_leaves(chrooted: bool, tmp_path: Path) -> None:
    # Read from /proc/self/status, or (no /proc in a chroot) one prctl per
    # capability: the same set either way, and apply() takes it from there.
    asked = Capabilities(bounding=RUNC_DEFAULT)

    def work() -> list[int]:
        before = caps.bounding_set(caps.last_cap())
        assert before == _bounding_by_prctl()
        left = caps.drop_bounding(asked)
        return [before, left, _bounding_by_prctl()]

    seen = in_child(work, tmp_path if chrooted else None)
    before, left, actual = seen["result"]
    assert before != left == actual == int(RUNC_DEFAULT_HEX, 16)
    assert seen["raw"]["CapBnd"] == RUNC_DEFAULT_HEX
