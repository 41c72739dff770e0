"""A real NFS export, mounted over the loopback, refused as the place of the
event log (tests/test_places.py fakes the filesystem type; this one does
not). It needs the kernel's NFS client and server (``nfs``/``nfs4`` and
``nfsd`` in /proc/filesystems, built in or as modules) and Debian's
nfs-kernel-server; where the host lacks them it is skipped, saying which."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import places
from engine.errors import RunlogError
from engine.eventlog import open_store

pytestmark = [pytest.mark.root, pytest.mark.slow]

_TOOLS = ("exportfs", "rpc.nfsd", "rpc.mountd", "mount.nfs4")


def _filesystems() -> set[str]:
    with open("/proc/filesystems") as fh:
        return {line.split()[-1] for line in fh if line.strip()}


def _missing() -> str | None:
    """Why this host cannot serve and mount NFS, or None if it can."""
    if os.geteuid() != 0:
        return "mounting NFS needs root"
    for module in ("nfsd", "nfsv4") if shutil.which("modprobe") else ():
        # Modules load where the kernel has them; a kernel without modules
        # (no /lib/modules/RELEASE) has what is built in, or nothing.
        subprocess.run(["modprobe", "-q", module], capture_output=True, check=False)
    have = _filesystems()
    release = os.uname().release
    lacking = [fs for fs in ("nfs4", "nfsd") if fs not in have]
    if lacking:
        modules = f"/lib/modules/{release}"
        why = "modprobe did not load them" if os.path.isdir(modules) else f"no {modules}"
        return (
            f"kernel {release} has no {' or '.join(lacking)} filesystem in /proc/filesystems "
            f"({why}): no NFS server or client on this host"
        )
    tools = [t for t in _TOOLS if shutil.which(t) is None]
    if tools:
        return f"{', '.join(tools)} missing: apt-get install nfs-kernel-server"
    return None


@pytest.fixture
def nfs_mount() -> Iterator[Path]:
    """An export of a fresh directory (NFSv4 only, no rpcbind needed),
    mounted on another; both taken down after."""
    why = _missing()
    if why is not None:
        pytest.skip(why)
    top = Path(tempfile.mkdtemp(prefix="runlog-nfs-", dir="/tmp"))
    export, mount = top / "export", top / "mnt"
    export.mkdir()
    mount.mkdir()
    started: list[list[str]] = []
    try:
        if not os.path.ismount("/proc/fs/nfsd"):
            subprocess.run(["mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd"], check=True)
        subprocess.run(
            ["exportfs", "-i", "-o", "rw,no_root_squash,fsid=0,no_subtree_check,insecure",
             f"127.0.0.1:{export}"],
            check=True, capture_output=True,
        )  # fmt: skip
        started.append(["exportfs", "-u", f"127.0.0.1:{export}"])
        mountd = subprocess.Popen(
            ["rpc.mountd", "--foreground", "--no-nfs-version", "3"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(["kill", str(mountd.pid)])
        subprocess.run(["rpc.nfsd", "--no-nfs-version", "3", "1"], check=True, capture_output=True)
        started.append(["rpc.nfsd", "0"])
        subprocess.run(
            ["mount", "-t", "nfs4", "-o", "vers=4.2,soft,timeo=50", "127.0.0.1:/", str(mount)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        started.append(["umount", "-f", "-l", str(mount)])
        yield mount
    finally:
        for argv in reversed(started):
            subprocess.run(argv, capture_output=True, check=False, timeout=60)
            if argv[0] == "kill":
                mountd.wait(timeout=30)
        shutil.rmtree(top, ignore_errors=True)


def test_a_log_on_a_real_nfs_mount_is_refused(nfs_mount: Path) -> None:
    assert places.filesystem_type(str(nfs_mount)) == 0x6969
    db = nfs_mount / "log" / "events.db"
    with pytest.raises(RunlogError) as err:
        open_store(str(db))
    message = str(err.value)
    assert "on NFS" in message and "--db" in message and "RUNLOG_DB" in message
    assert not db.parent.exists()
