"""Real containers exercising the config features one at a time, as root.

Each test asks for one feature of config.json (or one flag of runc's
command line) and looks at it from inside the container, or from the host,
the way a user of runc would check it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

Bundle = Callable[..., Path]

# CAP_SYS_RESOURCE (capability.h): raising hard rlimits, lowering oom_score_adj.
_CAP_SYS_RESOURCE = 24


def lines(text: str) -> dict[str, str]:
    """``key=value`` lines of a container's output."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


# -- 1. process.terminal and --console-socket ------------------------------------


def test_terminal_sends_the_pty_master_to_the_console_socket(
    runlog: Any, bundle: Bundle, console: Any
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True
        spec["process"]["consoleSize"] = {"height": 33, "width": 107}

    script = (
        "echo tty=$(tty); echo size=$(stty size); echo console=$(test -c /dev/console && echo c)"
    )
    b = bundle(["sh", "-c", script], edit)
    runlog("create", "t-tty", "-b", str(b), "--console-socket", str(console.path), check=True)
    assert console.received.wait(10), "no connection on the console socket"
    assert console.master is not None
    runlog("start", "t-tty", check=True)
    assert runlog.wait_status("t-tty", "stopped")["exitCode"] == 0
    console.thread.join(timeout=10)
    got = lines(console.output.decode().replace("\r", ""))
    # The slave is the container's own /dev/pts/N (its devpts instance), as runc makes it.
    assert got["tty"].startswith("/dev/pts/"), got
    assert got["size"] == "33 107"
    assert got["console"] == "c"
    runlog("delete", "t-tty", check=True)


def test_terminal_without_console_socket_fails_and_leaves_nothing(
    runlog: Any, bundle: Bundle
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True

    out = runlog("create", "t-notty", "-b", str(bundle(["true"], edit)))
    assert out.returncode == 1
    assert "cannot allocate tty if runlog will detach without setting console socket" in out.stderr
    assert not (runlog.root / "t-notty").exists()


# -- 2. user namespace -----------------------------------------------------------

_HOST_ID = 100000
_RANGE = 65536


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """What podman and the user-namespace guides of runc do: the image owned
    by the mapped range (container root = host ``uid``)."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, uid + st.st_uid, gid + st.st_gid)


def test_user_namespace_maps_root_to_the_host_range(
    runlog: Any, bundle: Bundle, reachable: Path
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        linux["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": _HOST_ID, "size": _RANGE}]
        linux["uidMappings"] = mapping
        linux["gidMappings"] = mapping
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900}]

    script = (
        "{ echo id=$(id -u):$(id -g); echo uidmap=$(cat /proc/self/uid_map); "
        "echo gidmap=$(cat /proc/self/gid_map); echo nofile=$(ulimit -n):$(ulimit -Hn); "
        "touch /owned && echo write=ok; } > /out.tmp 2>&1; mv /out.tmp /out; exec sleep 30"
    )
    b = Path(shutil.move(bundle(["sh", "-c", script], edit), reachable / "bundle"))
    _chown_tree(b / "rootfs", _HOST_ID, _HOST_ID)
    out_file = b / "rootfs" / "out"
    runlog("run", "-d", "t-userns", "-b", str(b), check=True)
    pid = runlog.state("t-userns")["pid"]
    deadline = time.monotonic() + 10
    while not out_file.exists():
        assert time.monotonic() < deadline, "the container never wrote /out"
        time.sleep(0.05)
    got = lines(out_file.read_text())
    assert got["id"] == "0:0"
    assert got["uidmap"].split() == ["0", str(_HOST_ID), str(_RANGE)]
    assert got["gidmap"].split() == ["0", str(_HOST_ID), str(_RANGE)]
    assert got["nofile"] == "900:1000"
    assert got["write"] == "ok"
    # From the host: the container's root is uid 100000, in its own user namespace.
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{_HOST_ID}\t{_HOST_ID}" in status
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert (b / "rootfs" / "owned").stat().st_uid == _HOST_ID
    runlog("delete", "--force", "t-userns", check=True)


# -- 3. joining a namespace by path --------------------------------------------


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Path]:
    name = f"runlog-test-{os.getpid()}-{tmp_path.name}"[:60]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_join_network_namespace_by_path(runlog: Any, bundle: Bundle, netns: Path) -> None:
    def edit(spec: dict[str, Any]) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = str(netns)

    out = runlog(
        "run", "t-netns", "-b", str(bundle(["readlink", "/proc/self/ns/net"], edit)), check=True
    )
    assert out.stdout.strip() == f"net:[{netns.stat().st_ino}]"
    assert out.stdout.strip() != os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/proc/self/ns/uts", "is a uts namespace, not a network one"),
        ("/etc/hostname", "Invalid argument (is it a network namespace file?)"),
        ("/nonexistent/ns", "No such file or directory"),
    ],
)
def test_join_namespace_of_the_wrong_type_fails_and_leaves_nothing(
    runlog: Any, bundle: Bundle, path: str, message: str
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = path

    out = runlog("create", "t-wrongns", "-b", str(bundle(["true"], edit)))
    assert out.returncode == 1
    assert path in out.stderr and "network namespace" in out.stderr
    assert message in out.stderr, out.stderr
    assert not (runlog.root / "t-wrongns").exists()


# -- 4. --no-pivot ------------------------------------------------------------------


def test_no_pivot_chroots_into_the_rootfs(runlog: Any, bundle: Bundle) -> None:
    script = "echo marker=$(cat /marker); echo root=$(stat -c %d:%i /); echo pid=$$"
    b = bundle(["sh", "-c", script])
    (b / "rootfs" / "marker").write_text("in-the-rootfs\n")
    out = runlog("run", "--no-pivot", "t-nopivot", "-b", str(b), check=True)
    rootfs = (b / "rootfs").stat()
    root = f"{rootfs.st_dev}:{rootfs.st_ino}"
    assert lines(out.stdout) == {"marker": "in-the-rootfs", "root": root, "pid": "1"}


# -- 5. linux.devices ---------------------------------------------------------------


def test_linux_devices_are_created_and_allowed(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
            {"path": "/dev/sub/fifo", "type": "p", "uid": 65534, "gid": 65534},
        ]

    script = (
        "echo mynull=$(stat -c '%F %t:%T %a' /dev/mynull); "
        "echo x > /dev/mynull && echo write=ok; echo read=$(wc -c < /dev/mynull); "
        "(exec 3<>/dev/fuse) && echo fuse=ok; "
        "echo fifo=$(stat -c '%F %u:%g %a' /dev/sub/fifo)"
    )
    out = runlog("run", "t-dev", "-b", str(bundle(["sh", "-c", script], edit)), check=True)
    got = lines(out.stdout)
    assert got["mynull"] == "character special file 1:3 620"
    assert (got["write"], got["read"], got["fuse"]) == ("ok", "0", "ok")
    assert got["fifo"] == "fifo 65534:65534 666"


def test_device_not_in_linux_devices_is_denied_by_the_cgroup(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        # The node is there (bound from the host), but the device rules of
        # the default config deny everything not allowed by name.
        spec["mounts"].append(
            {"destination": "/dev/fuse", "type": "bind", "source": "/dev/fuse", "options": ["bind"]}
        )

    script = "if (exec 3<>/dev/fuse); then echo fuse=ok; else echo fuse=denied; fi"
    out = runlog("run", "t-nodev", "-b", str(bundle(["sh", "-c", script], edit)), check=True)
    assert lines(out.stdout)["fuse"] == "denied"
    assert "Operation not permitted" in out.stderr


# -- 6. oomScoreAdj -----------------------------------------------------------------


def test_oom_score_adj_raised(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["oomScoreAdj"] = 517

    b = bundle(["cat", "/proc/self/oom_score_adj"], edit)
    assert runlog("run", "t-oom", "-b", str(b), check=True).stdout.strip() == "517"


def test_oom_score_adj_lowered(runlog: Any, bundle: Bundle) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["oomScoreAdj"] = -517

    b = bundle(["cat", "/proc/self/oom_score_adj"], edit)
    out = runlog("run", "t-oomlow", "-b", str(b))
    if has_capability(_CAP_SYS_RESOURCE):
        assert (out.returncode, out.stdout.strip()) == (0, "-517")
    else:
        # proc(5): below oom_score_adj_min only with CAP_SYS_RESOURCE.
        assert out.returncode == 1
        assert "oom_score_adj -517" in out.stderr and "CAP_SYS_RESOURCE" in out.stderr
        assert not (runlog.root / "t-oomlow").exists()


# -- 7. cgroup resources ----------------------------------------------------------


def test_memory_and_pids_limits_are_set_and_enforced(runlog: Any, bundle: Bundle) -> None:
    limit = 48 * 1024 * 1024

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["memory"] = {"limit": limit}
        spec["linux"]["resources"]["pids"] = {"limit": 10}

    # Fork until the pids controller refuses (busybox sh gives up there).
    script = "n=0; while [ $n -lt 30 ]; do sleep 30 & n=$((n+1)); echo started=$n; done"
    b = bundle(["sh", "-c", script], edit)
    runlog("create", "t-limits", "-b", str(b), check=True)
    cgroups_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    memory = Path("/sys/fs/cgroup/memory") / cgroups_path.lstrip("/")
    pids = Path("/sys/fs/cgroup/pids") / cgroups_path.lstrip("/")
    assert int((memory / "memory.limit_in_bytes").read_text()) == limit
    assert (pids / "pids.max").read_text().strip() == "10"
    pid = runlog.state("t-limits")["pid"]
    assert str(pid) in (pids / "cgroup.procs").read_text().split()
    runlog("kill", "t-limits", "KILL", check=True)
    runlog.wait_status("t-limits", "stopped")
    runlog("delete", "t-limits", check=True)

    out = runlog("run", "t-forkbomb", "-b", str(bundle(["sh", "-c", script], edit)))
    assert "can't fork: Resource temporarily unavailable" in out.stderr
    # The shell is one of the 10 tasks; the sleeps are the other 9.
    assert lines(out.stdout)["started"] == "9"


# -- 8. Slurm's rewritten config --------------------------------------------------


def test_slurm_rewritten_config(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=test-cluster\n")
    b = bundle(["true"])
    spec = json.loads((b / "config.json").read_text())
    # What scrun / oci.conf's RunTimeCreate hand runc: root.path absolute,
    # args and env replaced (PATH twice: the last one wins), and the site's
    # files bound in where the image has no such file.
    spec["root"]["path"] = str(b / "rootfs")
    spec["process"]["args"] = ["sh", "-c", "echo path=$PATH; cat /etc/slurm/slurm.conf"]
    spec["process"]["env"] = [
        "PATH=/nonexistent",
        "SLURM_JOB_ID=42",
        "PATH=/usr/bin:/bin",
    ]
    spec["mounts"].append(
        {
            "destination": "/etc/slurm/slurm.conf",
            "type": "none",
            "source": str(conf),
            "options": ["bind", "ro"],
        }
    )
    (b / "config.json").write_text(json.dumps(spec))
    assert not (b / "rootfs" / "etc" / "slurm").exists()
    out = runlog("run", "t-slurm", "-b", str(b), check=True)
    got = lines(out.stdout)
    assert got["path"] == "/usr/bin:/bin"
    assert got["ClusterName"] == "test-cluster"
    assert (b / "rootfs" / "etc" / "slurm" / "slurm.conf").is_file()


# -- 9. cgroup namespace ------------------------------------------------------------


@pytest.mark.parametrize("cgroupns", [True, False], ids=["cgroupns", "host-cgroupns"])
def test_cgroup_namespace_roots_the_container_at_its_cgroup(
    runlog: Any, bundle: Bundle, cgroupns: bool
) -> None:
    limit = 40 * 1024 * 1024

    def edit(spec: dict[str, Any]) -> None:
        if cgroupns:
            spec["linux"]["namespaces"].append({"type": "cgroup"})
        spec["linux"]["resources"]["memory"] = {"limit": limit}

    script = (
        "cat /proc/self/cgroup; "
        "echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
        "echo procs=$(cat /sys/fs/cgroup/pids/cgroup.procs)"
    )
    b = bundle(["sh", "-c", script], edit)
    cgroups_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    out = runlog("run", "t-cgns", "-b", str(b), check=True).stdout
    entries = [line.split(":", 2) for line in out.splitlines() if line[:1].isdigit()]
    assert entries
    # In a cgroup namespace the container's cgroup is "/" in every hierarchy;
    # without one it sees its full path.
    expected = "/" if cgroupns else cgroups_path
    assert {path for _, _, path in entries} == {expected}, out
    # Its /sys/fs/cgroup shows its own cgroup at the top, as runc mounts it.
    got = lines(out)
    assert int(got["limit"]) == limit
    assert "1" in got["procs"].split()


# -- 10. hook timeout ----------------------------------------------------------------


def test_hook_timeout_during_create_fails_and_leaves_nothing(
    runlog: Any, bundle: Bundle, tmp_path: Path, shell_hook: Any
) -> None:
    child = tmp_path / "hook-child.pid"
    script = f"sleep 30 &\necho $! > {child}\nwait\n"
    edit = shell_hook("slow-hook.sh", script, "createRuntime", timeout=1)

    started = time.monotonic()
    out = runlog("create", "t-hooktime", "-b", str(bundle(["true"], edit)))
    assert time.monotonic() - started < 15
    assert out.returncode == 1
    assert "timed out after 1 s" in out.stderr, out.stderr
    assert not (runlog.root / "t-hooktime").exists()
    # The hook's own children went with it (its process group is killed).
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while not gone(pid):
        assert time.monotonic() < deadline, f"the hook's child {pid} is still running"
        time.sleep(0.05)


# -- kill of a created container -------------------------------------------------


@pytest.mark.parametrize(("signame", "signo"), [("KILL", 9), ("TERM", 15)])
def test_kill_of_a_created_container_stops_it(
    runlog: Any, bundle: Bundle, signame: str, signo: int
) -> None:
    # runc delivers the signal to the waiting init, which dies of it; the
    # container is then stopped and its process never ran.
    b = bundle(["sh", "-c", "touch /started"])
    runlog("create", "t-killc", "-b", str(b), check=True)
    pid = runlog.state("t-killc")["pid"]
    runlog("kill", "t-killc", signame, check=True)
    doc = runlog.wait_status("t-killc", "stopped")
    assert (doc["status"], doc.get("exitCode")) == ("stopped", 128 + signo)
    assert gone(pid)
    started = runlog("start", "t-killc")
    assert "cannot start a container that has stopped" in started.stderr
    assert not (b / "rootfs" / "started").exists()
    runlog("delete", "t-killc", check=True)


# Starts runlog with glibc's reserved signals 32 and 33 ignored (raw
# rt_sigaction, x86_64's number 13: sigaction() refuses them).
_IGNORING_32_33 = (
    "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
    "act = ctypes.create_string_buffer(64); act[0] = 1; "
    "assert all(libc.syscall(13, s, act, None, 8) == 0 for s in (32, 33)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def test_reserved_signals_ignored_by_runlog_s_caller_are_reset(runlog: Any, bundle: Bundle) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the raw rt_sigaction number in this test is x86_64's")
    b = bundle(["grep", "-E", "^SigIgn", "/proc/self/status"])
    cli = ["-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db)]
    out = subprocess.run(
        [sys.executable, "-c", _IGNORING_32_33, *cli, "run", "t-sig32", "-b", str(b)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=30,
    )
    assert (out.returncode, out.stdout.split()) == (0, ["SigIgn:", "0" * 16]), out.stderr


def test_process_starts_with_default_signal_dispositions(runlog: Any, bundle: Bundle) -> None:
    # execve keeps ignored signals ignored; nothing the runtime ignored or
    # blocked may reach the container's process (runc's starts clean).
    b = bundle(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
    out = runlog("run", "t-sigs", "-b", str(b), check=True).stdout
    assert out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]
