"""Real containers, as root: the container's root.

``linux.rootfsPropagation``, every value, seen
from inside the container in /proc/self/mountinfo (the optional fields of
the line of /: ``shared:N``, ``master:N``, ``unbindable``, none for
private), and what the propagation does (runtime-tools' check: a mount
under a shared / shows through a recursive bind of /; an unbindable /
cannot be bound). The bundles sit on a shared mount, as on a systemd host,
where a mount the container makes must still not reach the host. A rootfs
that is a symlink is refused, as runc refuses it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

# The container prints its mountinfo, then what a bind of / sees of a mount
# made after it (shared: it shows; otherwise not), or that the bind fails.
PROBE = """\
cat /proc/self/mountinfo
echo ---
mkdir -p /t /m
if mount --rbind / /t 2>/dev/null; then
    mount -t tmpfs probe /m
    grep -q ' /t/m ' /proc/self/mountinfo && echo seen-through-bind || echo not-seen
else
    echo bind-refused
fi
"""


def optional_fields(mountinfo: str, mount_point: str) -> set[str]:
    """The optional fields (proc(5)) of the last mount at ``mount_point``,
    without their group numbers."""
    found: set[str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4] == mount_point:
            found = {f.split(":")[0] for f in fields[6 : fields.index("-")]}
    assert found is not None, f"no mount at {mount_point}:\n{mountinfo}"
    return found


@pytest.fixture
def shared_tmp(runlog: Any, tmp_path: Path) -> Iterator[Path]:
    """tmp_path bound onto itself and made shared (its own peer group), so
    the rootfs's mount has a propagation to keep from the host; unmounted
    before the runlog fixture looks for leftovers."""
    subprocess.run(["mount", "--bind", str(tmp_path), str(tmp_path)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(tmp_path)], check=True)
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(tmp_path)], check=True)


def host_mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(f"{path}/")]


@pytest.mark.parametrize(
    ("propagation", "root_fields", "proc_fields", "effect"),
    [
        # Unset: runc's default, rslave; the root stays the host's slave.
        (None, {"master"}, set(), "not-seen"),
        ("rslave", {"master"}, set(), "not-seen"),
        ("slave", {"master"}, set(), "not-seen"),
        # Shared and still the host's slave: nothing goes back to the host.
        ("shared", {"shared", "master"}, set(), "seen-through-bind"),
        ("rshared", {"shared", "master"}, {"shared"}, "seen-through-bind"),
        ("private", set(), set(), "not-seen"),
        ("rprivate", set(), set(), "not-seen"),
        ("unbindable", {"unbindable"}, set(), "bind-refused"),
        ("runbindable", {"unbindable"}, {"unbindable"}, "bind-refused"),
    ],
)
def test_root_propagation_is_applied_to_the_new_root(
    runlog: Any,
    bundle: Any,
    shared_tmp: Path,
    propagation: str | None,
    root_fields: set[str],
    proc_fields: set[str],
    effect: str,
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        for kind in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")
        if propagation is not None:
            spec["linux"]["rootfsPropagation"] = propagation

    b = bundle(["sh", "-c", PROBE], edit)
    out = runlog("run", "t-prop", "-b", str(b))
    assert out.returncode == 0, out.stderr
    # Nothing the container mounted reached the host's view of its rootfs.
    assert host_mounts_under(b / "rootfs") == []
    mountinfo, result = out.stdout.split("---\n")
    assert optional_fields(mountinfo, "/") == root_fields
    assert optional_fields(mountinfo, "/proc") == proc_fields
    assert result.strip() == effect
    assert [e[:2] for e in runlog.events("t-prop")][:2] == [
        ("create", "created"),
        ("start", "running"),
    ]


@pytest.mark.parametrize("through", ["rootfs", "parent"])
def test_a_symlinked_rootfs_is_refused_and_nothing_is_left(
    runlog: Any, bundle: Any, tmp_path: Path, through: str
) -> None:
    """runc: "invalid rootfs: not an absolute path, or a symlink"; the link
    to / would make the host's root the container's."""
    b = bundle(["true"])
    if through == "rootfs":
        shutil.rmtree(b / "rootfs")
        (b / "rootfs").symlink_to("/")
        path = str(b / "rootfs")
    else:
        (tmp_path / "link").symlink_to(b)
        path = str(tmp_path / "link" / "rootfs")
        spec = json.loads((b / "config.json").read_text())
        spec["root"]["path"] = path
        (b / "config.json").write_text(json.dumps(spec))
    out = runlog("create", "t-symlink", "-b", str(b))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"{b}/config.json: root.path {path}: invalid rootfs: a symlink, or under one "
        f"(it leads to {os.path.realpath(path)})"
    )
    assert not (runlog.root / "t-symlink").exists()
    assert runlog.events("t-symlink") == [("create", None, "rejected")]


def test_a_bundle_reached_through_a_symlink_is_fine(
    runlog: Any, bundle: Any, tmp_path: Path
) -> None:
    """As with runc, whose base for a relative root.path is the bundle's real path."""
    b = bundle(["true"])
    (tmp_path / "link").symlink_to(b)
    out = runlog("run", "t-linked", "-b", str(tmp_path / "link"))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("propagation", "root_fields"),
    [("rshared", {"shared", "master"}), ("unbindable", {"unbindable"}), ("slave", {"master"})],
)
def test_root_propagation_without_pivot_root(
    runlog: Any, bundle: Any, shared_tmp: Path, propagation: str, root_fields: set[str]
) -> None:
    """--no-pivot moves the rootfs over / and chroots: the propagation goes
    to that mount, the container's /."""

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["rootfsPropagation"] = propagation

    b = bundle(["cat", "/proc/self/mountinfo"], edit)
    out = runlog("run", "--no-pivot", "t-noprop", "-b", str(b))
    assert out.returncode == 0, out.stderr
    assert optional_fields(out.stdout, "/") == root_fields
    assert host_mounts_under(b / "rootfs") == []
