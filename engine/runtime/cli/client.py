"""The CLI's side of ``control.sock``: one JSON request, one JSON reply.

The exchange itself is :func:`engine.wire.exchange` (on ``_socket``:
``socket`` costs 9 ms to import); this adds runlog's errors for each way it
can go wrong. The request is one line; the monitor answers with one line
and closes the connection.
"""

from __future__ import annotations

from engine import jsonfast
from engine.errors import RunlogError
from engine.layout import REQUEST_TIMEOUT
from engine.wire import NoMonitor, exchange

__all__ = ["MonitorBusy", "MonitorGone", "NotPermitted", "RequestFailed", "call", "call_raw"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class MonitorGone(RunlogError):
    """Nobody listens on the container's control socket."""


class MonitorBusy(RunlogError):
    """The monitor took the request but did not answer in time."""


class NotPermitted(RunlogError):
    """The control socket is not ours to connect to (mode 0600, root's or the owner's)."""


class RequestFailed(RunlogError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def call(
    path: str, request: dict[str, Any], timeout: float | None = REQUEST_TIMEOUT
) -> dict[str, Any]:
    """Send ``request``; return the reply, or raise what the monitor said."""
    reply = _parse(path, call_raw(path, (jsonfast.dumps(request) + "\n").encode(), timeout))
    if not reply.get("ok"):
        raise RequestFailed(str(reply.get("error")), int(reply.get("exit_code", 1)))
    return reply


def call_raw(path: str, data: bytes, timeout: float | None = REQUEST_TIMEOUT) -> bytes:
    """Send ``data`` as it is (and shut the sending side); return the reply's bytes."""
    try:
        reply = exchange(path, data, timeout)
    except NoMonitor as err:
        if isinstance(err.__cause__, PermissionError):
            raise NotPermitted(f"{path}: permission denied (root's or the owner's)") from err
        raise MonitorGone(f"no monitor at {path}") from err
    except TimeoutError as err:
        raise MonitorBusy(f"the monitor at {path} did not answer within {timeout:g} s") from err
    if not reply:
        raise MonitorGone(f"the monitor at {path} closed the connection")
    return reply


def _parse(path: str, data: bytes) -> dict[str, Any]:
    try:
        reply = jsonfast.loads(data)
    except ValueError as err:
        raise RunlogError(f"{path}: the monitor's reply is not JSON: {err}") from None
    if not isinstance(reply, dict):
        raise RunlogError(f"{path}: the monitor's reply is not a JSON object")
    return reply
