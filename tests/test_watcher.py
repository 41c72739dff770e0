"""The watcher (one inotify instance, no thread) and the spool client (none at all)."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.runtime.shared.spool import DELETED, REPLY, SpoolClient, SpoolTimeout
from engine.runtime.shared.watcher import ARRIVED, CHANGED, GONE, Watcher

REPO = Path(__file__).resolve().parent.parent


def _inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except FileNotFoundError:
            pass  # the listing's own descriptor
    return count


def test_each_kind_reports_what_its_filter_accepts(tmp_path: Path) -> None:
    threads = threading.active_count()
    with Watcher() as watcher:
        watcher.watch(str(tmp_path), "in", ARRIVED, lambda name: not name.startswith("."))
        watcher.watch(str(tmp_path), "out", GONE)
        watcher.watch(str(tmp_path), "mod", CHANGED, "f".__eq__)
        assert threading.active_count() == threads
        assert select.select([watcher], [], [], 0)[0] == []
        (tmp_path / ".tmp").write_text("x")
        os.rename(tmp_path / ".tmp", tmp_path / "req")
        (tmp_path / "f").write_text("y")
        (tmp_path / "req").unlink()
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir").rmdir()
        assert select.select([watcher], [], [], 1)[0] == [watcher]
        assert watcher.drain() == [
            ("out", ".tmp"),
            ("in", "req"),
            ("mod", "f"),
            ("in", "f"),
            ("out", "req"),
            ("out", "dir"),
        ]
        assert watcher.drain() == []


def test_a_directory_that_cannot_be_watched_raises_and_the_others_stand(
    tmp_path: Path,
) -> None:
    with Watcher() as watcher:
        watcher.watch(str(tmp_path), "here", ARRIVED)
        with pytest.raises(OSError) as caught:
            watcher.watch(str(tmp_path / "absent"), "there", ARRIVED)
        assert caught.value.errno == errno.ENOENT
        (tmp_path / "a").write_text("x")
        assert watcher.drain() == [("here", "a")]


def test_no_instance_left_is_an_oserror() -> None:
    """Here through the descriptor limit: the same EMFILE as the per-user
    instance limit gives."""
    code = (
        "import os, resource\n"
        "from engine.runtime.shared.watcher import Watcher\n"
        "n = len(os.listdir('/proc/self/fd'))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (n - 1, n - 1))\n"
        "try:\n"
        "    Watcher()\n"
        "except OSError as err:\n"
        "    print(err.errno, err.strerror)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout == f"{errno.EMFILE} {os.strerror(errno.EMFILE)}\n"


def test_the_spool_client_holds_no_inotify_instance(tmp_path: Path) -> None:
    spool = tmp_path / "requests"
    spool.mkdir()
    before = _inotify_fds()
    with SpoolClient(str(spool)) as client:
        name = client.submit(b'{"op":"state"}\n')
        assert _inotify_fds() == before
        assert (spool / name).read_bytes() == b'{"op":"state"}\n'

        def answer() -> None:
            time.sleep(0.2)
            (spool / f"{name}{REPLY}").write_bytes(b'{"ok":true}\n')

        helper = threading.Thread(target=answer)
        helper.start()
        took = time.monotonic()
        assert client.reply(name, timeout=5) == b'{"ok":true}\n'
        assert time.monotonic() - took < 0.5
        helper.join()
        assert not (spool / f"{name}{REPLY}").exists()
        with pytest.raises(SpoolTimeout):
            client.reply(client.submit(b"{}"), timeout=0.05)
        for leftover in spool.iterdir():
            leftover.unlink()
        spool.rmdir()
        assert client.reply("gone", timeout=5) == DELETED


def test_no_spool_is_a_clear_error(tmp_path: Path) -> None:
    from engine.errors import RunlogError

    with pytest.raises(RunlogError, match=r"no request spool to use at .*: no such directory"):
        SpoolClient(str(tmp_path / "requests"))


def test_the_watcher_closes_once() -> None:
    watcher = Watcher()
    watcher.close()
    watcher.close()
    assert watcher.fileno() == -1
