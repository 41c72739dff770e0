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

from engine.errors import ConcurrencyError, RunlogError, StoreBusyError
from engine.eventlog import open_store
from engine.eventlog.record import NewEvent
from engine.settings import Settings
from engine.status import Actor, Outcome, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from engine.eventlog.store import EventStore

__all__ = [
    "command_refused",
    "machine_digest",
    "not_recorded",
    "queries_recorded",
    "query",
    "rejected",
]


def _me() -> Actor:
    """This process, with its user, login uid and Slurm context (engine.identity)."""
    from engine.identity import enriched

    return enriched(Actor.current(), os.environ)


def _machine(settings: Settings) -> tuple[str, bytes, str]:
    from engine.machine.definition import digest_of, resolve

    path = str(resolve(settings.machine, {}))
    with open(path, "rb") as fh:
        data = fh.read()
    return digest_of(data), data, path


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
    wait: bool = True,
) -> None:
    """Record a refusal. ``wait=False``: if another process holds the log's
    write lock, the caller does not wait for it; a detached process
    appends the event once it can."""
    # The CLI refuses these itself, before any machine is asked (replay
    # does not hold the machine to them).
    payload = {"error": str(error), "request": dict(request or {}), "refused": type(error).__name__}
    digest, data, path = _machine(settings)
    gone = _gone(settings, path) if source is None else ()
    who = actor or _me()
    root = os.path.abspath(settings.root)

    def build(state: str | None) -> NewEvent:
        return NewEvent(
            container_id,
            trigger,
            state if source is None else source,
            None,
            Outcome.REJECTED,
            who,
            digest,
            payload,
            root=root,
        )

    if not wait:
        try:
            _append(settings, container_id, build, gone, data, path, wait=False)
        except StoreBusyError:
            _later(settings, container_id, build, gone, data, path)
        return
    _append(settings, container_id, build, gone, data, path)


def queries_recorded() -> bool:
    """Whether ``state`` and ``wait`` are events: off unless
    ``RUNLOG_RECORD_QUERIES`` says so (a polled container would otherwise
    add a row a second)."""
    return os.environ.get("RUNLOG_RECORD_QUERIES", "") in ("1", "true", "yes")


def query(settings: Settings, container_id: str, trigger: str, status: str | None) -> None:
    """Record a query the CLI answered itself (``state`` from state.json,
    its monitor too busy), where queries are recorded, without waiting on
    the log's write lock.

    A query changes nothing: it is recorded in the state the log has the
    container in as it is appended, from that state to itself. What
    state.json said (``status``) goes in the payload as ``answered``: it
    may lag the log (a monitor between its commit and state.json), and
    an ``ok`` event's state is the container's from then on."""
    if not queries_recorded():
        return
    digest, data, path = _machine(settings)
    payload = {"request": {}, "query": True, "answered_from": "state.json", "answered": status}
    who = _me()
    root = os.path.abspath(settings.root)
    gone = _gone(settings, path)

    def build(state: str | None) -> NewEvent:
        return NewEvent(
            container_id, trigger, state, state, Outcome.OK, who, digest, payload, root=root
        )

    try:
        _append(settings, container_id, build, gone, data, path, wait=False)
    except StoreBusyError:
        _later(settings, container_id, build, gone, data, path)


def _append(
    settings: Settings,
    container_id: str,
    build: Callable[[str | None], NewEvent],
    gone: tuple[str, ...],
    data: bytes,
    path: str,
    *,
    wait: bool = True,
) -> None:
    """Append ``build(state)``, ``state`` being the one the log has the
    container in as the event is appended (read again if a monitor
    recorded something meanwhile)."""
    with open_store(settings.db, wait=wait, group=settings.log_group) as store:
        event = build(None)
        try:
            store.archive_machine(event.machine_digest, data.decode("utf-8"), path)
        except UnicodeDecodeError:
            pass  # not a machine runlog could load; the event says so by its digest
        # Each try reads the head and appends after it; a monitor's append
        # between the two (milliseconds) costs one more try.
        for _attempt in range(50):
            state, seq = _head(store, container_id, gone)
            event = build(state)
            try:
                store.append(event, expected_seq=seq)
                return
            except ConcurrencyError:
                continue  # a monitor recorded something meanwhile: read the state again
        store.append(event)


def _later(
    settings: Settings,
    container_id: str,
    build: Callable[[str | None], NewEvent],
    gone: tuple[str, ...],
    data: bytes,
    path: str,
) -> None:
    """Append the event from a detached process once the lock is free: the
    caller answers now. The process forks twice so that nobody waits for it."""
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
                _append(settings, container_id, build, gone, data, path)
            finally:
                os._exit(0)
    finally:
        os._exit(0)


def not_recorded(error: RunlogError, problem: BaseException) -> None:
    """Fold into ``error``'s one line that its refusal is not in the event
    log, and why: said with the error, never instead of it."""
    why = " ".join(str(problem).split())
    error.args = (f"{error} (not recorded: {why})",)


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
    from engine.runtime.shared.statedir import StateDir

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
