"""A foreground ``runlog run`` without a terminal: the container's stdio are
pipes that ``run`` copies to and from its own, as runc's foreground run
does.

The container does not hold the caller's descriptors: when ``run`` ends,
killed or not, so does the container's hold on the caller's stdout. A
scheduler that waits for the end of its step's output (Slurm's slurmstepd)
is not kept waiting by a container that outlives ``run`` (a pid 1 that
ignored SIGTERM, until the clean-up's ``delete``).

:class:`Pipes` makes the three pipes; their container ends go to the
monitor with create's request (:meth:`engine.runtime.cli.prefork.Early.go`),
which makes them its stdio, which the init inherits. :meth:`Pipes.copy`
then copies, in this one thread, with ``poll``: the caller's stdin to the
container's until its end (EOF is passed on as the pipe's close), the
container's stdout and stderr to the caller's, until the init has ended
(a pidfd) and both are drained to their end. Signals still reach the
handlers that forward them: ``poll`` is retried after each.
"""

from __future__ import annotations

import posix
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.oci.model import Config, IDMapping

__all__ = ["Pipes", "own_pipes", "write_all"]

_CHUNK = 65536
_IN = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
_OUT = select.POLLOUT | select.POLLERR | select.POLLHUP | select.POLLNVAL


class Pipes:
    """The container's stdio as three pipes, and the copying of them."""

    __slots__ = ("_ours", "theirs")

    def __init__(self) -> None:
        in_r, in_w = posix.pipe2(posix.O_CLOEXEC)
        out_r, out_w = posix.pipe2(posix.O_CLOEXEC)
        err_r, err_w = posix.pipe2(posix.O_CLOEXEC)
        #: The container's ends: its stdin, stdout and stderr.
        self.theirs: tuple[int, int, int] | None = (in_r, out_w, err_w)
        # Ours: the stdin pipe's write end, the outputs' read ends.
        self._ours = [in_w, out_r, err_r]
        # Writes to the container's stdin wait for room in poll, not in write.
        posix.set_blocking(in_w, False)

    def handed(self) -> None:
        """The container's ends are the monitor's now (or not needed): close
        this process's copies, so that its outputs end with the container."""
        if self.theirs is not None:
            for fd in self.theirs:
                posix.close(fd)
            self.theirs = None

    def close(self) -> None:
        self.handed()
        for fd in self._ours:
            if fd >= 0:
                posix.close(fd)
        self._ours = [-1, -1, -1]

    def copy(self, pid: int) -> None:
        """Copy until the init ``pid`` has ended and its outputs are drained
        to their end; stdin only until the init has ended."""
        try:
            ended = posix.pidfd_open(pid)
        except OSError:
            ended = -1  # gone already (or no pidfds): drain, and be done
        try:
            _Copy(self._ours, ended).run()
        finally:
            if ended >= 0:
                posix.close(ended)
            self._ours = [-1, -1, -1]


class _Copy:
    """One pass of :meth:`Pipes.copy`: which descriptor goes where, and
    what is still to be written to the container's stdin."""

    def __init__(self, ours: list[int], ended: int) -> None:
        self.to_stdin, out_r, err_r = ours
        self.poller = select.poll()
        # The caller's stdin, while it is copied.
        self.stdin = 0 if ended >= 0 else -1
        if self.stdin < 0:
            self._close_stdin()
        self.pending = b""
        self.outputs = {out_r: 1, err_r: 2}
        self.ended = ended
        for fd in self.outputs:
            self.poller.register(fd, _IN)
        if ended >= 0:
            self.poller.register(ended, select.POLLIN)
        self._watch_stdin()

    def run(self) -> None:
        while self.outputs or self.ended >= 0:
            for fd, events in self.poller.poll():
                if fd == self.ended:
                    self._init_ended()
                elif fd in self.outputs:
                    self._output(fd)
                elif fd == self.stdin:
                    self._read_stdin(events)
                elif fd == self.to_stdin:
                    self._write_stdin(events)

    def _init_ended(self) -> None:
        """No more input for it; what it wrote is drained (its other
        processes went with it, in its own pid namespace)."""
        self.poller.unregister(self.ended)
        self.ended = -1
        if self.stdin >= 0:
            self.poller.unregister(self.stdin)
            self.stdin = -1
        self._close_stdin()

    def _output(self, fd: int) -> None:
        try:
            data = posix.read(fd, _CHUNK)
        except OSError:
            data = b""
        if data and write_all(self.outputs[fd], data):
            return
        # Its end, or a caller's stream that cannot take it (a reader that
        # left): the container's next write there fails, as under runc.
        self.poller.unregister(fd)
        posix.close(fd)
        del self.outputs[fd]

    def _read_stdin(self, events: int) -> None:
        data = b""
        if not events & select.POLLNVAL:
            try:
                data = posix.read(self.stdin, _CHUNK)
            except OSError:
                pass  # not readable (a terminal's background, say): its end
        self.poller.unregister(self.stdin)
        if not data:
            self.stdin = -1
            self._close_stdin()  # EOF, passed on
            return
        self.pending = data
        self._write_stdin(select.POLLOUT)

    def _write_stdin(self, events: int) -> None:
        try:
            if events & (select.POLLERR | select.POLLNVAL):
                raise BrokenPipeError
            self.pending = self.pending[posix.write(self.to_stdin, self.pending) :]
        except BlockingIOError:
            pass  # no room after all: poll again
        except OSError:
            # The container closed its stdin (or ended): no more for it;
            # the caller's stdin is left unread, as runc's copy stops.
            self.pending, self.stdin = b"", -1
            self._close_stdin()
            return
        self._watch_stdin()

    def _watch_stdin(self) -> None:
        """Wait for room in the pipe while something is pending, else for
        the caller's next input."""
        if self.to_stdin < 0:
            return
        try:
            self.poller.unregister(self.to_stdin)
        except KeyError:
            pass
        if self.pending:
            self.poller.register(self.to_stdin, _OUT)
        elif self.stdin >= 0:
            self.poller.register(self.stdin, _IN)

    def _close_stdin(self) -> None:
        if self.to_stdin >= 0:
            try:
                self.poller.unregister(self.to_stdin)
            except KeyError:
                pass
            posix.close(self.to_stdin)
            self.to_stdin = -1


def write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to the caller's ``fd``; False if it cannot take
    it (closed, a reader gone). Waits where the caller left it non-blocking."""
    while data:
        try:
            data = data[posix.write(fd, data) :]
        except BlockingIOError:
            waiter = select.poll()
            waiter.register(fd, select.POLLOUT)
            waiter.poll()
        except OSError:
            return False
    return True


def own_pipes(config: Config) -> None:
    """In the monitor: give run's pipes (its stdio now) to the user that is
    root in the container's user namespace, as runc does, so that the
    container's root may open them again (``/dev/stdout``, ``/proc/self/fd/1``).
    Where this user may not (an unprivileged caller mapping root to
    another id), they stay the caller's."""
    if config.linux.namespace("user") is None:
        return
    uid = _host_root(config.linux.uid_mappings)
    gid = _host_root(config.linux.gid_mappings)
    if uid is None and gid is None:
        return
    for fd in (0, 1, 2):
        try:
            posix.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError:
            return


def _host_root(mappings: Sequence[IDMapping]) -> int | None:
    """The host's id that is the container's 0."""
    for mapping in mappings:
        if mapping.container_id <= 0 < mapping.container_id + mapping.size:
            return mapping.host_id - mapping.container_id
    return None
