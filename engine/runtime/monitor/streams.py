"""The container's stdio when the monitor keeps it (``create --log-path FILE``).

Kept in the monitor's one poll loop (:mod:`engine.runtime.monitor.server`),
with no thread of its own. The init's stdout and
stderr are pipes to the monitor, its stdin a pipe from it. What the
container writes goes to the container log (:class:`LogFile`, in one of the
:data:`FORMATS`) and to every client of ``attach.sock``
(mode 0600, the owner's) connected at the time, as raw bytes, stdout and
stderr interleaved as they arrive; what clients send goes to the
container's stdin.

Nothing may stall the loop: every descriptor is non-blocking. A client
more than :data:`CLIENT_BACKLOG` bytes behind is dropped; input beyond
:data:`INPUT_BACKLOG` bytes that the container has not read is discarded.

For ``terminal: true`` without ``--console-socket`` the monitor owns the
pty: the init sends it the master over its sync socket (the console-socket
protocol, SCM_RIGHTS); its output is logged as stdout, a new client first
gets the last line on the screen (the
prompt), and ``console_size`` resizes it.

When the init has ended, :meth:`Streams.finish` reads what is left in the
pipes, writes it to the log and the clients, and closes the clients (so
``runlog attach`` ends) - before ``exit`` is recorded.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios
import time

from engine import jsonfast
from engine.errors import RunlogError
from engine.runtime.cli.attach import ATTACH
from engine.runtime.shared.statedir import SocketAddress, StateDir

__all__ = ["CLIENT_BACKLOG", "FORMATS", "INPUT_BACKLOG", "LogFile", "Streams"]

#: ``--log-format`` values: the bytes as written, CRI's lines, Docker's json-file.
FORMATS = ("basic", "kubernetes", "json")
#: Bytes of output a client may fall behind before it is dropped.
CLIENT_BACKLOG = 1 << 20
#: Bytes of input kept for a container that does not read its stdin.
INPUT_BACKLOG = 1 << 20
#: kubernetes and json: a line longer than this is written in parts
#: (CRI's ``P`` tag; containerd splits at 16 KiB too).
MAX_LINE = 16 * 1024
#: Reads of each pipe at the end, at most (64 KiB each).
FINAL_READS = 256
#: Bytes of a terminal's last line kept for a new client.
LAST_LINE = 4096
#: Seconds the last output may take to reach a client at the end.
FINAL_SEND_TIMEOUT = 1.0

_READ = 65536
_IN = select.POLLIN
_OUT = select.POLLOUT


def timestamp(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, fixed width (CRI's log timestamps)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class LogFile:
    """The container log, appended to; :meth:`reopen` for logrotate.

    - ``basic``: the container's bytes as written, stdout and stderr alike;
    - ``kubernetes``: CRI's format, one line per line of output,
      ``TIME STREAM F TEXT`` (``P`` for a part of a longer line);
    - ``json``: one object per line of output,
      ``{"time": TIME, "stream": STREAM, "log": TEXT}``, ``TEXT`` with its
      newline (Docker's json-file).

    A last line without a newline is written when the streams end.
    """

    def __init__(self, path: str, fmt: str, owner: int = 0) -> None:
        if fmt not in FORMATS:
            raise RunlogError(f"--log-format: {fmt!r} is not one of {', '.join(FORMATS)}")
        self.path = path
        self.format = fmt
        self.owner = owner
        self.partial = {"stdout": bytearray(), "stderr": bytearray()}
        self.fd = self._open()

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise RunlogError(f"container log {self.path}: {err.strerror}") from err
        if os.fstat(fd).st_uid != self.owner and os.fstat(fd).st_size == 0:
            try:
                os.fchown(fd, self.owner, -1)
            except OSError:
                pass  # not ours to give away; root still reads it
        return fd

    def reopen(self) -> None:
        """Close the file and open ``path`` again (a new file if it was renamed)."""
        fd = self._open()
        os.close(self.fd)
        self.fd = fd

    def write(self, stream: str, data: bytes) -> None:
        if self.format == "basic":
            self._out(data)
            return
        buffer = self.partial[stream]
        buffer += data
        lines = []
        while True:
            end = buffer.find(b"\n", 0, MAX_LINE + 1)
            if end >= 0:
                lines.append(self._line(stream, bytes(buffer[:end]), newline=True))
                del buffer[: end + 1]
            elif len(buffer) >= MAX_LINE:
                lines.append(self._line(stream, bytes(buffer[:MAX_LINE]), newline=False, part=True))
                del buffer[:MAX_LINE]
            else:
                break
        if lines:
            self._out(b"".join(lines))

    def flush(self) -> None:
        """Write what is left of each stream's last line."""
        for stream, buffer in self.partial.items():
            if buffer:
                self._out(self._line(stream, bytes(buffer), newline=False))
                buffer.clear()

    def close(self) -> None:
        os.close(self.fd)

    def _line(self, stream: str, text: bytes, *, newline: bool, part: bool = False) -> bytes:
        now = timestamp(time.time_ns())
        if self.format == "kubernetes":
            return f"{now} {stream} {'P' if part else 'F'} ".encode() + text + b"\n"
        log = text.decode(errors="replace") + ("\n" if newline else "")
        return (jsonfast.dumps({"time": now, "stream": stream, "log": log}) + "\n").encode()

    def _out(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass  # a full disk must not take the monitor down; the clients still get it


class _Client:
    __slots__ = ("out", "reading", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.reading = True


class Streams:
    """The container's pipes, the log and ``attach.sock``, driven by the monitor's poll."""

    def __init__(
        self,
        log: LogFile,
        stdout: int,
        stderr: int | None,
        stdin: int,
        statedir: StateDir,
        owner: int,
    ) -> None:
        self.log = log
        self.sources = {stdout: "stdout"}
        if stderr is not None:
            self.sources[stderr] = "stderr"
        self.stdin: int | None = stdin
        self.input = bytearray()
        for fd in (*self.sources, stdin):
            os.set_blocking(fd, False)
        # terminal: the pty master, and the last line on its screen: a new
        # client sees the prompt.
        self.tty: int | None = None
        self.last_line = bytearray()
        self.path = statedir.file(ATTACH)
        self.listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600: the owner and root only
        try:
            with SocketAddress(self.path) as address:
                self.listener.bind(address)
        finally:
            os.umask(old)
        os.chown(self.path, owner, -1)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.clients: dict[int, _Client] = {}
        self.poller: select.poll | None = None

    @classmethod
    def terminal(cls, log: LogFile, master: int, statedir: StateDir, owner: int) -> Streams:
        """For ``terminal: true``: the pty master is both output (logged as
        stdout) and input (through a second descriptor, for the poll)."""
        streams = cls(log, master, None, os.dup(master), statedir, owner)
        streams.tty = master
        return streams

    def resize(self, rows: int, cols: int) -> None:
        """``console_size``: the pty's window size (TIOCSWINSZ); the
        container's foreground process gets SIGWINCH from the kernel."""
        if self.tty is None or self.tty not in self.sources:
            raise RunlogError("the container's terminal is closed")
        fcntl.ioctl(self.tty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # -- the poll loop's side --------------------------------------------------

    def register(self, poller: select.poll) -> None:
        self.poller = poller
        assert self.listener is not None
        poller.register(self.listener.fileno(), _IN)
        for fd in self.sources:
            poller.register(fd, _IN)

    def owns(self, fd: int) -> bool:
        return (
            fd in self.sources
            or fd in self.clients
            or fd == self.stdin
            or (self.listener is not None and fd == self.listener.fileno())
        )

    def event(self, fd: int, events: int) -> None:
        if fd in self.sources:
            self._read(fd)
        elif fd in self.clients:
            self._client_event(self.clients[fd], events)
        elif fd == self.stdin:
            self._feed()
        elif self.listener is not None and fd == self.listener.fileno():
            self._accept()

    # -- requests and the end --------------------------------------------------

    def reopen(self) -> None:
        self.log.reopen()

    def finish(self) -> None:
        """The init has ended: take what is left, give it out, end every client."""
        for fd in list(self.sources):
            # Bounded: a process left behind (no pid namespace) may go on writing.
            for _ in range(FINAL_READS):
                if fd not in self.sources or not self._read(fd):
                    break
        self.log.flush()
        for client in list(self.clients.values()):
            try:
                client.sock.setblocking(True)
                client.sock.settimeout(FINAL_SEND_TIMEOUT)
                client.sock.sendall(client.out)
            except OSError:
                pass
            self._drop(client)
        for fd in list(self.sources):
            self._close_source(fd)
        self._close_stdin()
        if self.listener is not None:
            self._unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def close(self) -> None:
        """At the monitor's end."""
        self.finish()
        self.log.close()

    # -- output ------------------------------------------------------------------

    def _read(self, fd: int) -> bool:
        """One read from a pipe; True if it gave data."""
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._close_source(fd)
            return False
        self.log.write(self.sources[fd], data)
        if fd == self.tty:
            end = data.rfind(b"\n")
            if end >= 0:
                self.last_line[:] = data[end + 1 :]
            else:
                self.last_line += data
            del self.last_line[:-LAST_LINE]
        for client in list(self.clients.values()):
            client.out += data
            self._send(client)
        return True

    def _close_source(self, fd: int) -> None:
        if self.sources.pop(fd, None) is not None:
            self._unregister(fd)
            os.close(fd)

    def _send(self, client: _Client) -> None:
        try:
            while client.out:
                del client.out[: client.sock.send(client.out)]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(client)
            return
        if len(client.out) > CLIENT_BACKLOG:
            self._drop(client)  # a client that does not read must not hold the container
            return
        self._interest(client)

    # -- clients -------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients[sock.fileno()] = client
        assert self.poller is not None
        self.poller.register(sock.fileno(), _IN)
        if self.last_line:
            client.out += self.last_line
            self._send(client)

    def _client_event(self, client: _Client, events: int) -> None:
        if events & _OUT:
            self._send(client)
            if client.sock.fileno() not in self.clients:
                return
        if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL) and not events & _IN:
            self._drop(client)
            return
        if events & _IN and client.reading:
            try:
                data = client.sock.recv(_READ)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                self._input(data)
            else:
                # Done sending (stdin at EOF): it still gets the output.
                client.reading = False
                self._interest(client)
        elif events & _IN:
            self._drop(client)

    def _interest(self, client: _Client) -> None:
        assert self.poller is not None
        mask = (_IN if client.reading else 0) | (_OUT if client.out else 0)
        self.poller.modify(client.sock.fileno(), mask)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is not None:
            self._unregister(fd)
        client.sock.close()

    # -- input -------------------------------------------------------------------

    def _input(self, data: bytes) -> None:
        if self.stdin is None:
            return  # the container closed its stdin
        self.input += data[: max(0, INPUT_BACKLOG - len(self.input))]
        self._feed()

    def _feed(self) -> None:
        if self.stdin is None:
            return
        try:
            while self.input:
                del self.input[: os.write(self.stdin, self.input)]
        except BlockingIOError:
            pass
        except OSError as err:
            if err.errno in (errno.EPIPE, errno.EBADF):
                self._close_stdin()
                return
            raise
        assert self.poller is not None
        if self.input:
            try:
                self.poller.register(self.stdin, _OUT)
            except (OSError, ValueError):
                pass
        else:
            self._unregister(self.stdin)

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            self._unregister(self.stdin)
            os.close(self.stdin)
            self.stdin = None
            self.input.clear()

    def _unregister(self, fd: int) -> None:
        if self.poller is None:
            return
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass
