"""runc's read-only commands: list, ps, spec, features (events: :mod:`engine.commands.events`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from engine import jsonfast
from engine.errors import ContainerNotFound, RunlogError, UsageError
from engine.oci import gojson
from engine.runtime.shared.statedir import STATE, StateDir
from engine.settings import Settings

__all__ = ["features", "list_", "ps", "spec"]


def _states(root: str) -> list[dict[str, Any]]:
    """Each container's state.json, with its owner's name (``owner``, as
    runc's list has it: the uid that made it, from runtime.json)."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    except OSError as err:  # another user's root (0700), as runc says it
        raise RunlogError(f"open {root}: {(err.strerror or str(err)).lower()}") from None
    found = []
    for name in names:
        statedir = StateDir(root, name)
        try:
            state = jsonfast.loads(statedir.read(STATE))
        except (RunlogError, ValueError):
            continue  # being created or deleted right now
        try:
            uid = statedir.runtime().get("owner")
        except (RunlogError, ValueError):
            uid = None
        state["owner"] = _user_name(uid if isinstance(uid, int) else 0)
        found.append(state)
    return found


def _user_name(uid: int) -> str:
    """runc's list: the owner's name, or ``#UID`` when it has none."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def list_(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    states = _states(settings.root)
    out = sys.stdout
    if flags.get("quiet"):
        for st in states:
            out.write(f"{st['id']}\n")
        return 0
    if flags.get("format") == "json":
        out.write(gojson.render(states) + "\n")
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for st in states:
        rows.append(
            (
                str(st["id"]),
                str(st.get("pid", 0)),
                str(st.get("status")),
                str(st.get("bundle")),
                str(st.get("created")),
                str(st.get("owner") or "root"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0


def _runtime(settings: Settings, container_id: str, trigger: str) -> dict[str, Any]:
    """The container's runtime.json; an unknown container is refused (and
    recorded) as ``trigger``."""
    statedir = StateDir(settings.root, container_id)
    try:
        return statedir.runtime()
    except ContainerNotFound:
        from engine.commands.container import absent

        raise absent(settings, statedir, trigger) from None


def cgroup_manager(settings: Settings, container_id: str, trigger: str) -> Any:
    """The container's cgroup manager, from the paths its monitor recorded.
    A rootless container with no cgroup the caller may write has none: a
    manager of no hierarchy, whose statistics are empty (runc prints its
    statistics of nothing too)."""
    paths = _runtime(settings, container_id, trigger).get("cgroup_paths") or {}
    if not paths:
        from engine.cgroups.rootless import RootlessManager

        return RootlessManager(None, [])
    from engine.cgroups import manager_at

    return manager_at(paths)


def namespace_pids(container_id: str, info: dict[str, Any]) -> list[int]:
    """The processes of the container's pid namespace, for a container
    without a cgroup to list them from (rootless, no hierarchy the caller
    may write, where runc's ps fails): those whose ``/proc/PID/ns/pid`` is
    the init's. Processes of another user are not readable, and not the
    caller's to see; none once the init has ended."""
    from engine.runtime.shared.statedir import process_start_time

    pid = info.get("init_pid")
    if not isinstance(pid, int) or process_start_time(pid) != info.get("init_start"):
        return []
    try:
        init = os.stat(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    own = os.stat("/proc/self/ns/pid")
    if (init.st_dev, init.st_ino) == (own.st_dev, own.st_ino):
        raise RunlogError(
            f"ps {container_id}: the container has no cgroup and no pid namespace of its "
            "own to list its processes from"
        )
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/pid")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (init.st_dev, init.st_ino):
            found.append(int(entry))
    return found


def ps(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    info = _runtime(settings, args[0], "ps")
    paths = info.get("cgroup_paths") or {}
    if paths:
        from engine.cgroups import manager_at

        pids = sorted(manager_at(paths).pids())
    else:
        pids = sorted(namespace_pids(args[0], info))
    if flags.get("format") == "json":
        sys.stdout.write(jsonfast.dumps(pids) + "\n")
        return 0
    # runc ps: `ps -ef` (or the given ps options), keeping the header and
    # the lines of the container's processes.
    import subprocess

    ps_args = args[1:] or ["-ef"]
    done = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # runc's words: ps's status and what ps said (an unknown option).
        said = " ".join(done.stderr.split("\n", 1)[0].split())
        raise UsageError(f"runlog ps: exit status {done.returncode}: {said}")
    lines = done.stdout.splitlines()
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("runlog ps: the ps output has no PID column")
    column = header.index("PID")
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            sys.stdout.write(line + "\n")
    return 0


def spec(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.oci.spec import default_spec

    bundle = str(flags.get("bundle") or ".")
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise RunlogError("File config.json exists. Remove it first.")
    rootless = bool(flags.get("rootless"))
    with open(path, "w") as fh:
        fh.write(gojson.render(default_spec(rootless=rootless), "\t"))
    return 0


def features(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.oci.spec import features as table

    sys.stdout.write(gojson.render(table(), "    ") + "\n")
    return 0
