"""The monitor's one dispatcher: every control request, from either transport.

``control.sock`` and the request spool hand each request here as bytes with
the actor who sent it (peer credentials, or the spool file's owner) and a
way to answer. The dispatcher decodes it (:mod:`engine.runtime.monitor.requests`),
refuses a peer that is neither root nor the container's owner, then acts:

- ``start``, ``pause``, ``resume``, ``kill``, ``delete`` are the machine's
  triggers, run through :class:`engine.service.Service` (refresh, guard,
  act, record);
- ``state`` and ``wait`` are answered from the container as the monitor
  holds it (``wait`` when the init has ended);
- ``console_size`` and ``reopen_log`` need a terminal and a log owned by the
  monitor (:attr:`Dispatcher.terminal`, :attr:`Dispatcher.log`): without
  one, refused, saying so. A container created with ``--log-path`` has a
  log, and with ``terminal: true`` such a terminal too
  (:mod:`engine.runtime.monitor.streams`).

Every request that is refused before it reaches the machine - malformed,
not permitted, unsupported - is recorded as a ``rejected`` event with the
op as trigger ("request" when there is none) and ``refused`` in the payload.
Accepted ``state`` and ``wait`` requests change nothing and are not events,
unless ``RUNLOG_RECORD_QUERIES=1`` was set for create: then they are ``ok``
events from the state to itself with ``query`` in the payload, which replay
does not check against the machine; schedulers poll ``state``, so queries
are committed without waiting for the disk.

The dispatcher also records what changes under runlog's feet: the init's
end (``exit``; by an actor ``external`` when a signal runlog did not send,
or the OOM killer, ended it) and a freezer written by hand (``pause`` or
``resume`` by ``external``).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import os
import time

from engine import wire
from engine.errors import LifecycleError, RunlogError, TransitionRejected
from engine.machine import vocabulary
from engine.machine.vocabulary import EXIT
from engine.runtime.monitor.container import Container
from engine.runtime.monitor.requests import Request, RequestError, decode
from engine.runtime.shared.record import queries_recorded
from engine.service import Service
from engine.status import Actor, Status, Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn, Protocol

    #: Delivers one reply; for ``wait``, possibly much later.
    Respond = Callable[[dict[str, Any]], None]
else:
    Protocol = object  # structural types, checked by mypy only

__all__ = ["Dispatcher", "LogUnopened", "NotPermitted", "Unsupported"]

#: Why a request never reached the machine (the payload's ``refused``).
MALFORMED = "malformed"
NOT_PERMITTED = "not permitted"
UNSUPPORTED = "unsupported"
NO_CGROUP = "no cgroup"
INTERNAL = "internal error"


class Terminal(Protocol):
    """The pty master the monitor owns (``terminal: true`` without a console socket)."""

    def resize(self, rows: int, cols: int) -> None: ...


class ContainerLog(Protocol):
    """The container log the monitor writes (``--log-path``)."""

    def reopen(self) -> None: ...

    def finish(self) -> None:
        """The init has ended: drain the streams into the log, end attached clients."""


class NotPermitted(LifecycleError):
    def __init__(self, container_id: str, uid: int | None, owner: int) -> None:
        super().__init__(
            container_id,
            f"permission denied: uid {uid} is neither root nor the owner of container "
            f"{container_id} (uid {owner})",
        )


class Unsupported(LifecycleError):
    """A request this container has nothing to act on with."""


class LogUnopened(LifecycleError):
    """A request refused, before anything is done, by a monitor woken from
    its rest that cannot open its event log again: the log's own error,
    and (the log being what records refusals) that it is not recorded."""

    def __init__(self, container_id: str, op: str, error: RunlogError) -> None:
        super().__init__(
            container_id,
            f"container {container_id}: {op} refused: {error}\n"
            f"runlog: the refusal was not recorded: {error}",
        )
        self.exit_code = error.exit_code


def error_reply(err: RunlogError) -> dict[str, Any]:
    return wire.failure(str(err), err.exit_code)


class Dispatcher:
    """Requests for one container, in the monitor's one thread."""

    def __init__(self, service: Service, container: Container) -> None:
        self.service = service
        self.container = container
        self.id = container.id
        self.me = Actor(os.getuid(), os.getpid(), Transport.MONITOR)
        self.waiters: list[Respond] = []
        # Waiters bound to the container (wait --bind), and who they are.
        self.bound: dict[Respond, Actor] = {}
        self.deleted = False
        # The pty the monitor owns and the container log (--log-path).
        self.terminal: Terminal | None = None
        self.log: ContainerLog | None = None
        # Signals runlog itself sent: an init killed by another was killed
        # from outside.
        self.sent: set[int] = set()
        self.oom_kills = _oom_kills(container.manager.paths)
        self.freezer_seen = _freezer(container)
        # Queries to record once their answer is out (_query), if asked to.
        self.queries: list[tuple[str, Actor, dict[str, Any], int]] = []
        self.record_queries = queries_recorded()
        # Detached exec'd processes whose end the monitor watches: by
        # pidfd, the exec_exit request that asked (engine.runtime.cli.execute).
        self.exec_watches: dict[int, dict[str, Any]] = {}
        # Each exec's id (its event's request "id", which its exec_exit names).
        self.execs = 0
        # What to record once the answer is out (an accepted exec).
        self.after: list[Callable[[], object]] = []
        # The loop's way to poll a new pidfd (set by the server).
        self.on_watch: Callable[[int], None] | None = None
        # Why the event log cannot be opened, if so (a monitor woken from
        # its rest: engine.runtime.monitor.handover.Unopened); None: it is open.
        self.log_problem: Callable[[], RunlogError | None] | None = None
        self._own_request = False

    # -- requests ------------------------------------------------------------

    def handle(self, data: bytes, actor: Actor, respond: Respond) -> None:
        """Decode, check, act, record; answer through ``respond`` (now, or at
        the init's end for ``wait``). Never raises."""
        try:
            reply = self._handle(data, actor, respond)
        except RunlogError as err:
            reply = error_reply(err)
        except Exception as err:  # a bug must not take the monitor down
            internal = RunlogError(f"container {self.id}: internal error: {err!r}")
            self._record(None, actor, internal, INTERNAL, {})
            reply = error_reply(internal)
        if reply is not None:
            respond(reply)
        self._record_queries()

    def forget(self, respond: Respond) -> None:
        """A waiting client went away: nothing to answer there. One bound to
        the container (``wait --bind``) takes it along (:meth:`_unbound`)."""
        self.waiters = [w for w in self.waiters if w is not respond]
        actor = self.bound.pop(respond, None)
        if actor is not None and self.container.exit is None:
            self._unbound(actor)

    def _unbound(self, actor: Actor) -> None:
        """A bound waiter went away before the init ended: killed (SIGKILL,
        which it cannot forward), as a scheduler kills what it tracks. Every
        process of the container is killed, by a ``kill`` recorded with the
        waiter as the actor, so that its end is the scheduler's."""
        self._own_request = True  # done even when the log cannot be opened: journaled
        try:
            self.handle(b'{"op": "kill", "signal": 9, "all": true}', actor, lambda _reply: None)
        finally:
            self._own_request = False

    def unreadable(self, actor: Actor, problem: str, respond: Respond) -> None:
        """A spool entry that is no request at all (a link, a fifo)."""
        error = RunlogError(f"malformed request: {problem}")
        self._record(None, actor, error, MALFORMED, {})
        respond(error_reply(error))

    def _handle(self, data: bytes, actor: Actor, respond: Respond) -> dict[str, Any] | None:
        permitted = actor.uid in (0, self.container.owner)
        try:
            request = decode(data)
        except RequestError as err:
            if not permitted:
                self._refuse_peer(err.op, actor, err.request or {})
            extra = {} if err.raw is None else {"raw": err.raw, "size": len(data)}
            self._record(err.op, actor, err, MALFORMED, err.request or {}, **extra)
            raise
        if not permitted:
            self._refuse_peer(request.op, actor, request.args)
        return self._dispatch(request, actor, respond)

    def _refuse_peer(self, op: str | None, actor: Actor, request: dict[str, Any]) -> NoReturn:
        error = NotPermitted(self.id, actor.uid, self.container.owner)
        self._record(op, actor, error, NOT_PERMITTED, request)
        raise error

    def _record(
        self,
        op: str | None,
        actor: Actor,
        error: RunlogError,
        refused: str,
        request: dict[str, Any],
        **extra: Any,
    ) -> None:
        trigger = op if op is not None and 0 < len(op) <= 64 else "request"
        try:
            self.service.refuse(self.id, trigger, actor, error, request, refused, **extra)
        except Exception:  # the log cannot take it; the reply still says no
            pass

    def _query(self, op: str, actor: Actor, args: dict[str, Any]) -> None:
        """A query is recorded right after it is answered (a scheduler
        polls ``state`` and waits for the answer, not for the log), with
        the time it was asked, before the monitor reads its next request."""
        if self.record_queries:
            self.queries.append((op, actor, args, time.time_ns()))

    def _record_queries(self) -> None:
        after, self.after = self.after, []
        for record in after:
            try:
                record()
            except Exception:  # recorded as rejected or failed, or the log cannot take it
                pass
        queries, self.queries = self.queries, []
        for op, actor, args, asked in queries:
            try:
                self.service.record_query(self.id, op, actor, args, time_ns=asked)
            except Exception:  # the log cannot take it; the answer went out
                pass

    def _dispatch(self, request: Request, actor: Actor, respond: Respond) -> dict[str, Any] | None:
        op, args = request.op, request.args
        self.refresh()
        if op == "state":
            self._query(op, actor, args)
            # "text": state.json as it is, which is runc's layout: what
            # `runlog state` prints, without rendering it again.
            assert self.container.state_text is not None
            text = self.container.state_text.decode()
            return wire.state_reply(self.container.status, self.state(), text)
        if op == "wait":
            self._query(op, actor, args)
            if self.container.exit is not None:
                return self._ok(exit=dict(self.container.exit))
            self.waiters.append(respond)
            if args["bind"]:
                self.bound[respond] = actor
            return None
        if self.log_problem is not None and not self._own_request:
            problem = self.log_problem()
            if problem is not None:
                raise LogUnopened(self.id, op, problem)
        if op == "console_size":
            if self.terminal is None:
                self._unsupported(op, actor, args, "has no terminal owned by its monitor")
            self.terminal.resize(args["rows"], args["cols"])
            return self._ok()
        if op == "reopen_log":
            if self.log is None:
                self._unsupported(op, actor, args, "has no container log")
            self.log.reopen()
            return self._ok()
        if op == "delete":
            return self._delete(actor, args["force"])
        if op == "exec":
            return self._exec(actor, args)
        if op == "checkpoint":
            return self._checkpoint(actor, args)
        if op == "update":
            return self._update(actor, args)
        if op in ("pause", "resume"):
            self._cgroup_lacks(op, actor, args)
        if op == "exec_exit":
            return self._exec_exit(actor, args)
        if op == "kill":
            try:
                self.service.request(self.id, op, actor, args)
            finally:
                self.freezer_seen = _freezer(self.container)
            self.sent.add(args["signal"])
            return self._ok()
        if op == "start" and args["bind"]:
            self._start_bound(actor, args, respond)
            return None
        return self._transition(op, actor, args)

    def _start_bound(self, actor: Actor, args: dict[str, Any], respond: Respond) -> None:
        """``start --bind``: the client is a bound waiter from before the
        start, so that whenever it goes (killed during a long start hook,
        say) the container goes with it; answered at the init's end. A
        start refused or failed is answered with why, and binds nothing."""
        self.waiters.append(respond)
        self.bound[respond] = actor
        self._transition("start", actor, args, respond)

    def _transition(
        self, op: str, actor: Actor, args: dict[str, Any], bound: Respond | None = None
    ) -> dict[str, Any]:
        """start, pause, resume (state.json follows the event: Service.project).
        ``bound``: a bound start's waiter, let go if the start fails."""
        try:
            self.service.request(self.id, op, actor, args)
        except RunlogError:
            if bound is not None:
                self.waiters = [w for w in self.waiters if w is not bound]
                self.bound.pop(bound, None)
            if op == "start" and self.container.exit is not None:
                # The failed start's undo killed the init (spec 1.3: a
                # poststart hook that fails stops the container) and reaped it.
                self.sent.add(_signal.SIGKILL)
            self.refresh()  # its end recorded before the error goes out
            raise
        finally:
            if op != "start":  # the freezer is pause's and resume's to change
                self.freezer_seen = _freezer(self.container)
        return self._ok()

    def _update(self, actor: Actor, args: dict[str, Any]) -> dict[str, Any]:
        """``runlog update``: the machine's ``update``; the reply gives what
        its action set."""
        self._cgroup_lacks("update", actor, args)
        event = self.service.request(self.id, "update", actor, args)
        (result,) = [a.get("result") for a in event.payload.get("actions", [])]
        return self._ok(update=result)

    def _checkpoint(self, actor: Actor, args: dict[str, Any]) -> dict[str, Any]:
        """CRIU's dump, through the machine; without ``leave_running`` the
        tree ends (a SIGKILL of CRIU's, at runlog's asking)."""
        try:
            self.service.request(self.id, "checkpoint", actor, args)
            if not args["leave_running"]:
                self.sent.add(_signal.SIGKILL)
        finally:
            self.refresh()  # a dump that ended the tree: stopped before the reply
        return self._ok()

    def _exec(self, actor: Actor, args: dict[str, Any]) -> dict[str, Any]:
        """``runlog exec``: the machine's ``exec`` (refused when stopped); in
        a paused container only with ``ignore_paused``, runc's rule. The
        reply gives the init's pid, whose namespaces the process joins,
        and the exec's id (in its event's request), which its ``exec_exit``
        names."""
        if self.container.status == Status.PAUSED and not args["ignore_paused"]:
            error = TransitionRejected(
                self.id,
                "exec",
                Status.PAUSED,
                "cannot exec in a paused container (use --ignore-paused to override)",
            )
            self._record("exec", actor, error, "paused", args)
            raise error
        if not self.service.lifecycle.may(self.container.status, "exec"):
            self.service.request(self.id, "exec", actor, args)  # recorded, refused
        # Allowed: answered at once, and recorded right after (as a query
        # is), so that the process starts without waiting for the commit.
        self.execs += 1
        request = {**args, "id": self.execs}
        self.after.append(lambda: self.service.request(self.id, "exec", actor, request))
        return self._ok(exec=self.execs, pid=self.container.pid)

    def _exec_exit(self, actor: Actor, args: dict[str, Any]) -> dict[str, Any]:
        """An exec'd process has ended (its caller saw it), or, with
        ``watch``, is to be watched until it ends."""
        if not args["watch"]:
            self._record_exec_exit(actor, args)
            return self._ok()
        pid = args["pid"]
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, ValueError, OSError):
            self._record_exec_exit(self.me, {**args, "reaped_by_caller": True})
            return self._ok()
        self.exec_watches[fd] = {**args, "start": _start_time(pid)}
        if self.on_watch is not None:
            self.on_watch(fd)
        return self._ok()

    def exec_ended(self, fd: int) -> None:
        """A watched exec'd process has ended: its status, if its parent has
        not reaped it yet (a zombie's /proc/PID/stat keeps it), is recorded."""
        args = self.exec_watches.pop(fd)
        os.close(fd)
        status = _zombie_status(args["pid"], args.pop("start"))
        if status is None:
            status = {"reaped_by_caller": True}
        self._record_exec_exit(self.me, {**args, **status})

    def _record_exec_exit(self, actor: Actor, args: dict[str, Any]) -> None:
        request = {k: v for k, v in args.items() if v is not None and k != "watch"}
        try:
            self.service.request(self.id, "exec_exit", actor, request)
        except RunlogError:
            pass  # recorded as rejected or failed

    def _cgroup_lacks(self, op: str, actor: Actor, args: dict[str, Any]) -> None:
        """Rootless, without the hierarchy ``op`` needs (no writable
        freezer, a limit where no cgroup is the caller's): refused before
        the machine is asked, in runc's words, the container untouched."""
        if not self.service.lifecycle.may(self.container.status, op):
            return  # the machine's own refusal says it
        why = self.container.manager.lacks(op, args.get("resources"))
        if why is not None:
            error = Unsupported(self.id, f"{op} {self.id}: {why}")
            self._record(op, actor, error, NO_CGROUP, args)
            raise error

    def _unsupported(self, op: str, actor: Actor, args: dict[str, Any], what: str) -> NoReturn:
        error = Unsupported(self.id, f"{op}: container {self.id} {what}")
        self._record(op, actor, error, UNSUPPORTED, args)
        raise error

    def _ok(self, **extra: Any) -> dict[str, Any]:
        return wire.ok(self.container.status, self.state(), **extra)

    def state(self) -> dict[str, Any]:
        """The OCI state as ``state.json`` has it: what the monitor last
        wrote there (at create already, before its loop serves)."""
        assert self.container.state is not None
        return dict(self.container.state)

    def abandon(self, actor: Actor) -> None:
        """Undo a create the monitor cannot go on to serve: ``delete
        --force``, recorded. If the log or the state directory fails too,
        the init and the cgroup go all the same."""
        try:
            self._delete(actor, True)
        except BaseException:
            drivers = self.container.drivers()
            drivers.process.kill_init()
            try:
                drivers.cgroups.destroy()
            except RunlogError:
                pass
            raise

    def _delete(self, actor: Actor, force: bool) -> dict[str, Any]:
        c = self.container
        if force and c.exit is None:
            # delete --force: kill everything, wait for the init, then delete.
            kill = {"signal": _signal.SIGKILL, "all": True}
            self.service.request(self.id, vocabulary.KILL, actor, kill)
            self.sent.add(_signal.SIGKILL)
            c.reap(block=True)
            self.exited()
        elif force:
            _kill_leftovers(c)
        self.service.request(self.id, vocabulary.DELETE, actor, {"force": force})
        self.deleted = True
        return dict(wire.DELETED)

    # -- what happens by itself ------------------------------------------------

    def retry_journal(self) -> bool:
        """Write the journal into the log if it takes writes again; whether
        events still wait in it."""
        journal = self.service.journal
        if journal is None or not journal.pending:
            return False
        try:
            self.service.flush_journal()
        except RunlogError:
            return True
        return journal.pending

    def refresh(self) -> None:
        """Record the init's end now if it has ended and its end is not
        recorded yet, so a reply never shows a dead container running or
        created. Not recorded yet: the status is not ``stopped``, though
        the init may be reaped already (by the undo of a failed start)."""
        c = self.container
        if c.status != Status.STOPPED and c.reap(block=False):
            self.exited()

    def exited(self) -> None:
        """The init has ended: record ``exit``, keep the status, answer ``wait``."""
        c = self.container
        c.reap(block=True)
        if self.log is not None:
            self.log.finish()  # all it wrote is in the log before its end is
        actor, cause = self._exit_cause()
        try:
            self.service.request(self.id, EXIT, actor, cause)
        except Exception:  # the monitor must outlive any error of the log
            pass  # recorded as rejected/failed (or journaled): the status stays as the log has it
        waiters, self.waiters = self.waiters, []
        self.bound.clear()
        reply = self._ok(exit=dict(c.exit or {})) if waiters else {}
        for respond in waiters:
            respond(reply)

    def _exit_cause(self) -> tuple[Actor, dict[str, Any]]:
        status = self.container.exit or {}
        signo = status.get("signal")
        if signo is None or signo in self.sent:
            return self.me, {}
        external = Actor(None, None, Transport.EXTERNAL)
        if _oom_kills(self.container.manager.paths) > self.oom_kills:
            return external, {"cause": "oom", "signal": signo}
        return external, {"cause": "a signal runlog did not send", "signal": signo}

    def freezer_changed(self) -> bool:
        """Check the freezer after a notification (or a poll); record a
        change nobody asked runlog for. True while it is still freezing,
        so the caller looks again shortly."""
        c = self.container
        self.refresh()
        if c.exit is not None or c.status not in {state for state, _ in vocabulary.FREEZER}:
            return False
        now = _freezer(c)
        if now == "freezing":
            return True
        if now == self.freezer_seen:
            return False
        self.freezer_seen = now
        trigger = vocabulary.FREEZER.get((c.status, now or ""))
        if trigger is None:
            return False
        external = Actor(None, None, Transport.EXTERNAL)
        try:
            self.service.request(self.id, trigger, external, {"noticed": "freezer"})
        except Exception:  # the monitor must outlive any error of the log
            return False  # recorded as rejected or failed (or journaled)
        finally:
            self.freezer_seen = _freezer(c)
        return False


def _kill_leftovers(container: Container) -> None:
    """delete --force of a container whose init has ended: what is still in
    its cgroup (a process the init left, a stage that never got to exec)
    is killed, as runc's delete --force kills every process, so the cgroup
    can go. The init is gone, so this is no ``kill`` of the container."""
    manager = container.manager
    deadline = time.monotonic() + 5
    while time.monotonic() <= deadline:
        try:
            if not manager.kill_all():
                return
        except RunlogError:
            return
        _reap_children()  # the monitor is their subreaper
        time.sleep(0.01)


def _reap_children() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _freezer(container: Container) -> str | None:
    try:
        return container.manager.freezer_state()
    except RunlogError:
        return None


#: The freezer's state as the dispatcher sees it (None: none to read).
freezer_of = _freezer


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields if len(fields) >= 50 else None


def _zombie_status(pid: int, start: str | None) -> dict[str, int] | None:
    """How the process ``pid`` (started at ``start``) ended, read from its
    zombie's /proc/PID/stat (field 52, exit_code, Linux 3.5); ``None`` once
    its parent has reaped it."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] != "Z" or fields[19] != start:
        return None
    status = int(fields[49])
    if status & 0x7F:
        return {"signal": status & 0x7F}
    return {"exit_code": (status >> 8) & 0xFF}


def _oom_kills(paths: dict[str, str]) -> int:
    """How many processes the OOM killer has killed in the cgroup (v1
    memory.oom_control, v2 memory.events: ``oom_kill N``); 0 if unknown."""
    for key, name in (("memory", "memory.oom_control"), ("unified", "memory.events")):
        directory = paths.get(key)
        if directory is None:
            continue
        try:
            with open(os.path.join(directory, name)) as fh:
                for line in fh:
                    word, _, value = line.partition(" ")
                    if word == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0
