"""The container's filesystem view, built by its init inside its mount namespace.

runtime-spec config.md "Root", "Mounts", config-linux.md "Devices",
"maskedPaths", "readonlyPaths", "rootfsPropagation"; runc's
libcontainer/rootfs_linux.go for what the spec leaves open:

1. make every mount in the new namespace a slave (rslave), so nothing the
   container mounts leaks back to the host, and no mount is shared, which
   pivot_root and the bind of the rootfs need (runc applies the configured
   propagation here and then makes the rootfs's parent mount private when
   it is shared; after rslave none is);
2. bind the rootfs onto itself (pivot_root needs a mount point);
3. each configured mount, its destination created inside the rootfs and
   resolved without leaving it (a symlink in the image cannot point a mount
   at the host);
4. the default devices, bind-mounted from the host (the same nodes runc
   would mknod, and it also works in a user namespace), ``linux.devices``
   made with mknod (bound from the host in a user namespace, as runc does),
   and the /dev symlinks;
5. pivot_root (or, with ``--no-pivot``, the host's full proc and sysfs
   mounts detached, then move + chroot; without a mount namespace of its
   own, a plain chroot);
   (here the init sets up the console, which :func:`mount_console` binds
   onto /dev/console)
6. sysctls, read-only and masked paths, a read-only root, and last
   ``linux.rootfsPropagation``, if set, applied to the new / (unset, the
   root stays the slave it was bound as: runc's default, rslave).

Every failure raises :class:`RootfsError` naming the path and the step
(the mount steps themselves are :mod:`engine.runtime.init.mounting`'s, the
cgroup filesystem's layout :mod:`engine.runtime.init.cgroupfs`').
"""

from __future__ import annotations

import errno
import os
import stat

from engine.errors import UnsupportedError
from engine.linux import mountinfo, syscalls
from engine.oci import mounts as mo
from engine.oci.model import Config, Device, Mount
from engine.runtime.init.cgroupfs import CgroupView, mount_cgroup, own_cgroups
from engine.runtime.init.mounting import (
    REMOUNT_FLAGS,
    RootfsError,
    do_mount,
    mkdirs,
    remount_bind,
    secure_join,
    touch,
)

__all__ = [
    "DEFAULT_DEVICES",
    "RootfsError",
    "check_no_pivot",
    "check_root_path",
    "finalize",
    "mount_console",
    "prepare",
    "select_host_proc_sys",
]

# runc's AllowedDevices that it creates in every container.
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


def check_no_pivot(config: Config, no_pivot: bool) -> None:
    """runc's validator: with ``--no-pivot`` the old root stays under the
    container's, so a private root propagation would keep the host's mounts
    there without even the slave link that lets their unmounts through."""
    propagation = config.linux.rootfs_propagation
    if no_pivot and propagation in ("private", "rprivate"):
        where = os.path.join(config.bundle, "config.json")
        raise UnsupportedError(
            f"{where}: linux.rootfsPropagation {propagation!r} is not safe without "
            "pivot_root (--no-pivot)"
        )


def check_root_path(config: Config) -> None:
    """runc's validator ("invalid rootfs: not an absolute path, or a
    symlink"): a rootfs that is a symlink, or reached through one, is
    refused before anything is made, not followed (a link to / would make
    the host's root the container's).

    A relative ``root.path`` is taken from the bundle's real path, as runc
    takes it from its working directory, the bundle: a bundle reached
    through a symlink is fine, a symlink inside it is not.
    """
    path = config.root.path
    bundle = config.bundle.rstrip("/") + "/"
    if path.startswith(bundle):
        path = os.path.join(os.path.realpath(bundle), path[len(bundle) :])
    real = os.path.realpath(path)
    if real != path and os.path.lexists(path):
        where = os.path.join(config.bundle, "config.json")
        raise UnsupportedError(
            f"{where}: root.path {config.root.path}: invalid rootfs: a symlink, or under one "
            f"(it leads to {real})"
        )


def _bind_source(config: Config, mount: Mount) -> str:
    source = mount.source or ""
    return source if source.startswith("/") else os.path.join(config.bundle, source)


def _mount_one(config: Config, rootfs: str, mount: Mount, cgroups: CgroupView) -> None:
    spec = mo.parse_mount_options(mount.options)
    dest = secure_join(rootfs, mount.destination)
    what = f"mount {mount.destination}"
    if spec.is_bind:
        source = _bind_source(config, mount)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as err:
            raise RootfsError(source, f"bind source of {mount.destination}", err.strerror) from err
        (mkdirs if is_dir else touch)(dest, what)
        do_mount(source, dest, None, spec.flags & (mo.MS_BIND | mo.MS_REC), None, what)
        extra = spec.flags & REMOUNT_FLAGS
        if extra:
            # A bind mount takes ro/nosuid/... only on a remount.
            do_mount(
                None, dest, None, mo.MS_BIND | mo.MS_REMOUNT | extra, None, f"{what} (remount)"
            )
    elif mount.type in ("cgroup", "cgroup2"):
        mkdirs(dest, what)
        mount_cgroup(dest, spec.flags, what, cgroups)
    else:
        mkdirs(dest, what)
        _mount_fs(mount, dest, spec, what)
    for propagation in spec.propagation:
        do_mount(None, dest, None, propagation, None, f"{what} (propagation)")


# What a user namespace cannot mount, and what runc binds instead: sysfs
# needs a network namespace of the user namespace's own, mqueue an ipc one.
_ROOTLESS_BINDS = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}


def _mount_fs(mount: Mount, dest: str, spec: mo.MountSpec, what: str) -> None:
    """Mount a filesystem; in a user namespace with runc's fallbacks: sysfs
    and mqueue bound recursively from the host where the kernel refuses
    them (EPERM), devpts without the ``uid=``/``gid=`` a one-id mapping does
    not map (EINVAL)."""
    source = mount.source or mount.type
    try:
        syscalls.mount(source, dest, mount.type, spec.flags, spec.data or None)
        return
    except OSError as err:
        failed = err
    host = _ROOTLESS_BINDS.get(mount.type or "")
    if failed.errno == errno.EPERM and host is not None and os.path.isdir(host):
        do_mount(host, dest, None, mo.MS_BIND | mo.MS_REC, None, f"{what} (bound from {host})")
        remount_bind(dest, spec.flags, what)
        return
    data = ",".join(
        option
        for option in (spec.data or "").split(",")
        if option and not option.startswith(("uid=", "gid="))
    )
    if failed.errno == errno.EINVAL and mount.type == "devpts" and data != (spec.data or ""):
        do_mount(source, dest, mount.type, spec.flags, data, f"{what} (without uid=/gid=)")
        return
    raise RootfsError(dest, what, failed.strerror or str(failed)) from failed


def _device(rootfs: str, device: Device | str, bind: bool) -> None:
    """One node in the container's /dev: made with mknod, as runc makes it,
    or, where mknod cannot work (a user namespace) and for the default
    nodes, the host's node of the same path bound onto an empty file."""
    path = device if isinstance(device, str) else device.path
    dest = secure_join(rootfs, path)
    if isinstance(device, str) or bind:
        if not os.path.exists(path):
            raise RootfsError(path, "device", "no such device node on the host to bind")
        touch(dest, f"device {path}")
        do_mount(path, dest, None, mo.MS_BIND, None, f"device {path}")
        return
    _mknod(dest, device)


# config-linux.md "Devices" types; u is an unbuffered character device.
_NODE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _mknod(dest: str, device: Device) -> None:
    """runc's mknodDevice: the node, its mode exactly ``fileMode`` (0666 by
    default; not cut by the umask), owned by ``uid``:``gid`` (root by default).
    An existing node is kept, as runc keeps it."""
    mkdirs(os.path.dirname(dest), f"device {device.path}")
    mode = 0o666 if device.file_mode is None else device.file_mode & 0o7777
    try:
        os.mknod(dest, _NODE_TYPES[device.type] | mode, os.makedev(device.major, device.minor))
    except FileExistsError:
        return
    except OSError as err:
        raise RootfsError(device.path, "mknod the device", err.strerror) from err
    try:
        os.chmod(dest, mode)
        os.chown(dest, device.uid or 0, device.gid or 0)
    except OSError as err:
        raise RootfsError(
            device.path, "set the mode and owner of the device", err.strerror
        ) from err


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


# runc's msMoveRoot hides these filesystems.
_PSEUDO_FILESYSTEMS = ("proc", "sysfs")


def select_host_proc_sys(text: str, rootfs: str) -> list[str]:
    """The mount points runc's msMoveRoot hides before a ``--no-pivot``
    chroot: every *full* mount (its root is the filesystem's /) of proc or
    sysfs outside ``rootfs``, in mountinfo order.

    "Outside" is a path test, not runc's string prefix (which would also
    spare ``/rootfs-other/proc`` for a rootfs ``/rootfs``). ``rootfs`` must
    already be free of symlinks, as mountinfo paths are.
    """
    inside = os.path.normpath(rootfs).rstrip("/") + "/"
    return [
        m.mount_point
        for m in mountinfo.parse(text)
        if m.fstype in _PSEUDO_FILESYSTEMS
        and m.root == "/"
        and not (m.mount_point.rstrip("/") + "/").startswith(inside)
    ]


def _hide_host_proc_sys(rootfs: str) -> None:
    """runc's msMoveRoot, before the move: detach the host's full proc and
    sysfs mounts from the container's mount namespace (or, where they cannot
    be unmounted, as in a user namespace, where they are locked, cover them
    with a tmpfs).

    A chroot leaves them reachable in the namespace, and the kernel lets a
    new user namespace mount procfs or sysfs only while a full, unmasked one
    is visible in its mount namespace (fs/namespace.c mount_too_revealing):
    left there, they let the container mount a /proc without its masks. Each
    is made a slave first, so the unmount does not propagate to the host;
    ENOENT there means a mount above it was already detached.
    """
    step = "hide the host's mount"
    for path in select_host_proc_sys(mountinfo.read(), os.path.realpath(rootfs)):
        try:
            syscalls.mount(None, path, None, mo.MS_SLAVE | mo.MS_REC)
        except OSError as err:
            if err.errno == errno.ENOENT:
                continue
            raise RootfsError(path, step, err.strerror or str(err)) from err
        try:
            syscalls.umount2(path, syscalls.MNT_DETACH)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EPERM):
                raise RootfsError(path, step, err.strerror or str(err)) from err
            do_mount("tmpfs", path, "tmpfs", 0, None, step)


def _pivot(rootfs: str, no_pivot: bool, new_mount_ns: bool) -> None:
    """Make the rootfs the container's /.

    With no mount namespace in ``linux.namespaces`` the init is still in
    runlog's (usually the host's), where pivot_root, MS_MOVE and the
    unmounts of :func:`_hide_host_proc_sys` would change the mounts of
    everything else: it only chroots, as runc does there (runc PR #1702,
    rootfs_linux.go prepareRootfs). runc tests ``--no-pivot`` before the
    mount namespace, so it would move and unmount in that namespace too;
    runlog does not follow it there.
    """
    if no_pivot and new_mount_ns:
        _hide_host_proc_sys(rootfs)
    try:
        os.chdir(rootfs)
        if not new_mount_ns:
            os.chroot(".")
        elif no_pivot:
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
        step = "pivot_root" if new_mount_ns and not no_pivot else "chroot"
        raise RootfsError(rootfs, step, str(err)) from err


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise RootfsError(path, "mask", err.strerror) from err
    if stat.S_ISDIR(st.st_mode):
        do_mount("tmpfs", path, "tmpfs", mo.MS_RDONLY, None, "mask")
    else:
        do_mount("/dev/null", path, None, mo.MS_BIND, None, "mask")


def _readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    do_mount(path, path, None, mo.MS_BIND | mo.MS_REC, None, "readonly path")
    flags = mo.MS_BIND | mo.MS_REMOUNT | mo.MS_RDONLY | mo.MS_REC
    do_mount(None, path, None, flags, None, "readonly path")


def _sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as err:
        raise RootfsError(path, f"sysctl {key}", err.strerror) from err


def prepare(
    config: Config,
    *,
    new_mount_ns: bool,
    no_pivot: bool = False,
    cgroups: CgroupView | None = None,
) -> None:
    """Build the container's root and enter it (steps 1-5). Runs in the init;
    :func:`finalize` does the rest."""
    rootfs = config.root.path
    linux = config.linux
    try:
        is_dir = stat.S_ISDIR(os.stat(rootfs).st_mode)
    except OSError as err:
        reason = err.strerror
        if err.errno == errno.EACCES and linux.namespace("user") is not None:
            reason = (
                f"{reason}; in a user namespace the container's root is a host uid "
                "from linux.uidMappings, which must be able to reach the rootfs"
            )
        raise RootfsError(rootfs, "rootfs", reason) from err
    if not is_dir:
        raise RootfsError(rootfs, "rootfs", "not a directory")
    if config.root.readonly and not new_mount_ns:
        # Without a mount namespace the remount of / after the chroot would
        # make the host's own mount read-only where the rootfs is one (an
        # image's overlay); runc skips its finalizeRootfs there and so leaves
        # the root writable. Refuse rather than do either.
        raise RootfsError(
            rootfs,
            "make the root read-only",
            "root.readonly needs a mount namespace in linux.namespaces",
        )
    if cgroups is None:
        cgroups = CgroupView(own_cgroups(), linux.namespace("cgroup") is not None)
    if new_mount_ns:
        do_mount(None, "/", None, mo.MS_SLAVE | mo.MS_REC, None, "make the mounts slaves (rslave)")
        do_mount(rootfs, rootfs, None, mo.MS_BIND | mo.MS_REC, None, "bind the rootfs")
        for mount in config.mounts:
            _mount_one(config, rootfs, mount, cgroups)
        # runc binds rather than mknods in a user namespace, where mknod of
        # a device is refused.
        bind = linux.namespace("user") is not None
        devices: list[Device | str] = [*DEFAULT_DEVICES, *linux.devices]
        for device in devices:
            _device(rootfs, device, bind)
        _dev_links(rootfs)
    _pivot(rootfs, no_pivot, new_mount_ns)


def mount_console(slave: str) -> None:
    """Bind the container's pty slave onto /dev/console (runc's mountConsole).

    Runs after :func:`prepare` (the slave is in the container's devpts) and
    before :func:`finalize` (which may make the root read-only).
    """
    touch("/dev/console", "the console")
    do_mount(slave, "/dev/console", None, mo.MS_BIND, None, "bind the console")


def finalize(config: Config, *, new_mount_ns: bool) -> None:
    """What follows the pivot (runc's finalizeRootfs): sysctls, read-only and
    masked paths, a read-only root, the root's propagation. Runs in the
    init, inside the new root."""
    linux = config.linux
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
        do_mount(None, "/", None, flags, None, "make the root read-only")
    propagation = linux.rootfs_propagation
    if new_mount_ns and propagation:
        # On the new root, not the host's: a shared / before the pivot makes
        # pivot_root fail (EINVAL), an unbindable one the bind of the rootfs;
        # and last, as runbindable would refuse the binds of readonlyPaths.
        flags = mo.PROPAGATION[propagation]
        do_mount(None, "/", None, flags, None, f"linux.rootfsPropagation {propagation}")
