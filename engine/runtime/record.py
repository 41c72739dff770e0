"""Recording what the CLI refuses before any monitor exists.

An unknown container id, a duplicate create, a bundle that does not load:
there is no monitor to record them, so the CLI appends the ``rejected``
event itself, through the DB-API store. Only this error path pays for
loading the machine's digest.
"""

from __future__ import annotations

import os

from engine.errors import RunlogError
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.settings import Settings
from engine.status import Actor, Outcome

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from hashlib import sha256
else:  # hashlib's OpenSSL backend costs 2 ms to import; the digest is the same
    from _sha256 import sha256

__all__ = ["machine_digest", "rejected"]


def _me() -> Actor:
    """This process, with its user, login uid and Slurm context (engine.identity)."""
    from engine.identity import enriched

    return enriched(Actor.current(), os.environ)


def _machine(settings: Settings) -> tuple[str, bytes, str]:
    from engine.machine.definition import resolve

    path = str(resolve(settings.machine, {}))
    with open(path, "rb") as fh:
        data = fh.read()
    return sha256(data).hexdigest(), data, path


def machine_digest(settings: Settings) -> str:
    return _machine(settings)[0]


def rejected(
    settings: Settings,
    container_id: str,
    trigger: str,
    error: RunlogError,
    request: Mapping[str, object] | None = None,
    *,
    source: str | None = None,
    actor: Actor | None = None,
) -> None:
    # The CLI refuses these itself, before any machine is asked (replay
    # does not hold the machine to them).
    payload = {"error": str(error), "request": dict(request or {}), "refused": type(error).__name__}
    digest, data, path = _machine(settings)
    event = NewEvent(
        container_id,
        trigger,
        source,
        None,
        Outcome.REJECTED,
        actor or _me(),
        digest,
        payload,
        root=os.path.abspath(settings.root),
    )
    with open_store(settings.db) as store:
        try:
            store.archive_machine(digest, data.decode("utf-8"), path)
        except UnicodeDecodeError:
            pass  # not a machine runlog could load; the event says so by its digest
        store.append(event)
