"""Real ``--no-pivot`` containers, as root: the host's /proc and /sys are
gone from the container's mount namespace, as runc's msMoveRoot leaves it.

A chrooted process's /proc/self/mountinfo never lists mounts outside its
root, hidden or not, so the test asks the kernel instead, the way the attack
runc guards against does (runc PR #1962): a new user namespace may mount a
procfs or sysfs only while a full, unmasked one is visible in its mount
namespace. The container's own /proc and /sys carry the spec's masks, so
with the host's ones gone both mounts are refused, as under pivot_root.
The unit tests of the selection are in test_runtime_rootfs.py.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.linux.mountinfo import parse as parse_mountinfo

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]

# Inside the container: its mountinfo, then, in a new user, mount, pid and
# network namespace (as busybox unshare -mrfpn makes them), a fresh procfs
# and sysfs. The uid_map line shows the user namespace worked.
PROBE = """\
cat /proc/self/mountinfo > /mountinfo
unshare -mrfpn sh -c '
    echo "uid_map=$(cat /proc/self/uid_map)"
    mount -t proc none /proc 2>/dev/null && echo proc=mounted || echo proc=refused
    mount -t sysfs none /sys 2>/dev/null && echo sysfs=mounted || echo sysfs=refused
' > /out.tmp 2>&1
mv /out.tmp /out
"""


def full_proc_sys(text: str) -> list[str]:
    return [
        m.mount_point
        for m in parse_mountinfo(text)
        if m.fstype in ("proc", "sysfs") and m.root == "/"
    ]


def host_proc_sys() -> list[str]:
    return full_proc_sys(os.fsdecode(Path("/proc/self/mountinfo").read_bytes()))


def probe_bundle(bundle: Bundle, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    def configure(spec: dict[str, Any]) -> None:
        # Mapping uid 0 into a new user namespace takes CAP_SETFCAP of its
        # creator (Linux 5.12, user_namespaces(7)); docker's defaults have it.
        for kind in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][kind].append("CAP_SETFCAP")
        if edit is not None:
            edit(spec)

    b = bundle(["sh", "/probe"], configure)
    (b / "rootfs" / "probe").write_text(PROBE)
    return b


def run_probe(runlog: Any, cid: str, b: Path, *flags: str) -> dict[str, str]:
    """create + start, wait for the probe's /out, delete."""
    runlog("create", *flags, cid, "-b", str(b), check=True)
    runlog("start", cid, check=True)
    out = b / "rootfs" / "out"
    deadline = time.monotonic() + 15
    while not out.exists():
        assert time.monotonic() < deadline, "the container never wrote /out"
        time.sleep(0.05)
    runlog("delete", "--force", cid, check=True)
    text = out.read_text()
    got = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if got.get("uid_map", "").split() != ["0", "0", "1"]:
        pytest.skip(f"no user namespace to probe from: {text!r}")
    return got


def require_visible_host_proc_sys() -> list[str]:
    before = host_proc_sys()
    if not {"/proc", "/sys"} <= set(before):
        pytest.skip(f"no full /proc and /sys on this host to hide: {before}")
    return before


@pytest.mark.parametrize("flags", [("--no-pivot",), ()], ids=["no-pivot", "pivot_root"])
def test_no_new_procfs_or_sysfs_can_be_mounted_from_inside(
    runlog: Any, bundle: Bundle, flags: tuple[str, ...]
) -> None:
    before = require_visible_host_proc_sys()
    b = probe_bundle(bundle)
    got = run_probe(runlog, "t-nopivot-proc", b, *flags)
    assert (got["proc"], got["sysfs"]) == ("refused", "refused")
    # The container's own, mounted inside its rootfs, are still there.
    assert full_proc_sys((b / "rootfs" / "mountinfo").read_text()) == ["/proc", "/sys"]
    # Nothing was unmounted here: the detaching was in the container's namespace.
    assert host_proc_sys() == before


# -- in a user namespace, where the host's mounts are locked and get a tmpfs over them --

_HOST_ID = 100000


def host_mount_points() -> list[str]:
    return [
        m.mount_point
        for m in parse_mountinfo(os.fsdecode(Path("/proc/self/mountinfo").read_bytes()))
    ]


def test_no_pivot_in_a_user_namespace_covers_what_it_cannot_unmount(
    runlog: Any, bundle: Bundle, reachable: Path
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        linux["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": _HOST_ID, "size": 65536}]
        linux["uidMappings"] = linux["gidMappings"] = mapping

    before = require_visible_host_proc_sys()
    b = Path(shutil.move(probe_bundle(bundle, edit), reachable / "bundle"))
    for path in [b / "rootfs", *(b / "rootfs").rglob("*")]:
        st = path.lstat()
        os.lchown(path, _HOST_ID + st.st_uid, _HOST_ID + st.st_gid)
    got = run_probe(runlog, "t-nopivot-userns", b, "--no-pivot")
    assert (got["proc"], got["sysfs"]) == ("refused", "refused")
    assert full_proc_sys((b / "rootfs" / "mountinfo").read_text()) == ["/proc", "/sys"]
    assert host_proc_sys() == before


@pytest.mark.parametrize("propagation", ["private", "rprivate"])
def test_private_root_propagation_is_refused_without_pivot_root(
    runlog: Any, bundle: Bundle, propagation: str
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["rootfsPropagation"] = propagation

    b = bundle(["true"], edit)
    out = runlog("create", "--no-pivot", "t-private", "-b", str(b))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"{b}/config.json: linux.rootfsPropagation {propagation!r} is not safe without "
        "pivot_root (--no-pivot)"
    )
    assert not (runlog.root / "t-private").exists()
    assert runlog.events("t-private") == [("create", None, "rejected")]
    # With pivot_root the same config is fine.
    runlog("run", "t-private", "-b", str(b), check=True)
