"""engine.runtime.monitor.spawn.spawn's ``meanwhile``: the monitor's own work while
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
# cgroup: the intermediate is forked as usual and joins none.
_SCRIPT = """
import os, sys
from engine.linux import syscalls
from engine.oci.config import load_bundle
from engine.runtime.monitor import spawn

syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
config = load_bundle(sys.argv[1])
calls = []
given = []

def meanwhile(pid):
    calls.append(os.getpid())
    given.append(pid)
    if sys.argv[2] == "fail":
        raise OSError(98, "Address already in use")

try:
    handle = spawn.spawn(config, [], None, meanwhile=meanwhile)
except OSError as err:
    print("raised", err.strerror)
else:
    print("ready", handle.pid == int(open(f"/proc/{handle.pid}/stat").read().split()[0]))
    # Cloned straight into its namespaces: its pid is known to meanwhile.
    print("given", given == [handle.pid])
    os.kill(handle.pid, 9)
    os.waitpid(handle.pid, 0)
print("calls", calls == [os.getpid()])
try:
    print("left", os.waitpid(-1, os.WNOHANG))
except ChildProcessError:
    print("left none")
"""


def _spawning(script: str, bundle: Path, mode: str) -> list[str]:
    """What ``script`` prints, run in a fresh interpreter as a monitor."""
    out = subprocess.run(
        [sys.executable, "-c", script, str(bundle), mode],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("ok", ["ready True", "given True", "calls True", "left none"]),
     ("fail", ["raised Address already in use", "calls True", "left none"])],
)  # fmt: skip
def test_meanwhile_runs_once_and_its_failure_leaves_no_init(
    bundle: Callable[..., Path], mode: str, expected: list[str]
) -> None:
    assert _spawning(_SCRIPT, bundle(["true"]), mode) == expected


# The init is cloned straight into its namespaces, the spawner's child from
# the start; the intermediate serves where it must (here: clone3 refused).
_DIRECT = """
import os, sys
from engine.linux import clone, syscalls
from engine.oci.config import load_bundle
from engine.runtime.monitor import spawn

syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
config = load_bundle(sys.argv[1])
forked = []
real_fork = spawn._fork_intermediate
spawn._fork_intermediate = lambda *args: forked.append(1) or real_fork(*args)
if sys.argv[2] == "refused":
    clone.fork_into_cgroup = lambda fd, flags=0: None
handle = spawn.spawn(config, [], None)
status = open(f"/proc/{handle.pid}/status").read().split("\\n")
ppid = [line.split()[1] for line in status if line.startswith("PPid:")][0]
nspid = [line.split()[1:] for line in status if line.startswith("NSpid:")][0]
def ns(pid, name):
    return os.readlink(f"/proc/{pid}/ns/{name}")
kinds = ("pid", "net", "ipc", "uts", "mnt")
new = [name for name in kinds if ns(handle.pid, name) != ns("self", name)]
print("intermediate", len(forked))
print("parent", int(ppid) == os.getpid(), "pid 1", nspid[-1] == "1")
print("new", *new, "cgroup", ns(handle.pid, "cgroup") == ns("self", "cgroup"))
os.kill(handle.pid, 9)
os.waitpid(handle.pid, 0)
try:
    print("left", os.waitpid(-1, os.WNOHANG))
except ChildProcessError:
    print("left none")
"""


@pytest.mark.parametrize(("mode", "intermediates"), [("direct", 0), ("refused", 1)])
def test_the_init_is_cloned_into_its_namespaces_or_forked_by_the_intermediate(
    bundle: Callable[..., Path], mode: str, intermediates: int
) -> None:
    assert _spawning(_DIRECT, bundle(["true"]), mode) == [
        f"intermediate {intermediates}",
        "parent True pid 1 True",
        "new pid net ipc uts mnt cgroup True",
        "left none",
    ]
