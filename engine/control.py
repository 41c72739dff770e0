"""The one client of a container monitor's ``control.sock``.

Both ways of the scheduler's commands use it: the short way
(:mod:`engine.quick`) writes its request with :func:`request_line`, sends
it with :func:`exchange` and reads the usual reply as it is
(:func:`is_ok`, :func:`state_text_of`), without the JSON scanner; the
commands (:mod:`engine.commands.container`) use :func:`call`, which adds
runlog's errors for each way an exchange can go wrong. What goes on the
wire, both ways, is :mod:`engine.wire`'s: this is its client's side,
written and read as that module says (a test holds the two together).

Light on purpose, as the short way loads it: :mod:`posix` and
:mod:`_socket` (``socket`` costs 9 ms to import); not even
:mod:`engine.wire`, a module more on every call, nor :mod:`engine.faults`
unless a test sets ``RUNLOG_FAULT``. :mod:`engine.errors` and
the JSON scanner load only where a reply is other than the usual.
"""

import _socket
import posix

from engine.layout import REQUEST_TIMEOUT, SocketAddress

__all__ = [
    "NoMonitor",
    "call",
    "call_raw",
    "error_of",
    "exchange",
    "is_ok",
    "json_string",
    "reply_of",
    "request_line",
    "state_text",
    "state_text_of",
    "wait_gone",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# A test's fault (engine.faults): its module, one more on every call of the
# short way (0.15 ms), loads only where RUNLOG_FAULT is set.
_FAULT_SET = b"RUNLOG_FAULT" in posix.environ


def request_line(op: str, **fields: "Any") -> bytes:
    """The request ``{"op": op, **fields}`` as it goes on the wire. A request
    of flags and numbers (every scheduler call) is written as the encoder
    would write it, without loading it."""
    text = f'{{"op":"{op}"'
    for name, value in fields.items():
        if value is True or value is False:
            text += f',"{name}":{"true" if value else "false"}'
        elif type(value) is int:
            text += f',"{name}":{value}'
        else:
            from engine import jsonfast

            return (jsonfast.dumps({"op": op, **fields}) + "\n").encode()
    return (text + "}\n").encode()


class NoMonitor(Exception):
    """Nobody can be reached on the socket; nothing was sent."""


def exchange(path: str, request: bytes, timeout: "float | None") -> bytes:
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
        if _FAULT_SET:  # RUNLOG_FAULT=OP:sent: the client killed once it asked
            from engine import faults

            faults.point(_op(request), "sent")
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            chunks = []  # the monitor died: no answer
    finally:
        sock.close()
    return b"".join(chunks)


def _op(request: bytes) -> str:
    from engine import jsonfast

    try:
        return str(jsonfast.loads(request).get("op"))
    except (ValueError, AttributeError):
        return "request"


def reply_of(path: str, data: bytes) -> "dict[str, Any]":
    """The reply in ``data``, parsed; ``ValueError`` saying what is wrong
    (naming the socket) if it is no JSON object."""
    from engine import jsonfast

    try:
        reply = jsonfast.loads(data)
    except ValueError as err:
        raise ValueError(f"{path}: the monitor's reply is not JSON: {err}") from None
    if not isinstance(reply, dict):
        raise ValueError(f"{path}: the monitor's reply is not a JSON object")
    return reply


def error_of(reply: "Mapping[str, Any]") -> "tuple[str, int]":
    """What a failed reply says: its message and exit code (1 where it has none)."""
    code = reply.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool) and code > 0:
        return str(reply.get("error")), code
    return str(reply.get("error")), 1


def call(
    path: str, request: "Mapping[str, Any]", timeout: "float | None" = REQUEST_TIMEOUT
) -> "dict[str, Any]":
    """Send ``request`` (``{"op": ..., ...}``); return the successful reply,
    or raise :class:`engine.errors.RequestFailed` with what the monitor said."""
    from engine.errors import RequestFailed, RunlogError

    fields = {k: v for k, v in request.items() if k != "op"}
    data = call_raw(path, request_line(str(request["op"]), **fields), timeout)
    try:
        reply = reply_of(path, data)
    except ValueError as err:
        raise RunlogError(str(err)) from None
    if not reply.get("ok"):
        raise RequestFailed(*error_of(reply))
    return reply


def call_raw(path: str, data: bytes, timeout: "float | None" = REQUEST_TIMEOUT) -> bytes:
    """Send ``data`` as it is (and shut the sending side); return the
    reply's bytes. Raises :class:`engine.errors.MonitorGone` (nobody
    answers there, or the monitor closed without an answer),
    :class:`~engine.errors.MonitorBusy` (no answer in ``timeout``) or
    :class:`~engine.errors.ControlDenied` (not ours to connect to)."""
    from engine.errors import ControlDenied, MonitorBusy, MonitorGone

    try:
        reply = exchange(path, data, timeout)
    except NoMonitor as err:
        if isinstance(err.__cause__, PermissionError):
            raise ControlDenied(f"{path}: permission denied (root's or the owner's)") from err
        raise MonitorGone(f"no monitor at {path}") from err
    except TimeoutError as err:
        raise MonitorBusy(f"the monitor at {path} did not answer within {timeout:g} s") from err
    if not reply:
        raise MonitorGone(f"the monitor at {path} closed the connection")
    return reply


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


def state_text(reply: "Mapping[str, Any]") -> bytes:
    """What ``runlog state`` prints of the monitor's reply to ``state``."""
    text = reply.get("text")
    if isinstance(text, str):
        return text.encode()
    # A monitor of a runlog from before the reply had it.
    from engine.oci import gojson

    return gojson.render(reply["state"], "  ").encode()


# Replies read without a JSON parser. The C scanner (_json) is a shared
# library: 0.3 ms to load, on every call of the short way. A monitor's
# reply has one shape when all is well (engine.wire, Encoding), which these
# read as it is; anything else is None, and the caller parses it.

_OK = b'{"ok":true,'
_TEXT = b',"text":"'
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


def is_ok(data: bytes) -> bool:
    """Whether ``data`` is a successful reply (``{"ok":true,...``)."""
    return data.startswith(_OK)


def state_text_of(data: bytes) -> "bytes | None":
    """What ``runlog state`` prints of a successful reply to ``state``: its
    ``text`` member, the last one; None if the reply is not of that shape."""
    if not data.startswith(_OK):
        return None
    end = len(data)
    while end and data[end - 1] in b"\r\n":
        end -= 1
    start = data.rfind(_TEXT, 0, end)
    # No '"' inside a string's body but escaped: the last one is the member.
    if start < 0 or data[end - 2 : end] != b'"}':
        return None
    try:
        body = data[start + len(_TEXT) : end - 2].decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = json_string(body)
    if text is None:
        return None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: the parser says what it is
        return None


def json_string(body: str) -> "str | None":
    """The value of a JSON string whose body (between its quotes) is
    ``body``, as the JSON scanner reads it; None if it is not one."""
    out: list[str] = []
    i = 0
    while True:
        j = body.find("\\", i)
        chunk = body[i:] if j < 0 else body[i:j]
        if '"' in chunk or (chunk and min(chunk) < " "):
            return None  # unescaped, not allowed in a string
        out.append(chunk)
        if j < 0:
            return "".join(out)
        escape = body[j + 1 : j + 2]
        if escape != "u":
            plain = _ESCAPES.get(escape)
            if plain is None:
                return None
            out.append(plain)
            i = j + 2
            continue
        code = _hex4(body, j + 2)
        if code is None:
            return None
        i = j + 6
        if 0xD800 <= code < 0xDC00 and body.startswith("\\u", i):
            low = _hex4(body, i + 2)
            if low is not None and 0xDC00 <= low < 0xE000:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        out.append(chr(code))


def _hex4(body: str, at: int) -> "int | None":
    digits = body[at : at + 4]
    if len(digits) != 4 or not _HEX.issuperset(digits):
        return None
    return int(digits, 16)
