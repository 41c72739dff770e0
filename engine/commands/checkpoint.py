"""``runlog checkpoint`` and ``runlog restore``: runc's, through CRIU.

Both are the machine's (``checkpoint`` of a running or paused container,
``restore`` of a new one) and both fail for now: runlog does not drive
CRIU yet, and says what CRIU lacks on the host where ``criu check`` fails
(:mod:`engine.actions.criu`). The events have the image path and that
answer.
"""

from __future__ import annotations

import os

from engine.commands.container import _call
from engine.errors import UsageError
from engine.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["checkpoint", "restore"]


def _image_path(flags: dict[str, object]) -> str:
    path = str(flags.get("image_path") or "")
    if not path:
        # runc's default: ./checkpoint in the current directory
        path = "checkpoint"
    return os.path.abspath(path)


def checkpoint(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    request: dict[str, Any] = {
        "op": "checkpoint",
        "image_path": _image_path(flags),
        "work_path": os.path.abspath(str(flags["work_path"])) if flags.get("work_path") else "",
        "leave_running": bool(flags.get("leave_running")),
    }
    _call(settings, args[0], "checkpoint", request)
    return 0


def restore(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.actions.registry import REGISTRY
    from engine.eventlog import open_store
    from engine.machine.definition import load, resolve
    from engine.machine.runtime import Lifecycle
    from engine.service import Service
    from engine.status import Actor

    cid = args[0]
    bundle = os.path.abspath(str(flags.get("bundle") or "."))
    if not os.path.isfile(os.path.join(bundle, "config.json")):
        raise UsageError(f"restore {cid}: no config.json in the bundle {bundle}")
    definition = load(resolve(settings.machine, {}))
    request = {
        "bundle": bundle,
        "image_path": _image_path(flags),
        "detach": bool(flags.get("detach")),
    }
    with open_store(settings.db, group=settings.log_group) as store:
        # The restore's actions need no container drivers: nothing exists yet.
        service = Service(store, Lifecycle(definition, REGISTRY), _no_drivers)
        service.request(cid, "restore", Actor.current(), request)
    return 0


def _no_drivers(_cid: str) -> Any:
    return None
