"""The caller's terminal copied to and from a container's pty: a foreground
``runlog run`` of a ``terminal: true`` config, or ``runlog exec -t``,
without ``--console-socket``, as runc's.

The init (or the exec'd process) makes the pty inside the container, its
slave the container's /dev/pts/N, and sends the master with SCM_RIGHTS on
one end of a socket pair (:meth:`Terminal.theirs`); :meth:`Terminal.receive`
takes it on the other. The caller's terminal is the first of stderr,
stdout and stdin that is one, else ``/dev/tty`` (its controlling terminal),
as runc's; without any, the command is refused before anything is made
(runc's ``open /dev/tty: no such device or address``). :meth:`Terminal.copy`
puts that terminal in raw mode (restored after), sets the pty's window
size from it, again on each SIGWINCH, and copies stdin to the master and
the master to stdout until the process has ended (a pidfd) and what it
wrote is drained.
"""

from __future__ import annotations

import os

from engine.errors import RunlogError
from engine.runtime.cli.foreground import write_all

__all__ = ["Terminal"]

_CHUNK = 65536


class Terminal:
    """The caller's terminal and the socket the pty master comes on."""

    def __init__(self) -> None:
        import socket

        self.host, self._opened = _host_console()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock: socket.socket | None = ours
        #: The end the pty's maker sends the master on; the caller hands it
        #: on, then :meth:`handed`.
        self.theirs: int | None = theirs.detach()
        self.master: int | None = None

    def handed(self) -> None:
        """Our copy of :attr:`theirs` is no longer needed."""
        if self.theirs is not None:
            os.close(self.theirs)
            self.theirs = None

    def receive(self, who: str) -> None:
        """Take the pty master sent by ``who`` (``the init``, ``the process``)."""
        from engine.linux import fdpass

        self.handed()
        assert self._sock is not None
        try:
            _name, fds = fdpass.recv_fds(self._sock, 4096, 1)
        finally:
            self._sock.close()
            self._sock = None
        if not fds:
            raise RunlogError(f"{who} sent no pty master")
        for extra in fds[1:]:
            os.close(extra)
        self.master = fds[0]
        self.resize()

    def resize(self) -> None:
        """The pty's window size from the caller's terminal (runc's resize)."""
        import fcntl
        import termios

        if self.master is None:
            return
        try:
            size = fcntl.ioctl(self.host, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass  # a terminal gone (hung up): as runc, ignored

    def copy(self, pid: int) -> None:
        """Copy until process ``pid`` has ended and its output is drained;
        the caller's terminal raw meanwhile, and as it was after."""
        import signal
        import termios
        import tty

        assert self.master is not None
        saved = None
        try:
            saved = termios.tcgetattr(self.host)
            tty.setraw(self.host, termios.TCSANOW)  # cfmakeraw, as runc's SetRaw
        except termios.error:
            saved = None
        previous = signal.signal(signal.SIGWINCH, lambda _signo, _frame: self.resize())
        self.resize()  # what changed before the handler was there
        try:
            ended = os.pidfd_open(pid)
        except OSError:
            ended = -1
        try:
            _copy(self.master, ended)
        finally:
            if ended >= 0:
                os.close(ended)
            if previous is not None:
                signal.signal(signal.SIGWINCH, previous)
            if saved is not None:
                try:
                    termios.tcsetattr(self.host, termios.TCSADRAIN, saved)
                except termios.error:
                    pass
            self.close()

    def close(self) -> None:
        self.handed()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self._opened:
            os.close(self.host)
            self._opened = False


def _host_console() -> tuple[int, bool]:
    """runc's: stderr, stdout or stdin, the first that is a terminal, else
    the controlling terminal; whether it was opened here."""
    for fd in (2, 1, 0):
        if os.isatty(fd):
            return fd, False
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY), True
    except OSError as err:
        why = (err.strerror or str(err)).lower()
        raise RunlogError(f"open /dev/tty: {why}") from None


def _copy(master: int, ended: int) -> None:
    """stdin to ``master``, ``master`` to stdout, until the master's end
    (every slave closed) or, ``ended`` (a pidfd) readable, the rest drained."""
    import select

    poller = select.poll()
    poller.register(master, select.POLLIN)
    stdin = 0
    poller.register(stdin, select.POLLIN)
    if ended >= 0:
        poller.register(ended, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == ended:
                _drain(master)
                return
            try:
                data = os.read(fd, _CHUNK)
            except OSError:
                data = b""
            if fd == master:
                if not data:
                    return  # EIO: no slave open any more
                write_all(1, data)
            elif data:
                write_all(master, data)
            else:
                poller.unregister(stdin)  # its end: nothing more to copy


def _drain(master: int) -> None:
    """What the ended process left in the pty, to stdout."""
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, _CHUNK)
        except OSError:
            return  # EAGAIN: all read; EIO: no slave left
        if not data:
            return
        write_all(1, data)
