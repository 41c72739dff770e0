"""The rootfs step of ``--no-pivot`` without a kernel: which mounts of a
mountinfo text runc's msMoveRoot would hide, and what the init does with
them, against a fake of the mount syscalls (no root needed, nothing mounted).

The real containers are in test_runtime_no_pivot.py.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.linux import syscalls
from engine.linux.mountinfo import MountInfo
from engine.linux.mountinfo import parse as parse_mountinfo
from engine.oci import mounts as mo
from engine.oci.config import load_bundle
from engine.oci.spec import default_spec
from engine.runtime.init import rootfs
from engine.runtime.init.rootfs import RootfsError, select_host_proc_sys

# A host as the init sees it before the move, with the container's rootfs at
# /b/rootfs: proc(5)'s format, optional fields, octal escapes.
MOUNTINFO = "\n".join(
    [
        r"27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        r"22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw",
        r"23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 master:1 - sysfs sysfs rw",
        r"40 22 0:39 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw",
        r"41 23 0:25 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw,nsdelegate",
        r"42 27 0:5 / /dev rw,nosuid - devtmpfs udev rw,mode=755",
        # Not full mounts: a part of a procfs or sysfs bound elsewhere.
        r"43 22 0:21 /bus /proc/bus ro,relatime - proc proc rw",
        r"44 27 0:22 /kernel/security /mnt/security ro - sysfs sysfs rw",
        # Escaped mount points: space, tab, newline, backslash.
        r"45 27 0:21 / /run/with\040space/proc rw - proc proc rw",
        r"46 27 0:22 / /tmp/a\011tab\012newline\134back/sys rw - sysfs sysfs rw",
        # The container's own, inside its rootfs: kept.
        r"50 27 254:0 /b/rootfs /b/rootfs rw - ext4 /dev/vda rw",
        r"51 50 0:49 / /b/rootfs/proc rw,nosuid - proc proc rw",
        r"52 50 0:50 / /b/rootfs/sys ro,nosuid - sysfs sysfs ro",
        # A sibling whose name only starts like the rootfs: outside.
        r"53 27 0:21 / /b/rootfs-old/proc rw - proc proc rw",
        "a line that is not mountinfo",
    ]
)
HOST_PROC_SYS = [
    "/proc",
    "/sys",
    "/run/with space/proc",
    "/tmp/a\ttab\nnewline\\back/sys",
    "/b/rootfs-old/proc",
]


def test_mountinfo_parsing_decodes_paths_and_skips_optional_fields() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 14  # all but the last line
    assert mounts[2] == MountInfo("/", "/sys", "sysfs", "rw")
    assert mounts[6] == MountInfo("/bus", "/proc/bus", "proc", "rw")
    assert mounts[9].mount_point == "/tmp/a\ttab\nnewline\\back/sys"
    assert mounts[10] == MountInfo("/b/rootfs", "/b/rootfs", "ext4", "rw")


def test_a_name_that_is_not_utf8_comes_back_as_the_syscalls_will_encode_it() -> None:
    raw = b"60 27 0:21 / /mnt/caf\xe9\\134\\040x rw - proc proc rw\n"
    [mount] = parse_mountinfo(os.fsdecode(raw))
    assert os.fsencode(mount.mount_point) == b"/mnt/caf\xe9\\ x"


@pytest.mark.parametrize("root", ["/b/rootfs", "/b/rootfs/", "/b//rootfs"])
def test_full_proc_and_sysfs_outside_the_rootfs_are_selected(root: str) -> None:
    assert select_host_proc_sys(MOUNTINFO, root) == HOST_PROC_SYS


def test_a_rootfs_at_slash_keeps_everything() -> None:
    assert select_host_proc_sys(MOUNTINFO, "/") == []


def test_the_rootfs_itself_and_what_is_under_it_are_inside() -> None:
    text = "\n".join(
        [
            "1 0 0:21 / /c rw - proc proc rw",
            "2 0 0:21 / /c/proc rw - proc proc rw",
            "3 0 0:22 / /c/deep/er/sys rw - sysfs sysfs rw",
            "4 0 0:22 / /cc/sys rw - sysfs sysfs rw",
            "5 0 0:22 / / rw - sysfs sysfs rw",
        ]
    )
    assert select_host_proc_sys(text, "/c") == ["/cc/sys", "/"]


# -- what the init does, against a fake kernel ---------------------------------------

# Paths that exist nowhere: should a call reach the real kernel, it fails.
ROOTFS = "/nonexistent-runlog-test/rootfs"
FAKE_MOUNTINFO = "\n".join(
    [
        "22 27 0:21 / /nonexistent-runlog-test/proc rw - proc proc rw",
        "23 27 0:22 / /nonexistent-runlog-test/sys rw - sysfs sysfs rw",
        "24 23 0:22 / /nonexistent-runlog-test/sys/again rw - sysfs sysfs rw",
        f"51 50 0:49 / {ROOTFS}/proc rw - proc proc rw",
    ]
)
PROC, SYS, AGAIN = (f"/nonexistent-runlog-test/{name}" for name in ("proc", "sys", "sys/again"))


class FakeKernel:
    """Records mount, umount2, pivot_root, chdir and chroot; fails a call
    with the errno that ``errors`` gives for ``(kind, path)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.errors: dict[tuple[str, str], int] = {}

    def _call(self, kind: str, path: str) -> None:
        self.calls.append((kind, path))
        code = self.errors.get((kind, path))
        if code is not None:
            raise OSError(code, f"{kind} {path}: {os.strerror(code)}")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int = 0, data: Any = None
    ) -> None:
        if flags == mo.MS_SLAVE | mo.MS_REC:
            kind = "rslave"
        elif flags == mo.MS_MOVE:
            kind, target = "move", f"{source} -> {target}"
        elif fstype == "tmpfs" and flags == 0:
            kind = "tmpfs"
        else:
            kind = f"mount {fstype} {flags:#x}"
        self._call(kind, target)

    def umount2(self, target: str, flags: int = 0) -> None:
        assert flags == syscalls.MNT_DETACH
        self._call("detach", target)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKernel]:
    fake = FakeKernel()
    monkeypatch.setattr(syscalls, "mount", fake.mount)
    monkeypatch.setattr(syscalls, "umount2", fake.umount2)
    monkeypatch.setattr(syscalls, "pivot_root", lambda new, old: fake._call("pivot_root", new))
    monkeypatch.setattr(os, "chdir", lambda path: fake._call("chdir", str(path)))
    monkeypatch.setattr(os, "chroot", lambda path: fake._call("chroot", str(path)))
    monkeypatch.setattr(rootfs.mountinfo, "read", lambda: FAKE_MOUNTINFO)
    yield fake


def test_no_pivot_detaches_each_host_mount_as_a_slave_then_moves(kernel: FakeKernel) -> None:
    rootfs._pivot(ROOTFS, no_pivot=True, new_mount_ns=True)
    assert kernel.calls == [
        ("rslave", PROC),
        ("detach", PROC),
        ("rslave", SYS),
        ("detach", SYS),
        ("rslave", AGAIN),
        ("detach", AGAIN),
        ("chdir", ROOTFS),
        ("move", f"{ROOTFS} -> /"),
        ("chroot", "."),
        ("chdir", "/"),
    ]


def test_a_mount_gone_with_its_parent_is_skipped(kernel: FakeKernel) -> None:
    kernel.errors[("rslave", AGAIN)] = errno.ENOENT
    rootfs._pivot(ROOTFS, no_pivot=True, new_mount_ns=True)
    assert ("detach", AGAIN) not in kernel.calls
    assert ("move", f"{ROOTFS} -> /") in kernel.calls


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EPERM])
def test_a_mount_that_cannot_be_unmounted_is_covered_with_tmpfs(
    kernel: FakeKernel, code: int
) -> None:
    kernel.errors[("detach", PROC)] = code  # locked, in a user namespace
    rootfs._pivot(ROOTFS, no_pivot=True, new_mount_ns=True)
    assert kernel.calls[:4] == [
        ("rslave", PROC),
        ("detach", PROC),
        ("tmpfs", PROC),
        ("rslave", SYS),
    ]


@pytest.mark.parametrize(
    ("failing", "code", "message"),
    [
        (("detach", SYS), errno.EBUSY, "Device or resource busy"),
        (("rslave", SYS), errno.EACCES, "Permission denied"),
        (("tmpfs", SYS), errno.ENODEV, "No such device"),
    ],
)
def test_any_other_failure_fails_the_container_naming_the_mount(
    kernel: FakeKernel, failing: tuple[str, str], code: int, message: str
) -> None:
    kernel.errors[failing] = code
    if failing[0] == "tmpfs":
        kernel.errors[("detach", SYS)] = errno.EINVAL
    with pytest.raises(RootfsError) as caught:
        rootfs._pivot(ROOTFS, no_pivot=True, new_mount_ns=True)
    assert caught.value.path == SYS
    assert str(caught.value).startswith(f"hide the host's mount {SYS}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert ("move", f"{ROOTFS} -> /") not in kernel.calls


def test_pivot_root_leaves_the_host_mounts_to_the_old_root(kernel: FakeKernel) -> None:
    rootfs._pivot(ROOTFS, no_pivot=False, new_mount_ns=True)
    assert kernel.calls == [
        ("chdir", ROOTFS),
        ("pivot_root", "."),
        ("detach", "."),
        ("chdir", "/"),
    ]


@pytest.mark.parametrize("no_pivot", [True, False])
def test_without_a_mount_namespace_it_only_chroots(kernel: FakeKernel, no_pivot: bool) -> None:
    # The init would be in the host's mount namespace: no move, no unmount.
    rootfs._pivot(ROOTFS, no_pivot=no_pivot, new_mount_ns=False)
    assert kernel.calls == [("chdir", ROOTFS), ("chroot", "."), ("chdir", "/")]


def test_a_read_only_root_without_a_mount_namespace_is_refused(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    spec = default_spec()
    linux = spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
    linux["maskedPaths"] = linux["readonlyPaths"] = []
    spec["root"]["readonly"] = True
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(spec))
    config = load_bundle(str(tmp_path))
    with pytest.raises(RootfsError, match=r"root\.readonly needs a mount namespace"):
        rootfs.prepare(config, new_mount_ns=False, cgroups=rootfs.CgroupView({}, False))
    assert kernel.calls == []
