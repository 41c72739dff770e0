"""``runlog checkpoint`` and ``runlog restore``: runc's, through CRIU.

Both are the machine's. ``checkpoint`` of a running or paused container
asks its monitor, which runs CRIU's dump (without ``--leave-running`` the
tree ends, and the container is stopped). ``restore`` starts a monitor as
``create`` does, whose ``restore`` transition makes the cgroup and runs
CRIU's restore there: the restored tree is the container's init, running;
without ``--detach`` runlog waits for it and exits with its status, as
``run``. Where ``criu check`` fails, both fail saying what CRIU lacks on
the host (:mod:`engine.actions.criu`). The events have the image path
and CRIU's outcome.
"""

from __future__ import annotations

import os
from typing import Any

from engine.commands.container import _call
from engine.errors import RunlogError, UsageError
from engine.settings import Settings

__all__ = ["checkpoint", "restore"]

# runc's checkpoint and restore flags that go to CRIU, as the request has them.
_CRIU_FLAGS = (
    "tcp_established",
    "ext_unix_sk",
    "shell_job",
    "file_locks",
    "manage_cgroups_mode",
    "empty_ns",
    "auto_dedup",
    "lazy_pages",
)


def _image_path(flags: dict[str, object]) -> str:
    path = str(flags.get("image_path") or "")
    if not path:
        # runc's default: ./checkpoint in the current directory
        path = "checkpoint"
    return os.path.abspath(path)


def _criu_request(flags: dict[str, object], names: tuple[str, ...]) -> dict[str, Any]:
    """The image path and CRIU's flags that were given. (The criu run is
    the monitor's to find: ``RUNLOG_CRIU`` as create had it, or PATH's.)"""
    request: dict[str, Any] = {
        "image_path": _image_path(flags),
        "work_path": os.path.abspath(str(flags["work_path"])) if flags.get("work_path") else "",
    }
    for name in (*_CRIU_FLAGS, *names):
        if flags.get(name):
            request[name] = flags[name]
    return request


def checkpoint(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    request = _criu_request(flags, ("parent_path", "pre_dump", "page_server", "status_fd"))
    request["op"] = "checkpoint"
    request["leave_running"] = bool(flags.get("leave_running"))
    _call(settings, args[0], "checkpoint", request)
    return 0


def restore(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine import control
    from engine.commands import container
    from engine.runtime.shared.statedir import CONTROL, StateDir

    cid = args[0]
    bundle = os.path.abspath(str(flags.get("bundle") or "."))
    request = _criu_request(flags, ("lsm_profile", "lsm_mount_context"))
    if not os.path.isfile(os.path.join(bundle, "config.json")):
        error = UsageError(f"restore {cid}: no config.json in the bundle {bundle}")
        from engine.runtime.shared import record

        record.rejected(settings, cid, "restore", error, {"bundle": bundle, **request})
        raise error
    detach = bool(flags.get("detach"))
    # create's monitor, told to restore; in the foreground restore waits for
    # the status, as run: its monitor reaps.
    init_parent = settings.init_parent if detach else "monitor"
    container._create(settings, flags, cid, init_parent, restore=request)
    if detach:
        return 0
    path = StateDir(settings.root, cid).file(CONTROL)
    try:
        status = control.call(path, {"op": "wait"}, timeout=None)["exit"]
    except KeyboardInterrupt:
        raise RunlogError(f"restore {cid}: interrupted; the container runs on") from None
    container._discard(settings, cid, path)  # as run: gone once it has ended
    return container._status_code(status)
