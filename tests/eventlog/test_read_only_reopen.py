"""A store opened while its log's file system was read-only writes again
once it is not: SQLite opens such a log read-only and keeps that view (its
read-only shared memory) for every later connection of the process while
the first is open, so the store closes it before it opens the log again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.errors import EventLogError
from engine.eventlog import open_store
from engine.eventlog.record import Actor, NewEvent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")


def event() -> NewEvent:
    return NewEvent(
        "c1", "create", None, "created", "ok", Actor(uid=0, pid=1, transport="cli"), "digest", {}
    )


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    subprocess.run(["mount", "--bind", "-o", "ro", str(directory), str(directory)], check=True)
    try:
        yield
    finally:
        # Lifted as an admin would; the store's descriptors stay on the
        # detached mount, the same directory.
        subprocess.run(["mount", "-o", "remount,bind,rw", str(directory)], check=True)
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def test_a_store_opened_read_only_writes_once_the_log_takes_writes(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    directory.mkdir(mode=0o700)
    db = str(directory / "events.db")
    with open_store(db) as first:
        first.append(event())
    # Another process keeps the log open, as running monitors do: its -wal
    # and -shm stay, so a store opened now opens it read-only.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1])\n"
            "c.execute('SELECT count(*) FROM events').fetchall()\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
            db,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with read_only(directory):
            store = open_store(db)
            with pytest.raises(EventLogError, match="readonly"):
                store.append(event())
        deadline = time.monotonic() + 5
        while True:  # a lazily detached mount lets go at once; be patient
            try:
                recorded = store.append(event())
                break
            except EventLogError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert recorded.seq == 2
        store.close()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    with open_store(db) as again:
        assert [e.seq for e in again.history("c1")] == [1, 2]
