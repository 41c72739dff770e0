"""Real unprivileged users for the rootless tests: made with useradd for the
session, removed with userdel after; a place each may write, a runlog run
as each, and bundles as `runc spec --rootless` writes them for each."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.bundles import make_busybox_bundle
from tests.runtime.conftest import Runlog

__all__ = ["User", "UserRunlog", "make_user", "rootless_bundle", "user_dir"]


class User:
    def __init__(self, name: str, uid: int, gid: int, home: Path) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home

    def env(self, **extra: str) -> dict[str, str]:
        """A login-like environment: no XDG_* variables, as in a Slurm step."""
        env = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user (no supplementary groups)."""
        kw.setdefault("env", self.env())
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(
            argv, user=self.uid, group=self.gid, extra_groups=[], check=False, **kw
        )


def _free_uid(start: int) -> int:
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


@contextmanager
def make_user(prefix: str, start: int) -> Iterator[User]:
    """A new user (with /etc/subuid and /etc/subgid ranges, as useradd
    gives one), home in /tmp; removed with its ranges after."""
    if shutil.which("useradd") is None:
        raise RuntimeError("useradd is missing (Debian: passwd)")
    uid = _free_uid(start)
    name = f"{prefix}{uid}"
    home = Path(tempfile.mkdtemp(prefix=f"runlog-{name}-", dir="/tmp"))
    home.rmdir()
    subprocess.run(
        ["useradd", "-u", str(uid), "-U", "-m", "-d", str(home), "-s", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        yield User(name, uid, pwd.getpwnam(name).pw_gid, home)
    finally:
        subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def user_dir(user: User, mode: int = 0o711) -> Iterator[Path]:
    """A directory in /tmp owned by ``user``, removed after."""
    directory = Path(tempfile.mkdtemp(prefix="runlog-rootless-", dir="/tmp"))
    os.chown(directory, user.uid, user.gid)
    directory.chmod(mode)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class UserRunlog(Runlog):
    """``runlog --root R --db D ARGS...`` as ``user``."""

    def __init__(self, user: User, root: Path, db: Path, cwd: Path) -> None:
        super().__init__(root, db, cwd)
        self.user = user

    def __call__(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("user", self.user.uid)
        kw.setdefault("group", self.user.gid)
        kw.setdefault("extra_groups", [])
        return super().__call__(*args, **kw)


def rootless_bundle(
    user: User,
    directory: Path,
    args: list[str],
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A busybox rootfs with the config `runc spec --rootless` writes for
    ``user``, its args ``args``, ``terminal`` false; owned by ``user``."""
    make_busybox_bundle(str(directory), args)
    (directory / "config.json").unlink()
    os.chown(directory, user.uid, user.gid)
    made = user.run(["runc", "spec", "--rootless"], cwd=directory)
    assert made.returncode == 0, made.stderr
    path = directory / "config.json"
    spec = json.loads(path.read_text())
    spec["process"]["args"] = list(args)
    spec["process"]["terminal"] = False
    # runc drops ambient capabilities that are not also inheritable without
    # a word; runlog refuses them (engine/linux/caps.py).
    spec["process"]["capabilities"].pop("ambient", None)
    if edit is not None:
        edit(spec)
    path.write_text(json.dumps(spec, indent="\t"))
    for base, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(base, name), user.uid, user.gid)
    return directory
