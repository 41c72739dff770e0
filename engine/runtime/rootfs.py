"""The container's filesystem view, built by its init inside its mount namespace.

runtime-spec config.md "Root", "Mounts", config-linux.md "Devices",
"maskedPaths", "readonlyPaths", "rootfsPropagation"; runc's
libcontainer/rootfs_linux.go for what the spec leaves open:

1. make the host's mounts slave (or the configured propagation), so nothing
   the container mounts leaks back to the host;
2. bind the rootfs onto itself (pivot_root needs a mount point);
3. each configured mount, its destination created inside the rootfs and
   resolved without leaving it (a symlink in the image cannot point a mount
   at the host);
4. the default devices and ``linux.devices``, bind-mounted from the host (the
   same nodes runc would mknod, and it also works in a user namespace), and
   the /dev symlinks;
5. pivot_root (or, with ``--no-pivot``, move + chroot);
6. sysctls, read-only and masked paths, a read-only root.

Every failure raises :class:`RootfsError` naming the path and the step.
"""

from __future__ import annotations

import os
import stat

from engine.errors import RunlogError
from engine.linux import syscalls
from engine.oci import mounts as mo
from engine.oci.model import Config, Device, Mount

__all__ = ["DEFAULT_DEVICES", "RootfsError", "prepare", "secure_join"]

# runc's AllowedDevices that it creates in every container.
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)
_PROPAGATION = {
    "private": mo.MS_PRIVATE,
    "rprivate": mo.MS_PRIVATE | mo.MS_REC,
    "slave": mo.MS_SLAVE,
    "rslave": mo.MS_SLAVE | mo.MS_REC,
    "shared": mo.MS_SHARED,
    "rshared": mo.MS_SHARED | mo.MS_REC,
    "unbindable": mo.MS_UNBINDABLE,
    "runbindable": mo.MS_UNBINDABLE | mo.MS_REC,
}
# Flags a bind mount only takes on a remount (mount(2): MS_BIND ignores them).
_REMOUNT_FLAGS = mo.MS_RDONLY | mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC | mo.MS_NOATIME
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


def _mkdirs(path: str, what: str) -> None:
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as err:
        raise RootfsError(path, f"create the mount point for {what}", err.strerror) from err


def _touch(path: str, what: str) -> None:
    _mkdirs(os.path.dirname(path), what)
    try:
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as err:
        raise RootfsError(path, f"create the mount point for {what}", err.strerror) from err


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None, step: str
) -> None:
    try:
        syscalls.mount(source, target, fstype, flags, data or None)
    except OSError as err:
        raise RootfsError(target, step, err.strerror or str(err)) from err


def _bind_source(config: Config, mount: Mount) -> str:
    source = mount.source or ""
    return source if source.startswith("/") else os.path.join(config.bundle, source)


def _mount_one(config: Config, rootfs: str, mount: Mount) -> None:
    spec = mo.parse_mount_options(mount.options)
    dest = secure_join(rootfs, mount.destination)
    what = f"mount {mount.destination}"
    if spec.is_bind:
        source = _bind_source(config, mount)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as err:
            raise RootfsError(source, f"bind source of {mount.destination}", err.strerror) from err
        (_mkdirs if is_dir else _touch)(dest, what)
        _mount(source, dest, None, spec.flags & (mo.MS_BIND | mo.MS_REC), None, what)
        extra = spec.flags & _REMOUNT_FLAGS
        if extra:
            # A bind mount takes ro/nosuid/... only on a remount.
            _mount(None, dest, None, mo.MS_BIND | mo.MS_REMOUNT | extra, None, f"{what} (remount)")
    elif mount.type in ("cgroup", "cgroup2"):
        _mkdirs(dest, what)
        _mount_cgroup(dest, spec.flags, what)
    else:
        _mkdirs(dest, what)
        _mount(mount.source or mount.type, dest, mount.type, spec.flags, spec.data, what)
    for propagation in spec.propagation:
        _mount(None, dest, None, propagation, None, f"{what} (propagation)")


def _mount_cgroup(dest: str, flags: int, what: str) -> None:
    """The cgroup filesystem: cgroup2 on a unified host; elsewhere the host's
    hierarchies bound read-only (a cgroup namespace, where configured, already
    roots each at the container's cgroup)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        _mount("cgroup2", dest, "cgroup2", flags, None, what)
        return
    _mount("/sys/fs/cgroup", dest, None, mo.MS_BIND | mo.MS_REC, None, what)
    _mount(None, dest, None, mo.MS_BIND | mo.MS_REMOUNT | mo.MS_RDONLY | flags, None, what)


def _device(rootfs: str, device: Device | str) -> None:
    path = device if isinstance(device, str) else device.path
    dest = secure_join(rootfs, path)
    host = path
    if not isinstance(device, str) and not os.path.exists(host):
        raise RootfsError(path, "device", "no such device node on the host to bind")
    _touch(dest, f"device {path}")
    _mount(host, dest, None, mo.MS_BIND, None, f"device {path}")


def _dev_links(rootfs: str) -> None:
    for target, link in (*_SYMLINKS, ("pts/ptmx", "/dev/ptmx")):
        dest = secure_join(rootfs, link)
        if os.path.lexists(dest):
            if link != "/dev/ptmx":
                continue
            try:
                os.unlink(dest)
            except OSError:
                continue
        try:
            os.symlink(target, dest)
        except OSError as err:
            raise RootfsError(link, "create the symlink", err.strerror) from err


def _pivot(rootfs: str, no_pivot: bool) -> None:
    try:
        os.chdir(rootfs)
        if no_pivot:
            # runc --no-pivot: move the rootfs over / and chroot into it.
            syscalls.mount(rootfs, "/", None, mo.MS_MOVE)
            os.chroot(".")
        else:
            # pivot_root(".", "."): the old root ends up stacked under the
            # new one; detach it (runc's pivotRoot).
            syscalls.pivot_root(".", ".")
            syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
    except OSError as err:
        raise RootfsError(rootfs, "pivot_root" if not no_pivot else "chroot", str(err)) from err


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise RootfsError(path, "mask", err.strerror) from err
    if stat.S_ISDIR(st.st_mode):
        _mount("tmpfs", path, "tmpfs", mo.MS_RDONLY, None, "mask")
    else:
        _mount("/dev/null", path, None, mo.MS_BIND, None, "mask")


def _readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    _mount(path, path, None, mo.MS_BIND | mo.MS_REC, None, "readonly path")
    flags = mo.MS_BIND | mo.MS_REMOUNT | mo.MS_RDONLY | mo.MS_REC
    _mount(None, path, None, flags, None, "readonly path")


def _sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as err:
        raise RootfsError(path, f"sysctl {key}", err.strerror) from err


def prepare(config: Config, *, new_mount_ns: bool, no_pivot: bool = False) -> None:
    """Build the container's root and enter it. Runs in the init."""
    rootfs = config.root.path
    linux = config.linux
    if not os.path.isdir(rootfs):
        raise RootfsError(rootfs, "rootfs", "not a directory")
    if new_mount_ns:
        propagation = _PROPAGATION.get(linux.rootfs_propagation or "rslave", mo.MS_SLAVE)
        _mount(None, "/", None, propagation | mo.MS_REC, None, "make / private to the container")
        _mount(rootfs, rootfs, None, mo.MS_BIND | mo.MS_REC, None, "bind the rootfs")
        for mount in config.mounts:
            _mount_one(config, rootfs, mount)
        devices: list[Device | str] = [*DEFAULT_DEVICES, *linux.devices]
        for device in devices:
            _device(rootfs, device)
        _dev_links(rootfs)
    _pivot(rootfs, no_pivot)
    # Sysctls first: /proc/sys is usually among the read-only paths (runc's
    # standard_init_linux.go has the same order).
    for key, value in linux.sysctl.items():
        _sysctl(key, value)
    if new_mount_ns:
        for path in linux.readonly_paths:
            _readonly(path)
        for path in linux.masked_paths:
            _mask(path)
    if config.root.readonly:
        flags = mo.MS_BIND | mo.MS_REMOUNT | mo.MS_RDONLY
        _mount(None, "/", None, flags, None, "make the root read-only")
