"""The client's side of a monitor's control socket, at the lowest level.

What :mod:`engine.quick` (the short way of the scheduler's commands) and
:mod:`engine.runtime.client` (runlog's errors on top) share: one exchange
on the socket, the text of a ``state`` reply, the wait for a monitor's
exit. :mod:`posix` and :mod:`_socket` alone.
"""

import _socket
import posix

from engine.layout import SocketAddress

__all__ = ["NoMonitor", "exchange", "state_text", "wait_gone"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class NoMonitor(Exception):
    """Nobody can be reached on the socket; nothing was sent."""


def wait_gone(pid: int, timeout_ms: int = 5000) -> None:
    """Return once process ``pid`` (a monitor) has exited, or after ``timeout_ms``."""
    import select

    try:
        fd = posix.pidfd_open(pid)
    except OSError:
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(timeout_ms)
    finally:
        posix.close(fd)


def exchange(path: str, request: bytes, timeout: float | None) -> bytes:
    """Send ``request`` to the socket at ``path`` and shut the sending side;
    return what comes back until EOF (``b""``: closed without an answer).

    Raises :class:`NoMonitor` when nobody can be reached there (nothing
    was sent; connect's error is its ``__cause__``) and ``TimeoutError``
    when the monitor takes longer than ``timeout`` to connect or answer.
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            with SocketAddress(path) as address:
                sock.connect(address)
        except TimeoutError:
            raise
        except OSError as err:
            raise NoMonitor(path) from err
        try:
            sock.sendall(request)
            sock.shutdown(_socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before reading it all (too large)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            chunks = []  # the monitor died: no answer
    finally:
        sock.close()
    return b"".join(chunks)


def state_text(reply: "Mapping[str, Any]") -> bytes:
    """What ``runlog state`` prints of the monitor's reply to ``state``."""
    text = reply.get("text")
    if isinstance(text, str):
        return text.encode()
    # A monitor of a runlog from before the reply had it.
    from engine.oci import gojson

    return gojson.render(reply["state"], "  ").encode()
