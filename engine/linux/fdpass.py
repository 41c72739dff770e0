"""Passing descriptors over a unix socket (SCM_RIGHTS), on ``_socket``.

What ``socket.send_fds``/``recv_fds`` do, without the ``socket`` module:
it costs ~2 ms to import (with ``selectors``), on every ``create``, where
the monitor and the init only need these two calls and ``_socket``'s
sockets. Used for the console's pty master (runc's console-socket
protocol), in the init after pivot_root too: nothing here imports lazily.
"""

from __future__ import annotations

import _socket
import array

__all__ = ["recv_fds", "send_fds"]


def send_fds(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """Send ``data`` with ``fds`` attached."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])


def recv_fds(sock: _socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive up to ``bufsize`` bytes and up to ``maxfds`` descriptors."""
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(
        bufsize, _socket.CMSG_SPACE(maxfds * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)
