"""Mapping a new user namespace from outside: ``linux.uidMappings`` and
``linux.gidMappings`` written to ``/proc/PID/uid_map`` and ``gid_map``.

Who may write what (user_namespaces(7), "Defining user and group ID
mappings"):

* root (CAP_SETUID/CAP_SETGID in the parent namespace) writes any mapping;
* an unprivileged caller writes one line mapping its own effective uid
  (gid) of size 1; for ``gid_map`` only once ``/proc/PID/setgroups`` says
  ``deny``, which the kernel requires so that dropping a supplementary group
  cannot lift a restriction;
* anything else goes through the setuid helpers ``newuidmap`` and
  ``newgidmap`` (Debian's ``uidmap``), which allow the ranges
  ``/etc/subuid`` and ``/etc/subgid`` give the caller, and its own id.

runc does the same (its nsexec writes the maps, and runs the helpers when
a rootless config needs more than the caller's own id). The ranges are
checked here first, so that a refusal names the file, the user and the
range rather than the helper's terse words.
"""

from __future__ import annotations

import os

from engine.errors import ActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.oci.model import IDMapping

__all__ = ["SUBGID", "SUBUID", "check_ranges", "map_process", "subordinate_ranges"]

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
_HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


def map_process(
    pid: int, uid_mappings: Sequence[IDMapping], gid_mappings: Sequence[IDMapping]
) -> None:
    """Write the maps of process ``pid``'s (new, unmapped) user namespace."""
    euid, egid = os.geteuid(), os.getegid()
    if euid == 0:
        _write(pid, "uid_map", uid_mappings)
        _write(pid, "gid_map", gid_mappings)
        return
    user = _user_name(euid)
    if _own(uid_mappings, euid):
        _write(pid, "uid_map", uid_mappings)
    else:
        check_ranges("uidMappings", uid_mappings, SUBUID, user, euid)
        _helper("newuidmap", pid, uid_mappings)
    if _own(gid_mappings, egid):
        _deny_setgroups(pid)
        _write(pid, "gid_map", gid_mappings)
    else:
        check_ranges("gidMappings", gid_mappings, SUBGID, user, egid)
        _helper("newgidmap", pid, gid_mappings)


def _own(mappings: Sequence[IDMapping], own_id: int) -> bool:
    """One mapping of the caller's own id alone: what it may write itself."""
    return len(mappings) == 1 and mappings[0].host_id == own_id and mappings[0].size == 1


def _table(mappings: Sequence[IDMapping]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def _write(pid: int, name: str, mappings: Sequence[IDMapping]) -> None:
    if not mappings:
        return
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "w") as fh:
            fh.write(_table(mappings))
    except OSError as err:
        key = "uidMappings" if name == "uid_map" else "gidMappings"
        raise ActionError(
            f"linux.{key}: cannot write {path}: {err.strerror} "
            f"(mappings {_table(mappings).strip()!r})"
        ) from err


def _deny_setgroups(pid: int) -> None:
    path = f"/proc/{pid}/setgroups"
    try:
        with open(path, "w") as fh:
            fh.write("deny")
    except OSError as err:
        raise ActionError(f"cannot write 'deny' to {path}: {err.strerror}") from err


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def subordinate_ranges(path: str, user: str, own_id: int) -> list[tuple[int, int]]:
    """(first id, count) of every line of ``path`` (``name:first:count``)
    that names ``user`` or ``own_id``; an absent file has none."""
    ranges: list[tuple[int, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return ranges
    except OSError as err:
        raise ActionError(f"cannot read {path}: {err.strerror}") from err
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(own_id)):
            continue
        try:
            first, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        ranges.append((first, count))
    return ranges


def check_ranges(
    key: str, mappings: Sequence[IDMapping], path: str, user: str, own_id: int
) -> None:
    """Refuse a mapping whose host ids are neither the caller's own id nor
    within one of its ranges in ``path``: naming the file, the user and the
    range."""
    ranges = subordinate_ranges(path, user, own_id)
    for index, m in enumerate(mappings):
        last = m.host_id + m.size - 1
        if m.size == 1 and m.host_id == own_id:
            continue
        if any(first <= m.host_id and last < first + count for first, count in ranges):
            continue
        given = ", ".join(f"{first}-{first + count - 1}" for first, count in ranges)
        has = f"{path} gives {user} {given}" if given else f"{path} has no range for {user}"
        raise ActionError(
            f"linux.{key}[{index}]: host ids {m.host_id}-{last} (containerID {m.container_id}, "
            f"size {m.size}) are not {user}'s to map: {has} (uid {own_id} may map its own id "
            "alone without one)"
        )


def _helper(name: str, pid: int, mappings: Sequence[IDMapping]) -> None:
    """Run newuidmap/newgidmap PID ID HOSTID SIZE...; refuse naming it."""
    path = next((f"{d}/{name}" for d in _HELPER_DIRS if os.access(f"{d}/{name}", os.X_OK)), None)
    if path is None:
        raise ActionError(
            f"{name} is not installed (Debian: apt-get install uidmap): an unprivileged "
            "user needs it to map more than its own id"
        )
    argv = [path, str(pid)]
    for m in mappings:
        argv += [str(m.container_id), str(m.host_id), str(m.size)]
    import subprocess

    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        said = proc.stdout.decode(errors="replace").strip().replace("\n", "; ")
        raise ActionError(f"{name} {' '.join(argv[1:])}: exit {proc.returncode}: {said}")
