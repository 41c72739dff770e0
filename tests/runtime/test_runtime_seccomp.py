"""linux.seccomp in real containers, as root.

The filter is checked at create, built by the monitor and loaded by the
init: before the capabilities go without noNewPrivileges, just before the
exec with it (runc's two orders). Each test looks at it from inside the
container: what a syscall answers, and /proc/self/status.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]

# Refuse mkdir with EPERM (errnoRet 1), allow the rest. mkdirat too: some
# architectures (aarch64) have only that one.
MKDIR_EPERM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}

SCRIPT = (
    "mkdir /tmp/made 2>&1; echo mkdir=$?; "
    "echo listing=$(ls -d /bin /tmp | tr '\\n' ' '); "
    "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t' | tr ':' '='"
)


def _libseccomp() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.fail("libseccomp.so.2 is missing: make deps installs libseccomp2")


def lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _edit(
    profile: dict[str, Any] | None, *, nnp: bool = True, uid: int = 0
) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        if profile is not None:
            spec["linux"]["seccomp"] = profile
        spec["process"]["noNewPrivileges"] = nnp
        spec["process"]["user"] = {"uid": uid, "gid": uid}

    return edit


@pytest.mark.parametrize(
    ("nnp", "uid"),
    [(True, 0), (False, 0), (True, 65534), (False, 65534)],
    ids=["nnp-root", "no-nnp-root", "nnp-nobody", "no-nnp-nobody"],
)
def test_the_filter_refuses_mkdir_and_allows_the_rest(
    runlog: Any, bundle: Bundle, nnp: bool, uid: int
) -> None:
    # Without noNewPrivileges the final capabilities (runc spec's three)
    # lack CAP_SYS_ADMIN: the filter loads only because the init loads it
    # before dropping them. The filter itself never sets no_new_privs.
    _libseccomp()
    b = bundle(["sh", "-c", SCRIPT], _edit(MKDIR_EPERM, nnp=nnp, uid=uid))
    out = runlog("run", "t-seccomp", "-b", str(b), check=True).stdout
    assert "Operation not permitted" in out, out
    got = lines(out)
    assert got["mkdir"] == "1"
    assert got["listing"].split() == ["/bin", "/tmp"]
    assert got["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert got["NoNewPrivs"] == ("1" if nnp else "0")
    assert not (b / "rootfs" / "tmp" / "made").exists()


def test_without_seccomp_nothing_is_filtered(runlog: Any, bundle: Bundle) -> None:
    b = bundle(["sh", "-c", SCRIPT], _edit(None))
    got = lines(runlog("run", "t-plain", "-b", str(b), check=True).stdout)
    assert got["mkdir"] == "0"
    assert got["Seccomp"] == "0"
    assert (b / "rootfs" / "tmp" / "made").is_dir()


def test_kill_process_action_kills_with_sigsys(runlog: Any, bundle: Bundle) -> None:
    _libseccomp()
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    b = bundle(["mkdir", "/tmp/made"], _edit(profile))
    out = runlog("run", "t-sigsys", "-b", str(b))
    assert out.returncode == 128 + 31, out.stderr  # SIGSYS
    assert not (b / "rootfs" / "tmp" / "made").exists()


# The syscalls the init makes to switch user and capabilities.
IDENTITY_SYSCALLS = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["setgroups", "setresgid", "setresuid", "capset"], "action": "SCMP_ACT_ERRNO"}
    ],
}


def test_with_no_new_privileges_the_filter_comes_after_the_init_s_own_syscalls(
    runlog: Any, bundle: Bundle
) -> None:
    # Loaded just before execve, the filter does not see the init switch
    # user and capabilities; the container's process is refused them.
    _libseccomp()
    b = bundle(
        ["sh", "-c", "echo started; grep Seccomp: /proc/self/status"], _edit(IDENTITY_SYSCALLS)
    )
    out = runlog("run", "t-late", "-b", str(b), check=True).stdout
    assert out.splitlines()[0] == "started"
    assert out.split()[-1] == "2"


def test_without_no_new_privileges_the_init_s_own_syscalls_are_filtered(
    runlog: Any, bundle: Bundle
) -> None:
    # runc's order: loaded before the capabilities are dropped, the filter
    # sees the init's setgroups/setresuid/capset. runc fails the same way.
    _libseccomp()
    b = bundle(["true"], _edit(IDENTITY_SYSCALLS, nnp=False))
    out = runlog("create", "t-early", "-b", str(b))
    assert out.returncode == 1
    # The first of them the init makes, refused by the filter (EPERM).
    assert (
        "process.spawn_init: setgroups []: not permitted: "
        "the container's seccomp filter refuses setgroups"
    ) in out.stderr
    assert not (runlog.root / "t-early").exists()
    assert runlog.events("t-early") == [("create", None, "failed")]


def test_an_unknown_action_fails_create_and_leaves_nothing(runlog: Any, bundle: Bundle) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir"], "action": "SCMP_ACT_FOO"},
        ],
    }
    b = bundle(["true"], _edit(profile))
    out = runlog("create", "t-badact", "-b", str(b))
    assert out.returncode == 1
    # runc: "string SCMP_ACT_FOO is not a valid action for seccomp".
    assert out.stderr.strip().endswith(
        f"{b}/config.json: linux.seccomp.syscalls[1].action: "
        'unknown action "SCMP_ACT_FOO": not a valid action for seccomp (one of '
        "SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, "
        "SCMP_ACT_KILL_THREAD, SCMP_ACT_LOG, SCMP_ACT_TRACE, SCMP_ACT_TRAP)"
    ), out.stderr
    assert not (runlog.root / "t-badact").exists()
    assert runlog.events("t-badact") == [("create", None, "rejected")]


def test_notify_is_refused_at_create(runlog: Any, bundle: Bundle) -> None:
    profile = dict(MKDIR_EPERM, listenerPath="/run/seccomp-agent.sock")
    out = runlog("create", "t-notify", "-b", str(bundle(["true"], _edit(profile))))
    assert out.returncode == 1
    assert "linux.seccomp.listenerPath: seccomp notify is not supported" in out.stderr
    assert not (runlog.root / "t-notify").exists()
    assert runlog.events("t-notify") == [("create", None, "rejected")]


def test_what_libseccomp_refuses_fails_create_and_leaves_nothing(
    runlog: Any, bundle: Bundle
) -> None:
    # An architecture of the spec that this libseccomp (2.5.4) does not know.
    if _libseccomp().seccomp_arch_resolve_name(b"loongarch64"):
        pytest.skip("this libseccomp knows loongarch64")
    profile = dict(MKDIR_EPERM, architectures=["SCMP_ARCH_LOONGARCH64"])
    out = runlog("create", "t-noarch", "-b", str(bundle(["true"], _edit(profile))))
    assert out.returncode == 1
    assert "linux.seccomp.architectures[0]: libseccomp" in out.stderr
    assert "does not know SCMP_ARCH_LOONGARCH64" in out.stderr
    assert not (runlog.root / "t-noarch").exists()
    assert runlog.events("t-noarch") == [("create", None, "failed")]


def test_features_report_seccomp(runlog: Any) -> None:
    doc = json.loads(runlog("features", check=True).stdout)["linux"]["seccomp"]
    assert doc["enabled"] is True
    assert "SCMP_ACT_ERRNO" in doc["actions"] and "SCMP_ACT_NOTIFY" not in doc["actions"]
    assert "SCMP_CMP_MASKED_EQ" in doc["operators"]
    assert "SCMP_ARCH_X86_64" in doc["archs"]
    assert doc["knownFlags"] == doc["supportedFlags"]


def test_a_syscall_libseccomp_does_not_know_is_left_out_and_recorded(
    runlog: Any, bundle: Bundle
) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ],
    }
    b = bundle(["sh", "-c", SCRIPT], edit=_edit(profile))
    out = runlog("run", "t-sc-skip", "-b", str(b))
    assert (out.returncode, lines(out.stdout)["mkdir"]) == (0, "1"), out.stderr
    actions = runlog.payload("t-sc-skip", "create")["actions"]
    spawn = next(a for a in actions if a["action"] == "process.spawn_init")
    assert spawn["result"]["seccomp_skipped"] == ["no_such_syscall"]
