"""engine.oci.mounts: options split as runc's parseMountOptions splits them."""

from __future__ import annotations

import pytest

from engine.oci import mounts as m
from engine.oci.mounts import KNOWN_MOUNT_OPTIONS, MountSpec, parse_mount_options

# The mount options `runc features` prints (runtime-spec features.md).
RUNC_FEATURES_MOUNT_OPTIONS = [
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
    "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
    "noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
    "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime",
    "relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec",
    "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate",
    "rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime", "rsuid",
    "rsymfollow", "runbindable", "rw", "shared", "silent", "slave", "strictatime",
    "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
]  # fmt: skip

CASES: list[tuple[list[str], MountSpec]] = [
    # runc spec's /dev
    (
        ["nosuid", "strictatime", "mode=755", "size=65536k"],
        MountSpec(flags=0x2 | 0x1000000, data="mode=755,size=65536k"),
    ),
    # runc spec's /dev/pts
    (
        ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        MountSpec(flags=0xA, data="newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ),
    # runc spec's /sys/fs/cgroup
    (
        ["nosuid", "noexec", "nodev", "relatime", "ro"],
        MountSpec(flags=0x2 | 0x8 | 0x4 | 0x200000 | 0x1),
    ),
    # a read-only recursive bind, private
    (["rbind", "ro", "rprivate"], MountSpec(flags=0x5001, propagation=(0x44000,))),
    (["bind", "remount", "ro"], MountSpec(flags=0x1000 | 0x20 | 0x1)),
    # later options undo earlier ones, and the undone flag is remembered
    (["ro", "rw"], MountSpec(flags=0, cleared_flags=0x1)),
    (["rw", "ro"], MountSpec(flags=0x1, cleared_flags=0)),
    (["sync", "async"], MountSpec(cleared_flags=0x10)),
    (["nosuid", "suid", "nodev"], MountSpec(flags=0x4, cleared_flags=0x2)),
    (["noexec", "exec", "noexec"], MountSpec(flags=0x8)),
    # propagation changes are separate calls, kept in order
    (["shared", "rslave", "unbindable"], MountSpec(propagation=(0x100000, 0x84000, 0x20000))),
    # recursive attributes (mount_setattr)
    (["rro", "rnosuid"], MountSpec(rec_attr_set=0x3)),
    (["rro", "rrw"], MountSpec(rec_attr_clr=0x1)),
    (["rnoatime"], MountSpec(rec_attr_set=0x10, rec_attr_clr=0x70)),
    (["rrelatime"], MountSpec(rec_attr_clr=0x70)),
    (["rnoatime", "ratime"], MountSpec(rec_attr_clr=0x70)),
    (["rnodiratime", "rnosymfollow"], MountSpec(rec_attr_set=0x80 | 0x200000)),
    # runc's extensions and markers
    (["tmpcopyup", "mode=755"], MountSpec(extensions=m.EXT_COPYUP, data="mode=755")),
    (["bind", "idmap"], MountSpec(flags=0x1000, id_mapped=True)),
    (["rbind", "ridmap"], MountSpec(flags=0x5000, id_mapped=True, id_map_recursive=True)),
    (["ridmap", "idmap"], MountSpec(id_mapped=True, id_map_recursive=False)),
    # flag 0 and unknown options are data, in order, as in runc
    (["defaults"], MountSpec(data="defaults")),
    (["acl", "ro", "noacl", "uid=0"], MountSpec(flags=0x1, data="acl,noacl,uid=0")),
    (["lowerdir=/a:/b", "upperdir=/u"], MountSpec(data="lowerdir=/a:/b,upperdir=/u")),
    ([], MountSpec()),
]  # fmt: skip


@pytest.mark.parametrize(("options", "expected"), CASES, ids=[",".join(c[0]) for c in CASES])
def test_parse_mount_options_matches_runc(options: list[str], expected: MountSpec) -> None:
    assert parse_mount_options(options) == expected


def test_accepts_any_iterable() -> None:
    assert parse_mount_options(iter(("ro", "x=1"))) == MountSpec(flags=m.MS_RDONLY, data="x=1")


def test_is_bind() -> None:
    assert parse_mount_options(["rbind"]).is_bind
    assert not parse_mount_options(["ro"]).is_bind


def test_constants_are_those_of_sys_mount_h() -> None:
    assert m.MS_RDONLY == 1 and m.MS_NOSUID == 2 and m.MS_NODEV == 4 and m.MS_NOEXEC == 8
    assert m.MS_REMOUNT == 32 and m.MS_BIND == 4096 and m.MS_REC == 16384
    assert m.MS_PRIVATE == 1 << 18 and m.MS_SLAVE == 1 << 19 and m.MS_SHARED == 1 << 20
    assert m.MS_UNBINDABLE == 1 << 17 and m.MS_RELATIME == 1 << 21
    assert m.MS_STRICTATIME == 1 << 24 and m.MS_LAZYTIME == 1 << 25
    assert m.MOUNT_ATTR__ATIME == m.MOUNT_ATTR_NOATIME | m.MOUNT_ATTR_STRICTATIME | 0x40


def test_known_options_are_runc_features_list() -> None:
    assert list(KNOWN_MOUNT_OPTIONS) == RUNC_FEATURES_MOUNT_OPTIONS
