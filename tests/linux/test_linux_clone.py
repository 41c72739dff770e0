"""clone3(CLONE_INTO_CGROUP) from Python: engine.linux.clone and the init's use of it.

Each case runs in a fresh interpreter (``os.register_at_fork`` hooks cannot
be taken back), which prints what it saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

UNIFIED = next(
    (
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split(" - ", 1)[1].startswith("cgroup2 ")
    ),
    None,
)


def _run(script: str) -> list[str]:
    code = f"import sys; sys.path[:0] = {sys.path!r}\n{script}"
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stderr) == (0, ""), out
    return out.stdout.splitlines()


@pytest.fixture
def cgroup2() -> Iterator[str]:
    if os.geteuid() != 0 or UNIFIED is None:
        pytest.skip("needs root and a cgroup2 mount")
    path = os.path.join(UNIFIED, f"runlog-test-clone-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    yield path
    os.rmdir(path)


@pytest.mark.root
def test_the_child_is_born_in_the_cgroup_and_whole(cgroup2: str) -> None:
    lines = _run(
        "import os, threading\n"
        "from engine.linux.clone import fork_into_cgroup, open_cgroup\n"
        "seen = []\n"
        "os.register_at_fork(after_in_child=lambda: seen.append('child'),\n"
        "                    after_in_parent=lambda: seen.append('parent'))\n"
        f"fd = open_cgroup({cgroup2!r})\n"
        "pid = fork_into_cgroup(fd)\n"
        "if pid == 0:\n"
        "    t = threading.Thread(target=seen.append, args=('thread',)); t.start(); t.join()\n"
        "    cgroup = [l for l in open('/proc/self/cgroup') if l.startswith('0::')][0]\n"
        "    print(cgroup.strip(), *seen, os.getppid() > 1, flush=True)\n"
        "    os._exit(7)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('exit', os.waitstatus_to_exitcode(status), *seen)\n"
    )
    relative = "/" + os.path.relpath(cgroup2, UNIFIED)
    assert lines == [f"0::{relative} child thread True", "exit 7 parent"]


def test_a_refused_clone3_makes_no_child(tmp_path: Path) -> None:
    # A directory that is no cgroup: the kernel refuses CLONE_INTO_CGROUP.
    lines = _run(
        "import os\n"
        "from engine.linux.clone import fork_into_cgroup, open_cgroup\n"
        f"print(fork_into_cgroup(open_cgroup({str(tmp_path)!r})))\n"
        "try:\n"
        "    os.waitpid(-1, os.WNOHANG)\n"
        "except ChildProcessError:\n"
        "    print('no child')\n"
    )
    assert lines == ["None", "no child"]


def test_the_init_falls_back_to_cgroup_procs_when_clone3_is_refused(tmp_path: Path) -> None:
    lines = _run(
        "import os\n"
        "from engine.runtime.monitor.spawn import _fork_intermediate\n"
        f"pid, joins = _fork_intermediate(['/v1/tasks'], {str(tmp_path)!r})\n"
        "if pid == 0:\n"
        "    os._exit(3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), *joins)\n"
    )
    assert lines == [f"3 /v1/tasks {tmp_path}/cgroup.procs"]


def test_without_cgroup2_the_init_only_writes_tasks() -> None:
    lines = _run(
        "import os\n"
        "from engine.runtime.monitor.spawn import _fork_intermediate\n"
        "pid, joins = _fork_intermediate(['/a/tasks', '/b/tasks'], None)\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(*joins)\n"
    )
    assert lines == ["/a/tasks /b/tasks"]
