"""Mount steps for the container's root: each failure a :class:`RootfsError`
naming the path and the step. Used by :mod:`engine.runtime.init.rootfs` and
:mod:`engine.runtime.init.cgroupfs`, in the init before and after pivot_root
(nothing here imports lazily).
"""

from __future__ import annotations

import os

from engine.errors import RunlogError
from engine.linux import syscalls
from engine.oci import mounts as mo

__all__ = [
    "REMOUNT_FLAGS",
    "RootfsError",
    "do_mount",
    "mkdirs",
    "remount_bind",
    "secure_join",
    "touch",
]

# Flags a bind mount only takes on a remount (mount(2): MS_BIND ignores them).
REMOUNT_FLAGS = mo.MS_RDONLY | mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC | mo.MS_NOATIME
_MAX_SYMLINKS = 255


class RootfsError(RunlogError):
    def __init__(self, path: str, step: str, cause: str | None) -> None:
        self.path = path
        self.step = step
        super().__init__(f"{step} {path}: {cause or 'failed'}")


def secure_join(root: str, unsafe: str) -> str:
    """``root`` + ``unsafe`` with every symlink resolved as if ``root`` were /.

    The result never leaves ``root``: ``..`` stops at it and an absolute
    symlink target restarts from it (filepath-securejoin's rule).
    """
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)  # not a symlink, or does not exist yet
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise RootfsError(unsafe, "resolve", "too many levels of symbolic links")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def mkdirs(path: str, what: str) -> None:
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as err:
        raise RootfsError(path, f"create the mount point for {what}", err.strerror) from err


def touch(path: str, what: str) -> None:
    mkdirs(os.path.dirname(path), what)
    try:
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as err:
        raise RootfsError(path, f"create the mount point for {what}", err.strerror) from err


def do_mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None, step: str
) -> None:
    try:
        syscalls.mount(source, target, fstype, flags, data or None)
    except OSError as err:
        raise RootfsError(target, step, err.strerror or str(err)) from err


def remount_bind(target: str, flags: int, what: str) -> None:
    extra = flags & REMOUNT_FLAGS
    if extra:
        do_mount(None, target, None, mo.MS_BIND | mo.MS_REMOUNT | extra, None, f"{what} (remount)")
