"""A foreground ``run`` without a terminal copies the container's stdio
through pipes of its own, as runc's does: the same bundle through runlog and
runc side by side, with the caller's stdio as pipes and files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import REPO

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

Bundle = Callable[..., Path]
Runtime = Callable[..., list[str]]


@pytest.fixture
def runtimes(side_by_side: dict[str, Runtime]) -> dict[str, Runtime]:
    """``runtimes[name](*args)``: the argv of ``run ARGS`` for each runtime,
    with its own root."""
    ours, theirs = side_by_side["runlog"], side_by_side["runc"]
    return {
        "runlog": lambda *args: ours("run", *args),
        "runc": lambda *args: theirs("run", *args),
    }


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _both(
    runtimes: dict[str, Runtime], b: Path, data: bytes | None = None, **kw: Any
) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """``run`` of ``b`` by each runtime, stdout and stderr as pipes,
    ``data`` on a stdin pipe (or ``kw``'s stdin)."""
    got = {}
    for name, argv in runtimes.items():
        if data is not None:
            kw["input"] = data
        got[name] = subprocess.run(
            argv(f"io-{name}", "-b", str(b)),
            capture_output=True,
            timeout=60,
            env=_env(),
            check=False,
            **kw,
        )
    return got


def _ready(argv: list[str], stderr: int) -> subprocess.Popen[bytes]:
    """``run`` started with its stdout a pipe, once its container said ``ready``."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=_env()
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        proc.kill()
        proc.communicate()
        raise AssertionError(f"{argv}: {line!r}")
    return proc


def test_output_and_exit_code_as_runc(runtimes: dict[str, Runtime], bundle: Bundle) -> None:
    b = bundle(["sh", "-c", "echo out; echo err >&2; echo more; exit 3"])
    got = _both(runtimes, b, stdin=subprocess.DEVNULL)
    for name, proc in got.items():
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\nmore\n", b"err\n"), name


def test_stdin_reaches_the_container_and_its_end_too(
    runtimes: dict[str, Runtime], bundle: Bundle
) -> None:
    # cat ends only at stdin's end: the EOF is passed on.
    b = bundle(["sh", "-c", "cat; echo end >&2"])
    got = _both(runtimes, b, b"first\nsecond\n")
    for name, proc in got.items():
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"first\nsecond\n", b"end\n"), (
            name
        )
    # More than pipes hold, both ways, arrives whole.
    data = os.urandom(2 << 20)
    got = _both(runtimes, bundle(["cat"]), data)
    for name, proc in got.items():
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout == data, name


def test_the_containers_stdio_are_pipes_whatever_the_callers(
    runtimes: dict[str, Runtime], bundle: Bundle, tmp_path: Path
) -> None:
    # The caller's stdout a file, its stdin /dev/null: the container's are
    # runc's (and runlog's) pipes, and the output reaches the file.
    b = bundle(["sh", "-c", "for n in 0 1 2; do readlink /proc/self/fd/$n; done"])
    for name, argv in runtimes.items():
        path = tmp_path / f"{name}.out"
        with open(path, "wb") as out:
            code = subprocess.run(
                argv(f"fds-{name}", "-b", str(b)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.PIPE,
                env=_env(),
                timeout=60,
                check=False,
            ).returncode
        links = path.read_text().split()
        assert code == 0, name
        assert len(links) == 3 and all(link.startswith("pipe:[") for link in links), (name, links)


def test_a_killed_run_leaves_the_container_without_the_callers_stdout(
    runtimes: dict[str, Runtime], runlog: Any, runc: Any, bundle: Bundle
) -> None:
    """What a scheduler waiting for its step's output relies on: ``run``
    SIGKILLed, its container (a pid 1 that ignores SIGTERM) lives on but
    cannot hold the caller's stdout; its next write there fails."""
    b = bundle(["sh", "-c", "echo ready; exec sleep 300"])
    took = {}
    for name, argv in runtimes.items():
        cid = f"kill-{name}"
        with _ready(argv(cid, "-b", str(b)), subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            proc.kill()
            started = time.monotonic()
            rest = proc.stdout.read()  # EOF once run is gone
            took[name] = time.monotonic() - started
        assert rest == b"", name
        tool = runlog if name == "runlog" else runc
        assert tool.state(cid)["status"] == "running", name
        tool("delete", "--force", cid, check=True)
    assert all(seconds < 5 for seconds in took.values()), took


def test_a_signal_to_run_still_reaches_the_init(
    runtimes: dict[str, Runtime], bundle: Bundle
) -> None:
    b = bundle(
        ["sh", "-c", "trap 'echo caught; exit 42' TERM; echo ready; while :; do sleep 0.05; done"]
    )
    for name, argv in runtimes.items():
        with _ready(argv(f"sig-{name}", "-b", str(b)), subprocess.PIPE) as proc:
            proc.send_signal(signal.SIGTERM)
            out, _err = proc.communicate(timeout=30)
        # The trap's output, written after the signal, is drained too.
        assert (proc.returncode, out) == (42, b"caught\n"), name


def test_the_containers_root_may_reopen_its_stdio_in_a_user_namespace(
    runtimes: dict[str, Runtime], bundle: Bundle, reachable: Path
) -> None:
    """runc gives the pipes to the host uid that is root in the container,
    so ``/dev/stdout`` (``/proc/self/fd/1``) opens there; runlog too."""
    host = 100000

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": host, "size": 65536}]
        spec["linux"]["uidMappings"] = mapping
        spec["linux"]["gidMappings"] = mapping

    script = "echo reopened > /proc/self/fd/1 && echo also > /proc/self/fd/2"
    b = Path(shutil.move(bundle(["sh", "-c", script], edit), reachable / "bundle"))
    for dirpath, dirnames, filenames in os.walk(b / "rootfs"):
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(entry)
            if st.st_uid < host:
                os.lchown(entry, host + st.st_uid, host + st.st_gid)
    got = _both(runtimes, b, stdin=subprocess.DEVNULL)
    for name, proc in got.items():
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"reopened\n", b"also\n"), name
