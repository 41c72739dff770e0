"""Recording what the CLI refuses before any monitor exists.

An unknown container id, a duplicate create, a bundle that does not load:
there is no monitor to record them, so the CLI appends the ``rejected``
event itself, through the DB-API store, in the state the log has the
container in (or none, if it does not exist), so that a replay finds each
refusal where it happened. Only this error path pays for loading the
machine.
"""

from __future__ import annotations

import os

from engine.errors import ConcurrencyError, RunlogError
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.settings import Settings
from engine.status import Actor, Outcome, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from hashlib import sha256

    from engine.eventlog.store import EventStore
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


def _gone(settings: Settings, path: str) -> tuple[str, ...]:
    """The machine's terminal states: a container there no longer exists."""
    import os

    from engine.machine.definition import load

    cache = settings.cache_dir()
    try:
        definition = load(path, cache=None if cache is None else os.path.join(cache, "machines"))
    except RunlogError:
        return (Status.DELETED,)  # a machine that does not load: the usual end
    return definition.terminal_states()


def _head(store: EventStore, container_id: str, gone: tuple[str, ...]) -> tuple[str | None, int]:
    row = store.container(container_id)
    if row is None:
        return None, 0
    return (None if row.state is None or row.state in gone else row.state), row.seq


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
    gone = _gone(settings, path) if source is None else ()
    with open_store(settings.db) as store:
        try:
            store.archive_machine(digest, data.decode("utf-8"), path)
        except UnicodeDecodeError:
            pass  # not a machine runlog could load; the event says so by its digest
        who = actor or _me()
        for _attempt in range(5):
            state, seq = _head(store, container_id, gone)
            event = NewEvent(
                container_id,
                trigger,
                state if source is None else source,
                None,
                Outcome.REJECTED,
                who,
                digest,
                payload,
                root=os.path.abspath(settings.root),
            )
            try:
                store.append(event, expected_seq=seq)
                return
            except ConcurrencyError:
                continue  # a monitor recorded something meanwhile: read the state again
        store.append(event)
