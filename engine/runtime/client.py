"""The CLI's side of ``control.sock``: one JSON request, one JSON reply.

On every scheduler call, so it uses ``_socket`` (``socket`` costs 9 ms to
import, ``_socket`` almost nothing) and :mod:`engine.jsonfast`.
"""

from __future__ import annotations

import _socket

from engine import jsonfast
from engine.errors import RunlogError

__all__ = ["MonitorGone", "call"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class MonitorGone(RunlogError):
    """Nobody listens on the container's control socket."""


class RequestFailed(RunlogError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def call(path: str, request: dict[str, Any], timeout: float | None = 60.0) -> dict[str, Any]:
    """Send ``request``; return the reply, or raise what the monitor said."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise MonitorGone(f"no monitor at {path}") from err
        sock.sendall((jsonfast.dumps(request) + "\n").encode())
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise MonitorGone(f"the monitor at {path} closed the connection")
    reply: dict[str, Any] = jsonfast.loads(bytes(data))
    if not reply.get("ok"):
        raise RequestFailed(str(reply.get("error")), int(reply.get("exit_code", 1)))
    return reply
