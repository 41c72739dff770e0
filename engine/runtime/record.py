"""Recording what the CLI refuses before any monitor exists.

An unknown container id, a duplicate create, a bundle that does not load:
there is no monitor to record them, so the CLI appends the ``rejected``
event itself, through the DB-API store. Only this error path pays for
loading the machine's digest.
"""

from __future__ import annotations

from engine.errors import RunlogError, StoreBusyError
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

__all__ = ["command_refused", "machine_digest", "query", "rejected"]


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
    wait: bool = True,
) -> None:
    """Record a refusal. ``wait=False``: if another process holds the log's
    write lock, the caller does not wait for it; a detached process
    appends the event once it can."""
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
        actor or Actor.current(),
        digest,
        payload,
    )
    if not wait:
        try:
            _append(settings, event, data, path, wait=False)
        except StoreBusyError:
            _later(settings, event, data, path)
        return
    _append(settings, event, data, path)


def query(settings: Settings, container_id: str, trigger: str, status: str | None) -> None:
    """Record a query the CLI answered itself (``state`` from state.json,
    its monitor too busy), without waiting on the log's write lock."""
    digest, data, path = _machine(settings)
    payload = {"request": {}, "query": True, "answered_from": "state.json"}
    event = NewEvent(
        container_id, trigger, status, status, Outcome.OK, Actor.current(), digest, payload
    )
    try:
        _append(settings, event, data, path, wait=False)
    except StoreBusyError:
        _later(settings, event, data, path)


def _append(
    settings: Settings, event: NewEvent, data: bytes, path: str, *, wait: bool = True
) -> None:
    with open_store(settings.db, wait=wait) as store:
        try:
            store.archive_machine(event.machine_digest, data.decode("utf-8"), path)
        except UnicodeDecodeError:
            pass  # not a machine runlog could load; the event says so by its digest
        store.append(event)


def _later(settings: Settings, event: NewEvent, data: bytes, path: str) -> None:
    """Append ``event`` from a detached process once the lock is free: the
    caller answers now. The process forks twice so that nobody waits for it."""
    import os

    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # a caller reading our output sees its end now
            os.dup2(devnull, fd)
        if os.fork() == 0:
            try:
                _append(settings, event, data, path)
            finally:
                os._exit(0)
    finally:
        os._exit(0)


def command_refused(
    settings: Settings, command: str | None, words: list[str], error: RunlogError
) -> None:
    """A command line refused before any monitor was asked: an invalid id,
    an unknown command or flag, an unknown signal. Recorded for the
    container it names (the first word that is an id in use, or the
    invalid id itself); nothing is recorded when it names none. The log
    refusing it too is said on stderr, never instead of the error."""
    from engine.errors import InvalidId
    from engine.layout import is_valid_id
    from engine.runtime.statedir import StateDir

    if isinstance(error, InvalidId):
        container_id = error.container_id[:1024]
    else:
        named = [w for w in words if is_valid_id(w) and StateDir(settings.root, w).exists()]
        if not named:
            return
        container_id = named[0]
    trigger = command if command and 0 < len(command) <= 64 else "request"
    try:
        rejected(settings, container_id, trigger, error, {"argv": words})
    except (RunlogError, OSError) as err:
        import sys

        sys.stderr.write(f"runlog: the refusal was not recorded: {err}\n")
