"""The real hook driver: a container's OCI hooks run as processes.

:class:`HookRunner` implements :class:`engine.actions.base.HookDriver`
(config.md "POSIX-platform Hooks", runtime.md "Lifecycle") the way runc does:
each hook of a point runs in order, with ``args`` as its argv (``args[0]``
included; ``[path]`` when there are none), exactly ``env`` as its
environment, the state JSON on stdin, stdout and stderr captured, and
``timeout`` enforced by SIGKILL to its process group. The first failure
stops the point and raises :class:`engine.errors.ActionError`; at a point
whose failures only warn (``keep_going``: poststop, runtime.md step 13 "the
remaining hooks and lifecycle continue"), every hook runs and the error,
naming each failure, comes after the last.

Where hooks run:

- ``prestart``, ``createRuntime``, ``poststart``, ``poststop``: in the
  runtime's namespaces, a plain fork and exec.
- ``createContainer``: in the container's namespaces, with the path resolved
  in the runtime's: the executable is opened before the child joins, and
  executed by file descriptor.
- ``startContainer``: in the container's namespaces, with the path resolved
  in the container's (the spec says so for this point alone), so it is
  executed by path after the join.

One run is recorded as a dict: ``path``, ``exit_code`` (``None`` when the
hook did not exit by itself), ``duration_ms``, ``stderr_tail`` and
``stdout_tail`` (the last :data:`TAIL_BYTES` bytes, decoded with
replacement), plus ``signal`` when a signal ended it, ``timed_out`` when the
timeout did, and ``error`` when it could not be started at all.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stub
import os
import select
import time

from engine import jsonfast
from engine.errors import ActionError
from engine.linux import syscalls
from engine.oci.model import Hook, Hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = ["IN_CONTAINER", "TAIL_BYTES", "HookRunner"]

#: How much of a hook's stderr (and stdout) is kept.
TAIL_BYTES = 4096

#: config.md: these points "MUST be executed in the container namespace".
IN_CONTAINER = frozenset({"createContainer", "startContainer"})

# The order nsenter(1) joins in. The user namespace is left out of the first
# pass: see _join.
_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "mount", "time")
_CHUNK = 65536
_DRAIN_READS = 32


class HookRunner:
    """Runs the hooks of one container's config.

    ``namespace_pid`` gives the pid of the container's init (``None`` when
    there is none); it is asked only at the points that join its namespaces.
    The caller must be single-threaded while ``run`` forks, and must not
    reap children it does not know (``waitpid(-1)``) meanwhile.
    """

    def __init__(self, hooks: Hooks, namespace_pid: Callable[[], int | None]) -> None:
        self.hooks = hooks
        self.namespace_pid = namespace_pid

    def run(
        self, point: str, state: Mapping[str, Any], *, keep_going: bool = False
    ) -> list[dict[str, Any]]:
        try:
            hooks = self.hooks.at(point)
        except ValueError as err:
            raise ActionError(str(err), runs=[]) from err
        if not hooks:
            return []
        payload = jsonfast.dumps(dict(state)).encode()
        namespaces = self._container_namespaces(point) if point in IN_CONTAINER else []
        runs: list[dict[str, Any]] = []
        failures: list[str] = []
        try:
            for hook in hooks:
                run, failure = _run_one(point, hook, payload, namespaces)
                runs.append(run)
                if failure is not None:
                    failures.append(failure)
                    if not keep_going:
                        break
        finally:
            for _name, fd in namespaces:
                os.close(fd)
        if failures:
            raise ActionError("; ".join(failures), runs=runs)
        return runs

    def _container_namespaces(self, point: str) -> list[tuple[str, int]]:
        """Open the namespaces the init has of its own, in join order.

        Namespaces the container shares with the runtime are skipped (runc
        joins only those that differ, too): joining one's own is a no-op at
        best and an EPERM for the user namespace.
        """
        pid = self.namespace_pid()
        if pid is None:
            raise ActionError(
                f"{point} hooks run in the container's namespaces, "
                "but the container has no init process",
                runs=[],
            )
        opened: list[tuple[str, int]] = []
        try:
            for name in _JOIN_ORDER:
                file = syscalls.NS_FILES[name]
                try:
                    ours = os.stat(f"/proc/self/ns/{file}")
                except FileNotFoundError:
                    continue  # the kernel has no such namespace type
                fd = os.open(f"/proc/{pid}/ns/{file}", os.O_RDONLY | os.O_CLOEXEC)
                theirs = os.fstat(fd)
                if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                    os.close(fd)
                else:
                    opened.append((name, fd))
        except OSError as err:
            for _name, fd in opened:
                os.close(fd)
            raise ActionError(
                f"{point} hooks: cannot open the namespaces of the container's init "
                f"(pid {pid}): {err.strerror}",
                runs=[],
            ) from err
        return opened


def _run_one(
    point: str, hook: Hook, payload: bytes, namespaces: Sequence[tuple[str, int]]
) -> tuple[dict[str, Any], str | None]:
    """Run one hook; return its run dict and the failure message, if it failed."""
    run: dict[str, Any] = {
        "path": hook.path,
        "exit_code": None,
        "duration_ms": 0.0,
        "stderr_tail": "",
        "stdout_tail": "",
    }
    argv = list(hook.args) or [hook.path]
    try:
        if not os.path.isabs(hook.path):
            # config.md: "path MUST be absolute"; no PATH lookup, as runc.
            raise ValueError("path is not absolute")
        env = _environment(hook.env)
        exe: int | None = None
        if point == "createContainer":
            # config.md: createContainer's path "MUST resolve in the runtime
            # namespace": open it here, execute the fd after the join.
            exe = os.open(hook.path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError) as err:
        text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        run["error"] = text
        return run, f"{point} hook {hook.path} could not be executed: {text}"
    try:
        outcome = _Process(hook, argv, env, exe, namespaces).wait(payload)
    finally:
        if exe is not None:
            os.close(exe)
    run.update(outcome.run)
    return run, outcome.failure(point, hook)


def _environment(entries: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key or "\0" in entry:
            raise ValueError(f"env entry {entry!r} is not KEY=VALUE")
        # Go's os/exec, which runc uses, keeps the last of duplicate keys too.
        env.pop(key, None)
        env[key] = value
    return env


class _Outcome:
    def __init__(self) -> None:
        self.run: dict[str, Any] = {}
        self.status: int | None = None
        self.error: tuple[str, str] | None = None  # (stage, text)
        self.timed_out = False
        self.timeout = 0

    def failure(self, point: str, hook: Hook) -> str | None:
        head = f"{point} hook {hook.path}"
        if self.error is not None:
            stage, text = self.error
            if stage == "exec":
                return f"{head} could not be executed: {text}"
            return f"{head} could not {stage}: {text}"
        if self.timed_out:
            # runc: "hook ran past specified timeout of %.1fs".
            return _with_tail(f"{head} timed out after {self.timeout} s", self.run)
        status = self.status
        assert status is not None
        if os.WIFSIGNALED(status):
            signo = os.WTERMSIG(status)
            return _with_tail(f"{head} was killed by signal {_signal_name(signo)}", self.run)
        code = os.WEXITSTATUS(status)
        if code != 0:
            return _with_tail(f"{head} exited with status {code}", self.run)
        return None


def _with_tail(message: str, run: Mapping[str, Any]) -> str:
    """The message, and the last line the hook wrote (stderr, else stdout):
    runc puts the hook's output in its error, where the reason usually is."""
    for tail in (run.get("stderr_tail", ""), run.get("stdout_tail", "")):
        lines = [line.strip() for line in str(tail).splitlines() if line.strip()]
        if lines:
            return f"{message}: {lines[-1]}"
    return message


def _signal_name(signo: int) -> str:
    import signal  # its names; only for a hook a signal ended

    try:
        return f"{signal.Signals(signo).name} ({signo})"
    except ValueError:
        return str(signo)


class _Process:
    """One hook's child: fork, feed stdin, collect output, enforce the timeout."""

    def __init__(
        self,
        hook: Hook,
        argv: list[str],
        env: dict[str, str],
        exe: int | None,
        namespaces: Sequence[tuple[str, int]],
    ) -> None:
        self.hook = hook
        self.argv = argv
        self.env = env
        self.exe = exe
        self.namespaces = namespaces
        self._open: set[int] = set()

    def wait(self, payload: bytes) -> _Outcome:
        # Here, not at the module's import: only a container with hooks
        # loads what runs them; and before the fork, since a child that
        # joins the container's mount namespace cannot import any more.
        from engine.runtime.monitor import hookexec

        outcome = _Outcome()
        stdin_r, stdin_w = self._pipe()
        stdout_r, stdout_w = self._pipe()
        stderr_r, stderr_w = self._pipe()
        report_r, report_w = self._pipe()
        try:
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                hookexec.become(
                    self.hook.path,
                    self.exe,
                    self.argv,
                    self.env,
                    self.namespaces,
                    (stdin_r, stdout_w, stderr_w),
                    report_w,
                )
            for fd in (stdin_r, stdout_w, stderr_w, report_w):
                self._close(fd)
            # Also here, not only in the child: a timeout may have to kill the
            # group before the child got to run (as shells do). EACCES: the
            # child has already exec'd; ESRCH: it is gone.
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass
            output = {stdout_r: bytearray(), stderr_r: bytearray(), report_r: bytearray()}
            self._pump(pid, payload, stdin_w, output, outcome, started)
        finally:
            for fd in list(self._open):
                self._close(fd)
        outcome.run["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        outcome.run["stdout_tail"] = _tail(output[stdout_r])
        outcome.run["stderr_tail"] = _tail(output[stderr_r])
        self._settle(outcome, output[report_r])
        return outcome

    def _pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self._open.update((read, write))
        return read, write

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def _pump(
        self,
        pid: int,
        payload: bytes,
        stdin_w: int,
        output: dict[int, bytearray],
        outcome: _Outcome,
        started: float,
    ) -> None:
        """Write stdin and read stdout/stderr until the child exits or times out.

        Reading stops at the child's exit, not at EOF: a hook that leaves a
        daemon holding its stdout (runc would wait for it) must not hang the
        monitor. What the hook wrote before exiting is still in the pipes.
        """
        pidfd = os.pidfd_open(pid)
        try:
            for fd in (stdin_w, *output):
                os.set_blocking(fd, False)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            for fd in output:
                poller.register(fd, select.POLLIN)
            pending = memoryview(payload)
            if pending:
                poller.register(stdin_w, select.POLLOUT)
            else:
                self._close(stdin_w)
            timeout = self.hook.timeout if self.hook.timeout and self.hook.timeout > 0 else None
            deadline = None if timeout is None else started + timeout
            exited = False
            while not exited:
                wait_ms = None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        outcome.timed_out, outcome.timeout = True, timeout or 0
                        _kill_group(pid, pidfd)
                        break
                    wait_ms = int(left * 1000) + 1
                for fd, _mask in poller.poll(wait_ms):
                    if fd == pidfd:
                        exited = True
                    elif fd == stdin_w:
                        try:
                            pending = pending[os.write(stdin_w, pending) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            pending = pending[:0]  # the hook does not read its stdin
                        if not pending:
                            poller.unregister(stdin_w)
                            self._close(stdin_w)  # EOF for the hook
                    elif not _read_into(fd, output[fd]):
                        poller.unregister(fd)
            for fd, buffer in output.items():
                # Bounded: a pipe holds at most 1 MiB, and a descendant that
                # goes on writing must not keep us here.
                for _ in range(_DRAIN_READS):
                    if not _read_into(fd, buffer):
                        break
            outcome.status = _reap(pid)
        finally:
            os.close(pidfd)

    def _settle(self, outcome: _Outcome, report: bytearray) -> None:
        for line in report.splitlines():
            try:
                record = jsonfast.loads(bytes(line))
            except ValueError:
                continue
            if "error" in record and outcome.error is None:
                outcome.error = (str(record["stage"]), str(record["error"]))
            elif "status" in record:
                # The pid namespace case: the status of the hook itself, as
                # its parent inside the namespace saw it.
                outcome.status = int(record["status"])
        if outcome.error is not None:
            outcome.run["error"] = outcome.error[1]
            return
        if outcome.timed_out:
            outcome.run["timed_out"] = True
            outcome.run["signal"] = _signal.SIGKILL
            return
        status = outcome.status
        if status is None:
            outcome.error = ("be waited for", "its exit status was collected elsewhere")
            outcome.run["error"] = outcome.error[1]
        elif os.WIFSIGNALED(status):
            outcome.run["signal"] = os.WTERMSIG(status)
        else:
            outcome.run["exit_code"] = os.WEXITSTATUS(status)


def _read_into(fd: int, buffer: bytearray) -> bool:
    """Read what is there; False at EOF or when nothing is left to read."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return False
    except OSError:
        return False
    if not data:
        return False
    buffer += data
    if len(buffer) > TAIL_BYTES:
        del buffer[:-TAIL_BYTES]
    return True


def _tail(buffer: bytearray) -> str:
    return bytes(buffer[-TAIL_BYTES:]).decode("utf-8", errors="replace")


def _kill_group(pid: int, pidfd: int) -> None:
    """SIGKILL the hook and its process group (its children, and in the pid
    namespace case the hook under the intermediate child)."""
    try:
        os.killpg(pid, _signal.SIGKILL)
    except OSError:
        pass  # the group is gone, or never formed
    try:
        _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
    except OSError:
        pass  # already dead


def _reap(pid: int) -> int | None:
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None  # someone else reaped it
    return status
