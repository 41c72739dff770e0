"""``runlog attach ID``: the client side of a container's ``attach.sock``.

The monitor keeps the streams of a container created with ``--log-path``
(:mod:`engine.runtime.monitor.streams`) and serves them on ``attach.sock``: raw
bytes both ways, no framing. What the container writes to stdout and to
stderr comes down the socket interleaved as it arrives; what the client sends goes to the
container's stdin. This copies the socket to stdout and stdin to the
socket until the monitor closes the connection, when the container's init
has ended. At EOF on stdin the client shuts down its sending side and goes
on reading.
"""

from __future__ import annotations

import os
import select
import socket

from engine.errors import RunlogError
from engine.runtime.shared.statedir import SocketAddress

__all__ = ["ATTACH", "NotAttachable", "copy"]

#: The socket's name in the container's state directory.
ATTACH = "attach.sock"


class NotAttachable(RunlogError):
    """No monitor serves the container's streams."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy(path: str, container_id: str, stdin: int = 0, stdout: int = 1) -> None:
    """Copy ``path``'s bytes to ``stdout`` and ``stdin``'s to it until the monitor hangs up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            with SocketAddress(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise NotAttachable(
                f"container {container_id}: nothing to attach to (no running container "
                "created with --log-path)"
            ) from err
        except PermissionError as err:
            raise NotAttachable(f"{path}: permission denied (root's or the owner's)") from err
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        reading_input = True
        try:
            poller.register(stdin, select.POLLIN)
        except (OSError, ValueError):
            reading_input = False
        while True:
            for fd, _events in poller.poll():
                if fd == sock.fileno():
                    data = sock.recv(65536)
                    if not data:
                        return
                    _write_all(stdout, data)
                elif reading_input:
                    try:
                        data = os.read(stdin, 65536)
                    except OSError:
                        data = b""  # no stdin to read (closed): as EOF
                    if data:
                        sock.sendall(data)
                    else:
                        poller.unregister(stdin)
                        reading_input = False
                        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        return  # the monitor went away: the container has ended
    finally:
        sock.close()
