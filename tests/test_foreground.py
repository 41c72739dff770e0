"""A foreground run's stdio copy (engine.runtime.cli.foreground), with a plain
process in the container's place: a harness makes the pipes, starts the
process on their container ends, copies as run does, and exits with the
process's status. The caller's stdio are the harness's, which the test
holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.oci.model import IDMapping
from engine.runtime.cli import foreground

REPO = Path(__file__).resolve().parent.parent

HARNESS = """
import subprocess, sys
from engine.runtime.cli.foreground import Pipes
pipes = Pipes()
child = subprocess.Popen(sys.argv[1:], stdin=pipes.theirs[0], stdout=pipes.theirs[1],
                         stderr=pipes.theirs[2])
pipes.handed()
pipes.copy(child.pid)
pipes.close()
sys.exit(child.wait())
"""


def _harness(*argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", HARNESS, *argv],
        cwd=REPO,
        stdin=kwargs.pop("stdin", subprocess.PIPE),  # type: ignore[arg-type]
        stdout=kwargs.pop("stdout", subprocess.PIPE),  # type: ignore[arg-type]
        stderr=kwargs.pop("stderr", subprocess.PIPE),  # type: ignore[arg-type]
    )


def test_output_and_status_pass_through() -> None:
    with _harness("sh", "-c", "echo out; echo err >&2; exit 3") as proc:
        out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (3, b"out\n", b"err\n")


def test_stdin_reaches_it_and_its_end_is_passed_on() -> None:
    with _harness("sh", "-c", "cat; echo done >&2") as proc:
        out, err = proc.communicate(b"line one\nline two\n", timeout=30)
    assert (proc.returncode, out, err) == (0, b"line one\nline two\n", b"done\n")


def test_a_large_stream_both_ways_arrives_whole() -> None:
    data = os.urandom(3 << 20)
    with _harness("cat") as proc:
        out, _err = proc.communicate(data, timeout=60)
    assert proc.returncode == 0
    assert out == data


def test_output_written_just_before_the_end_is_drained() -> None:
    with _harness("sh", "-c", "head -c 1000000 /dev/zero; exit 4") as proc:
        out, _err = proc.communicate(timeout=30)
    assert (proc.returncode, len(out)) == (4, 1000000)


def test_input_it_never_reads_does_not_keep_run() -> None:
    # stdin from a file larger than a pipe holds: the process ends unread.
    big = os.urandom(1 << 20)
    reader, writer = os.pipe()
    with _harness("sh", "-c", "echo quick", stdin=reader) as proc:
        os.close(reader)
        os.set_blocking(writer, False)
        try:
            os.write(writer, big[:60000])
        except BlockingIOError:
            pass
        out, _err = proc.communicate(timeout=30)
    os.close(writer)
    assert (proc.returncode, out) == (0, b"quick\n")


def test_a_closed_stdin_is_an_empty_one() -> None:
    with _harness("sh", "-c", "cat; echo after", stdin=subprocess.DEVNULL) as proc:
        out, _err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, b"after\n")


def test_a_reader_that_leaves_does_not_end_the_copy_of_the_rest() -> None:
    cmd = "echo one; sleep 0.5; yes | head -c 200000; echo err >&2; exit 2"
    with _harness("sh", "-c", cmd, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"one\n"
        proc.stdout.close()  # the caller's stdout is gone: writes there fail
        assert proc.wait(timeout=30) == 2
        assert proc.stderr.read() == b"err\n"


def test_killed_run_leaves_the_process_without_the_callers_stdout() -> None:
    # The runc behaviour Slurm relies on: the process outlives run, and the
    # caller's stdout is not held by it (EOF as soon as run is gone).
    cmd = "trap '' TERM; echo ready; while :; do sleep 1; echo tick; done"
    with _harness("sh", "-c", cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.kill()
        started = time.monotonic()
        proc.stdout.read()  # EOF: nobody holds it
        assert time.monotonic() - started < 5
    # The process itself dies of its next write (no reader), as under runc.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _named("while :; do sleep 1; echo tick"):
        time.sleep(0.2)
    left = _named("while :; do sleep 1; echo tick")
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left


def _named(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_non_blocking_callers_stdout_is_waited_for() -> None:
    reader, writer = os.pipe()
    os.set_blocking(writer, False)  # as a caller may leave it
    cmd = ("sh", "-c", "head -c 300000 /dev/zero")
    with _harness(*cmd, stdin=subprocess.DEVNULL, stdout=writer, stderr=None) as proc:
        os.close(writer)
        time.sleep(0.5)  # let the pipe fill: run's writes would block
        got = b""
        while chunk := os.read(reader, 65536):
            got += chunk
        os.close(reader)
        assert proc.wait(timeout=30) == 0
    assert len(got) == 300000


@pytest.mark.parametrize(
    ("mappings", "expected"),
    [
        ((), None),
        ((IDMapping(container_id=0, host_id=100000, size=65536),), 100000),
        ((IDMapping(container_id=1, host_id=5, size=10), IDMapping(0, 2001, 1)), 2001),
        ((IDMapping(container_id=1, host_id=5, size=10),), None),
    ],
)
def test_the_host_id_of_the_containers_root(
    mappings: tuple[IDMapping, ...], expected: int | None
) -> None:
    assert foreground._host_root(mappings) == expected
