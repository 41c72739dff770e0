"""Mount options of ``config.json``, read as runc's ``parseMountOptions`` reads them.

runtime-spec config.md "Mounts" leaves the meaning of ``options`` to the
platform; on Linux runc (``libcontainer/specconv``) splits them into
mount(2) flags, flags it must clear (``rw``, ``suid``…), propagation changes
applied by a separate mount(2) call each, recursive mount attributes for
mount_setattr(2) (``rro``, ``rnosuid``…), runc's ``tmpcopyup`` extension,
the ``idmap``/``ridmap`` markers, and everything else, joined by commas, as
the filesystem-specific data string. runlog reads them the same way, so a
bundle mounts the same under both runtimes.

The ``MS_*`` and ``MOUNT_ATTR_*`` values are those of <sys/mount.h> and
<linux/mount.h>; they are defined here so that parsing needs no ctypes.
:class:`MountSpec` is a frozen record (:mod:`engine.frozen`), like the values
of :mod:`engine.oci.model`.
"""

from __future__ import annotations

from engine.frozen import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "EXT_COPYUP",
    "KNOWN_MOUNT_OPTIONS",
    "MOUNT_ATTR_IDMAP",
    "MOUNT_ATTR_NOATIME",
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NODIRATIME",
    "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_NOSYMFOLLOW",
    "MOUNT_ATTR_RDONLY",
    "MOUNT_ATTR_RELATIME",
    "MOUNT_ATTR_STRICTATIME",
    "MOUNT_ATTR__ATIME",
    "MS_BIND",
    "MS_DIRSYNC",
    "MS_I_VERSION",
    "MS_LAZYTIME",
    "MS_MANDLOCK",
    "MS_MOVE",
    "MS_NOATIME",
    "MS_NODEV",
    "MS_NODIRATIME",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_NOSYMFOLLOW",
    "MS_POSIXACL",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_RELATIME",
    "MS_REMOUNT",
    "MS_SHARED",
    "MS_SILENT",
    "MS_SLAVE",
    "MS_STRICTATIME",
    "MS_SYNCHRONOUS",
    "MS_UNBINDABLE",
    "PROPAGATION",
    "MountSpec",
    "parse_mount_options",
]

# <sys/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# <linux/mount.h>, for mount_setattr(2)
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# runc's libcontainer/configs EXT_COPYUP: copy the directory's contents into
# the new tmpfs mounted over it.
EXT_COPYUP = 0x1

# (clear, flag): runc's ``mountFlags`` table. "acl" is deliberately absent, as
# in runc: it cannot be mapped to MS_POSIXACL (opencontainers/runc#3738).
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
    "symfollow": (True, MS_NOSYMFOLLOW),
}

# runc's ``mountPropagationMapping``; also the values linux.rootfsPropagation
# may take.
PROPAGATION: dict[str, int] = {
    "rprivate": MS_PRIVATE | MS_REC,
    "private": MS_PRIVATE,
    "rslave": MS_SLAVE | MS_REC,
    "slave": MS_SLAVE,
    "rshared": MS_SHARED | MS_REC,
    "shared": MS_SHARED,
    "runbindable": MS_UNBINDABLE | MS_REC,
    "unbindable": MS_UNBINDABLE,
}

# (clear, attribute): runc's ``recAttrFlags``, applied with
# mount_setattr(2) and AT_RECURSIVE.
_REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

_EXTENSIONS: dict[str, tuple[bool, int]] = {"tmpcopyup": (False, EXT_COPYUP)}

# The options ``runc features`` lists (specconv.KnownMountOptions): every
# table above, sorted. ``idmap``/``ridmap`` are recognised but, as in runc,
# not listed.
KNOWN_MOUNT_OPTIONS: tuple[str, ...] = tuple(
    sorted([*_FLAGS, *PROPAGATION, *_REC_ATTRS, *_EXTENSIONS])
)


@record
class MountSpec:
    """What one mount's ``options`` ask of mount(2) and mount_setattr(2).

    ``flags`` go to the mount call and ``cleared_flags`` are the flags an
    option asked to clear (a remount must not keep them). ``propagation``
    holds one flag set per propagation option, in order: each is a separate
    mount(2) call. ``rec_attr_set``/``rec_attr_clr`` are the ``attr_set`` and
    ``attr_clr`` of a recursive mount_setattr(2). ``id_mapped`` is set by
    ``idmap`` and ``ridmap``, ``id_map_recursive`` by ``ridmap`` alone.
    ``data`` is what is left, for the filesystem.
    """

    flags: int = 0
    cleared_flags: int = 0
    propagation: tuple[int, ...] = ()
    rec_attr_set: int = 0
    rec_attr_clr: int = 0
    extensions: int = 0
    id_mapped: bool = False
    id_map_recursive: bool = False
    data: str = ""

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def parse_mount_options(options: Iterable[str]) -> MountSpec:
    """Split ``options`` as runc's ``parseMountOptions`` does.

    Options apply in order, so a later ``rw`` undoes an earlier ``ro``.
    An option whose flag is 0 (``defaults``) falls through to the data
    string, exactly as in runc.
    """
    flags = cleared = rec_set = rec_clr = extensions = 0
    propagation: list[int] = []
    data: list[str] = []
    id_mapped = id_map_recursive = False
    for option in options:
        flag_entry = _FLAGS.get(option)
        if flag_entry is not None and flag_entry[1] != 0:
            clear, flag = flag_entry
            if clear:
                flags &= ~flag
                cleared |= flag
            else:
                flags |= flag
                cleared &= ~flag
        elif PROPAGATION.get(option):
            propagation.append(PROPAGATION[option])
        elif option in _REC_ATTRS:
            clear, attr = _REC_ATTRS[option]
            if clear:
                rec_clr |= attr
                rec_set &= ~attr
            else:
                rec_set |= attr
                rec_clr &= ~attr
                if attr & MOUNT_ATTR__ATIME == attr:
                    # mount_setattr(2): an access-time setting in attr_set
                    # needs MOUNT_ATTR__ATIME in attr_clr too.
                    rec_clr |= MOUNT_ATTR__ATIME
        elif option in _EXTENSIONS:
            clear, ext = _EXTENSIONS[option]
            extensions = extensions & ~ext if clear else extensions | ext
        elif option == "idmap":
            # runc: an idmap mount without its own mappings uses the
            # container's user namespace. Each marker replaces the mapping
            # an earlier one set up, so the last of the two decides.
            id_mapped, id_map_recursive = True, False
        elif option == "ridmap":
            id_mapped = id_map_recursive = True
        else:
            data.append(option)
    return MountSpec(
        flags=flags,
        cleared_flags=cleared,
        propagation=tuple(propagation),
        rec_attr_set=rec_set,
        rec_attr_clr=rec_clr,
        extensions=extensions,
        id_mapped=id_mapped,
        id_map_recursive=id_map_recursive,
        data=",".join(data),
    )
