"""engine.runtime.init.spawn's ``meanwhile``: the monitor's own work while
the init sets itself up, and what a failure of it leaves (nothing)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# Run as a monitor runs spawn: a child subreaper, single-threaded. No
# cgroup: the init's first stage is forked as usual and joins none.
_SCRIPT = """
import os, sys
from engine.linux import syscalls
from engine.oci.config import load_bundle
from engine.runtime import init

syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
config = load_bundle(sys.argv[1])
calls = []

def meanwhile():
    calls.append(os.getpid())
    if sys.argv[2] == "fail":
        raise OSError(98, "Address already in use")

try:
    handle = init.spawn(config, [], None, meanwhile=meanwhile)
except OSError as err:
    print("raised", err.strerror)
else:
    print("ready", handle.pid == int(open(f"/proc/{handle.pid}/stat").read().split()[0]))
    os.kill(handle.pid, 9)
    os.waitpid(handle.pid, 0)
print("calls", calls == [os.getpid()])
try:
    print("left", os.waitpid(-1, os.WNOHANG))
except ChildProcessError:
    print("left none")
"""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("ok", ["ready True", "calls True", "left none"]),
     ("fail", ["raised Address already in use", "calls True", "left none"])],
)  # fmt: skip
def test_meanwhile_runs_once_and_its_failure_leaves_no_init(
    bundle: Callable[..., Path], mode: str, expected: list[str]
) -> None:
    b = bundle(["true"])
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(b), mode],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected
