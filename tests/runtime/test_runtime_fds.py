"""What a container's monitor keeps of the descriptors its caller gave
``create``: nothing but stdio and ``--preserve-fds``, and those only in the
init, as runc (whose create exits, and whose init keeps stdio and the
preserved ones). A caller waiting for EOF on a pipe it gave create, or for
a lock, gets it when create returns. Side by side with runc."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.runtime.conftest import REPO

Bundle = Callable[..., Path]

# The container writes to its stdout and to the preserved fd 3.
SCRIPT = "echo out; echo kept >&3"


def _eof_within(fd: int, seconds: float) -> bool:
    """Whether ``fd`` (a pipe's read end) reaches EOF within ``seconds``;
    whatever comes before is read and dropped."""
    while True:
        ready, _, _ = select.select([fd], [], [], seconds)
        if not ready:
            return False
        if os.read(fd, 4096) == b"":
            return True


def _read_all(fd: int, seconds: float = 20) -> bytes:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], seconds)
        assert ready, f"no EOF within {seconds}s after {data!r}"
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _high(fd: int) -> int:
    """``fd`` moved out of the way of the numbers the child is given."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return moved


class Caller:
    """A caller that gives create a preserved pipe as fd 3, another pipe as
    fd 5 and a locked file as fd 6, and the container's stdout a pipe of
    its own when asked."""

    def __init__(self, tmp: Path, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        self.lock = tmp / "lock"
        self.lock.touch()
        self.errors = tmp / "errors"

    def create(self, cid: str, bundle: Path, stdout_pipe: bool) -> dict[str, Any]:
        kept_r, kept_w = map(_high, os.pipe())
        extra_r, extra_w = map(_high, os.pipe())
        lock = _high(os.open(self.lock, os.O_RDWR))
        fcntl.flock(lock, fcntl.LOCK_EX)
        out_r, out_w = map(_high, os.pipe()) if stdout_pipe else (-1, -1)

        def arrange() -> None:
            os.dup2(kept_w, 3)
            os.dup2(extra_w, 5)
            os.dup2(lock, 6)

        with open(self.errors, "ab") as errors:
            code = subprocess.run(
                [*self.argv, "create", "--preserve-fds", "1", "-b", str(bundle), cid],
                stdin=subprocess.DEVNULL,
                stdout=out_w if stdout_pipe else errors,
                stderr=errors,
                pass_fds=(3, 5, 6),
                preexec_fn=arrange,
                env=self.env,
                timeout=60,
                check=False,
            ).returncode
        for fd in (kept_w, extra_w, lock, out_w):
            if fd >= 0:
                os.close(fd)
        seen = {
            "code": code,
            "extra pipe EOF": _eof_within(extra_r, 2),
            "lock free": _lock_is_free(self.lock),
            "preserved pipe EOF": _eof_within(kept_r, 0.3),
            "stdout EOF": _eof_within(out_r, 0.3) if stdout_pipe else None,
        }
        os.close(extra_r)
        self.kept, self.out = kept_r, out_r
        return seen

    def start(self, cid: str) -> dict[str, Any]:
        subprocess.run([*self.argv, "start", cid], env=self.env, timeout=60, check=True)
        seen = {"preserved pipe": _read_all(self.kept)}
        if self.out >= 0:
            seen["stdout"] = _read_all(self.out)
            os.close(self.out)
        os.close(self.kept)
        return seen

    def delete(self, cid: str) -> None:
        subprocess.run(
            [*self.argv, "delete", "--force", cid], env=self.env, timeout=60, check=False
        )


def _callers(runlog: Any, runc: Any, tmp_path: Path) -> dict[str, Caller]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    mine = [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    return {
        "runlog": Caller(tmp_path, mine, env),
        "runc": Caller(tmp_path, ["runc", "--root", str(runc.root)], dict(os.environ)),
    }


def test_create_keeps_nothing_of_the_callers_but_what_the_container_is_given(
    runlog: Any, runc: Any, bundle: Bundle, tmp_path: Path
) -> None:
    callers = _callers(runlog, runc, tmp_path)
    b = bundle(["sh", "-c", SCRIPT])
    for stdout_pipe in (False, True):
        seen = {}
        for name, caller in callers.items():
            cid = f"t-fds-{int(stdout_pipe)}"
            try:
                created = caller.create(cid, b, stdout_pipe)
                started = caller.start(cid) if created["code"] == 0 else {}
            finally:
                caller.delete(cid)
            seen[name] = (created, started)
        created, started = seen["runlog"]
        assert created == {
            "code": 0,
            # The monitor let go of them: the caller sees EOF and a free lock
            # as soon as create has returned.
            "extra pipe EOF": True,
            "lock free": True,
            # The init keeps stdio and the preserved fd until it ends.
            "preserved pipe EOF": False,
            "stdout EOF": False if stdout_pipe else None,
        }, (created, callers["runlog"].errors.read_text())
        expected = {"preserved pipe": b"kept\n"}
        if stdout_pipe:
            expected["stdout"] = b"out\n"
        assert started == expected
        assert seen["runc"] == seen["runlog"]


def test_run_lets_go_of_the_callers_descriptors_detached_and_in_the_foreground(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    b = str(bundle(["sh", "-c", "echo out; sleep 1"]))
    lock = tmp_path / "lock"
    lock.touch()
    for detach in ([], ["-d"]):
        extra_r, extra_w = map(_high, os.pipe())
        held = _high(os.open(lock, os.O_RDWR))
        fcntl.flock(held, fcntl.LOCK_EX)
        out_r, out_w = map(_high, os.pipe())

        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db),
             "run", *detach, "-b", b, "t-run"],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=subprocess.PIPE,
            pass_fds=(extra_w, held), env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        for fd in (extra_w, held, out_w):
            os.close(fd)
        try:
            # The container's stdout, whether run waits for it or not.
            assert _read_all(out_r) == b"out\n"
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
            if detach:
                assert runlog.wait_status("t-run", "stopped")["status"] == "stopped"
            # Still there when detached (not deleted yet): not held by its monitor.
            assert _eof_within(extra_r, 2)
            assert _lock_is_free(lock)
        finally:
            os.close(out_r)
            os.close(extra_r)
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
            runlog("delete", "--force", "t-run")


# Socket activation (sd_listen_fds(3)): what reaches the process, side by side.
# The config's own LISTEN_FDS=9 shows which value wins.
ACTIVATED = (
    'echo "LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID"; '
    'for fd in 3 4 5; do { echo "fd $fd" >&$fd; } 2>/dev/null && echo "open $fd"; done; exit 0'
)


def _activated(argv: list[str], env: dict[str, str], listen_pid: str, out: Path) -> dict[str, Any]:
    """``argv`` run with three pipes as fds 3, 4 and 5 and ``LISTEN_FDS=2``;
    ``LISTEN_PID`` is the runtime's own pid (``$$`` of the shell that execs
    it) or another. What the command returned, what the process wrote to
    its stdout and to each pipe."""
    pipes = [tuple(map(_high, os.pipe())) for _ in range(3)]

    def arrange() -> None:
        for number, (_r, w) in enumerate(pipes, start=3):
            os.dup2(w, number)

    wrapper = f'LISTEN_FDS=2 LISTEN_PID={listen_pid} LISTEN_FDNAMES=a:b exec "$@"'
    # Files: a created container keeps create's stdio (a pipe would not end).
    errors = out.with_suffix(".err")
    with open(out, "wb") as stdout, open(errors, "wb") as stderr:
        code = subprocess.run(
            ["sh", "-c", wrapper, "sh", *argv],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            pass_fds=(3, 4, 5), preexec_fn=arrange, env=env, timeout=60, check=False,
        ).returncode  # fmt: skip
    for _r, w in pipes:
        os.close(w)
    return {"code": code, "pipes": pipes}


def _finish(seen: dict[str, Any], out: Path) -> dict[str, Any]:
    """The pipes read to their end once the process is gone."""
    written = {}
    for number, (r, _w) in enumerate(seen.pop("pipes"), start=3):
        written[number] = _read_all(r)
        os.close(r)
    errors = out.with_suffix(".err").read_text()
    return {**seen, "stderr": errors, "stdout": out.read_text(), "pipes": written}


def _expected(listen: bool, preserve: int, exec_: bool = False) -> dict[str, Any]:
    passed = (2 if listen and not exec_ else 0) + preserve
    lines = ["LISTEN_FDS=2 LISTEN_PID=1" if passed > preserve else "LISTEN_FDS=9 LISTEN_PID="]
    lines += [f"open {fd}" for fd in range(3, 3 + passed)]
    return {
        "code": 0,
        "stderr": "",
        "stdout": "\n".join(lines) + "\n",
        "pipes": {fd: f"fd {fd}\n".encode() if fd < 3 + passed else b"" for fd in (3, 4, 5)},
    }


def _activation_bundle(bundle: Bundle, args: list[str]) -> Path:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["env"].append("LISTEN_FDS=9")

    return bundle(args, edit)


def test_socket_activation_descriptors_go_to_the_container_as_with_runc(
    runlog: Any, runc: Any, bundle: Bundle, tmp_path: Path
) -> None:
    """create and run, as runc: with LISTEN_PID the runtime's own pid, fds 3
    to 3+LISTEN_FDS-1 go to the container ahead of --preserve-fds, and its
    environment gets LISTEN_FDS=N and LISTEN_PID=1; with another
    LISTEN_PID, nothing of it."""
    callers = _callers(runlog, runc, tmp_path)
    b = str(_activation_bundle(bundle, ["sh", "-c", ACTIVATED]))
    cases = [(mode, pid, preserve) for mode in ("run", "create")
             for pid in ("$$", "1") for preserve in (0, 1)]  # fmt: skip
    for mode, listen_pid, preserve in cases:
        seen = {}
        for name, caller in callers.items():
            cid = f"t-listen-{mode}"
            out = tmp_path / f"{name}-{mode}.out"
            flags = ["--preserve-fds", str(preserve), "-b", b, cid]
            try:
                got = _activated([*caller.argv, mode, *flags], caller.env, listen_pid, out)
                if mode == "create" and got["code"] == 0:
                    subprocess.run([*caller.argv, "start", cid], env=caller.env, check=True)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and b"stopped" not in subprocess.run(
                        [*caller.argv, "state", cid], env=caller.env, capture_output=True,
                        check=False,
                    ).stdout:  # fmt: skip
                        time.sleep(0.05)
            finally:
                caller.delete(cid)
            seen[name] = _finish(got, out)
        case = (mode, listen_pid, preserve)
        assert seen["runlog"] == _expected(listen_pid == "$$", preserve), case
        assert seen["runc"] == seen["runlog"], case


def test_exec_passes_no_socket_activation_descriptors_as_runc(
    runlog: Any, runc: Any, bundle: Bundle, tmp_path: Path
) -> None:
    """runc's exec ignores LISTEN_FDS: the process gets stdio and
    --preserve-fds (counted from fd 3) only, and the config's environment."""
    callers = _callers(runlog, runc, tmp_path)
    b = str(_activation_bundle(bundle, ["sleep", "60"]))
    for preserve in (0, 1):
        seen = {}
        for name, caller in callers.items():
            cid = "t-listen-exec"
            out = tmp_path / f"{name}-exec.out"
            try:
                run = [*caller.argv, "run", "-d", "-b", b, cid]
                subprocess.run(run, env=caller.env, stdin=subprocess.DEVNULL, check=True)
                argv = [*caller.argv, "exec", "--preserve-fds", str(preserve), cid,
                        "sh", "-c", ACTIVATED]  # fmt: skip
                got = _activated(argv, caller.env, "$$", out)
            finally:
                caller.delete(cid)
            seen[name] = _finish(got, out)
        assert seen["runlog"] == _expected(True, preserve, exec_=True), preserve
        assert seen["runc"] == seen["runlog"], preserve
