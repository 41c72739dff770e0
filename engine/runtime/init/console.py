"""``process.terminal``: the init's side of its pty, as runc's setupConsole.

Loaded only for a container with a terminal, and then by the monitor before
it forks the init (:func:`engine.runtime.monitor.spawn.spawn`), because the init,
which runs :func:`setup_console` after its pivot_root, cannot import any more.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import termios

from engine.linux import fdpass
from engine.runtime.init import rootfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.oci.model import Config

__all__ = ["setup_console"]


def setup_console(console: int, config: Config, mount_console: bool) -> None:
    """runc's setupConsole: a pty from the container's own devpts (so its
    slave is the container's /dev/pts/N), sized as ``consoleSize`` says,
    bound onto /dev/console; the master goes to ``--console-socket`` (the
    connected socket ``console``) with SCM_RIGHTS, the slave becomes the
    init's controlling terminal and stdio."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        size = config.process.console_size
        if size is not None and size.height and size.width:
            winsize = struct.pack("HHHH", size.height, size.width, 0, 0)
            fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
        if mount_console:
            rootfs.mount_console(name)
        sock = _socket.socket(fileno=console)
        try:
            fdpass.send_fds(sock, name.encode(), [master])
        finally:
            sock.close()
    finally:
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
