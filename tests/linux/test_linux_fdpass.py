"""Descriptors passed over a unix socket with SCM_RIGHTS (engine.linux.fdpass)."""

from __future__ import annotations

import _socket
import os

from engine.linux.fdpass import recv_fds, send_fds


def test_a_descriptor_and_its_data_arrive() -> None:
    left, right = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    try:
        send_fds(left, b"/dev/pts/7", [write_end])
        data, fds = recv_fds(right, 4096, 1)
        assert data == b"/dev/pts/7"
        assert len(fds) == 1 and fds[0] != write_end  # a new descriptor, same pipe
        os.write(fds[0], b"through")
        os.close(fds[0])
        assert os.read(read_end, 16) == b"through"
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
        left.close()
        right.close()


def test_data_without_a_descriptor_gives_none() -> None:
    left, right = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        left.sendall(b"no fd")
        assert recv_fds(right, 4096, 1) == (b"no fd", [])
    finally:
        left.close()
        right.close()
