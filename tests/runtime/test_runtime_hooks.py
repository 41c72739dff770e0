"""HookRunner: real hooks (small /bin/sh scripts) run as the runtime-spec and runc do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ActionError
from engine.oci.model import Hook, Hooks
from engine.runtime.monitor.hooks import TAIL_BYTES, HookRunner

STATE = {
    "ociVersion": "1.2.0",
    "id": "job-4711",
    "status": "creating",
    "pid": 4242,
    "bundle": "/srv/bundles/job-4711",
    "annotations": {"note": "un été à Zürich"},
}


def script(directory: Path, name: str, body: str, mode: int = 0o755) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def no_init() -> int | None:
    raise AssertionError("namespace_pid must not be asked at this point")


def runner(namespace_pid: Any = no_init, **points: Any) -> HookRunner:
    return HookRunner(Hooks(**points), namespace_pid)


def failure(hook_runner: HookRunner, point: str) -> ActionError:
    with pytest.raises(ActionError) as caught:
        hook_runner.run(point, STATE)
    return caught.value


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie left to an init that does
    not reap (the test machine's pid 1 does not). SIGKILL to another process
    completes asynchronously, so give it a moment."""
    deadline = time.monotonic() + 2
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


# --- order, argv, env, stdin ----------------------------------------------


def test_hooks_run_in_order_and_each_run_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "log"
    paths = [
        script(tmp_path, f"h{n}", f"echo h{n} >> {log}\necho note {n} >&2\necho out {n}\n")
        for n in (1, 2, 3)
    ]

    runs = runner(poststart=tuple(Hook(p) for p in paths)).run("poststart", STATE)

    assert log.read_text() == "h1\nh2\nh3\n"
    assert [run["path"] for run in runs] == paths
    for n, run in enumerate(runs, 1):
        assert run["exit_code"] == 0
        assert run["stderr_tail"] == f"note {n}\n"
        assert run["stdout_tail"] == f"out {n}\n"
        assert isinstance(run["duration_ms"], float)
        assert run["duration_ms"] > 0
        assert "signal" not in run
        assert "timed_out" not in run
        assert "error" not in run


def test_argv_and_env_are_exactly_as_configured(tmp_path: Path) -> None:
    argv_out, env_out = tmp_path / "argv", tmp_path / "env"
    # /bin/sh itself as the hook, so /proc/$$/cmdline shows the argv it was
    # given, args[0] included (a "#!" script would show the interpreter's).
    command = 'tr "\\0" "\\n" < /proc/$$/cmdline > "$1"; tr "\\0" "\\n" < /proc/$$/environ > "$2"'
    args = ("not-the-path", "-c", command, "cmd-name", str(argv_out), str(env_out))
    env = ("ONE=1", "TWO=two words", "EMPTY=", "EQ=a=b")

    runner(prestart=(Hook("/bin/sh", args=args, env=env),)).run("prestart", STATE)

    assert argv_out.read_text().splitlines() == list(args)
    assert env_out.read_text().splitlines() == list(env)


def test_no_args_and_no_env_mean_just_the_path_and_an_empty_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = script(
        tmp_path, "hook", f'echo "$#" > {out}\ntr "\\0" "\\n" < /proc/$$/environ >> {out}\n'
    )

    runner(prestart=(Hook(hook),)).run("prestart", STATE)

    assert out.read_text() == "0\n"


def test_the_state_is_on_stdin_as_compact_json(tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    hook = script(tmp_path, "hook", f"cat > {out}\n")

    runner(create_runtime=(Hook(hook),)).run("createRuntime", STATE)

    assert out.read_bytes() == json.dumps(STATE, separators=(",", ":")).encode()
    assert json.loads(out.read_bytes()) == STATE


def test_a_hook_that_does_not_read_a_large_state_does_not_block(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook", "exit 0\n")
    state = {**STATE, "annotations": {"big": "x" * (1 << 20)}}

    runs = runner(prestart=(Hook(hook),)).run("prestart", state)

    assert runs[0]["exit_code"] == 0


def test_large_output_is_read_without_deadlock_and_kept_as_a_tail(tmp_path: Path) -> None:
    hook = script(
        tmp_path,
        "hook",
        "head -c 1048576 /dev/zero | tr '\\0' y\n"
        "head -c 100000 /dev/zero | tr '\\0' x >&2\n"
        "echo >&2\necho 'last words' >&2\nexit 1\n",
    )

    err = failure(runner(prestart=(Hook(hook),)), "prestart")

    run = err.details["runs"][0]
    assert run["stdout_tail"] == "y" * TAIL_BYTES
    assert len(run["stderr_tail"].encode()) == TAIL_BYTES == 4096
    assert run["stderr_tail"].endswith("x\nlast words\n")
    assert str(err) == f"prestart hook {hook} exited with status 1: last words"


# --- failures ---------------------------------------------------------------


def test_a_failing_hook_stops_the_point_and_names_point_path_status_and_reason(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "third-ran"
    first = script(tmp_path, "first", "exit 0\n")
    second = script(tmp_path, "second", "echo trying >&2\necho no such network >&2\nexit 3\n")
    third = script(tmp_path, "third", f"touch {marker}\n")

    err = failure(runner(create_runtime=(Hook(first), Hook(second), Hook(third))), "createRuntime")

    assert str(err) == f"createRuntime hook {second} exited with status 3: no such network"
    runs = err.details["runs"]
    assert [run["path"] for run in runs] == [first, second]
    assert [run["exit_code"] for run in runs] == [0, 3]
    assert runs[1]["stderr_tail"] == "trying\nno such network\n"
    assert not marker.exists()


def test_keep_going_runs_every_hook_and_names_each_failure(tmp_path: Path) -> None:
    # poststop: a failing hook is a warning; the remaining hooks still run.
    log = tmp_path / "log"
    first = script(tmp_path, "first", f"echo first >> {log}\necho busy >&2\nexit 2\n")
    missing = str(tmp_path / "missing")
    third = script(tmp_path, "third", f"echo third >> {log}\n")

    hooks = runner(poststop=(Hook(first), Hook(missing), Hook(third)))
    with pytest.raises(ActionError) as caught:
        hooks.run("poststop", STATE, keep_going=True)

    assert log.read_text() == "first\nthird\n"
    assert str(caught.value) == (
        f"poststop hook {first} exited with status 2: busy; "
        f"poststop hook {missing} could not be executed: No such file or directory"
    )
    runs = caught.value.details["runs"]
    assert [run["path"] for run in runs] == [first, missing, third]
    assert [run["exit_code"] for run in runs] == [2, None, 0]


def test_the_reason_falls_back_to_stdout_and_is_omitted_when_there_is_none(
    tmp_path: Path,
) -> None:
    chatty = script(tmp_path, "chatty", "echo 'said on stdout'\nexit 2\n")
    silent = script(tmp_path, "silent", "exit 4\n")

    assert str(failure(runner(poststop=(Hook(chatty),)), "poststop")) == (
        f"poststop hook {chatty} exited with status 2: said on stdout"
    )
    assert str(failure(runner(poststop=(Hook(silent),)), "poststop")) == (
        f"poststop hook {silent} exited with status 4"
    )


def test_death_by_signal_fails_and_names_the_signal(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook", "echo going >&2\nkill -TERM $$\nsleep 5\n")

    err = failure(runner(poststart=(Hook(hook),)), "poststart")

    assert str(err) == f"poststart hook {hook} was killed by signal SIGTERM (15): going"
    run = err.details["runs"][0]
    assert run["signal"] == signal.SIGTERM
    assert run["exit_code"] is None


def test_a_timeout_kills_the_hook_and_its_process_group(tmp_path: Path) -> None:
    shell_pid, sleep_pid = tmp_path / "shell.pid", tmp_path / "sleep.pid"
    hook = script(
        tmp_path,
        "hook",
        f"echo $$ > {shell_pid}\nsleep 30 &\necho $! > {sleep_pid}\necho waiting >&2\nwait\n",
    )

    started = time.monotonic()
    err = failure(runner(prestart=(Hook(hook, timeout=1),)), "prestart")
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 5
    assert str(err) == f"prestart hook {hook} timed out after 1 s: waiting"
    run = err.details["runs"][0]
    assert run["timed_out"] is True
    assert run["signal"] == signal.SIGKILL
    assert run["exit_code"] is None
    assert not os.path.exists(f"/proc/{int(shell_pid.read_text())}")  # reaped by the runner
    assert gone(int(sleep_pid.read_text()))  # killed with the group


def test_a_hook_within_its_timeout_succeeds(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook", "sleep 0.1\n")

    runs = runner(prestart=(Hook(hook, timeout=5),)).run("prestart", STATE)

    assert runs[0]["exit_code"] == 0
    assert "timed_out" not in runs[0]


def test_a_daemon_left_holding_stdout_does_not_hang_the_runner(tmp_path: Path) -> None:
    daemon_pid = tmp_path / "daemon.pid"
    hook = script(tmp_path, "hook", f"sleep 30 &\necho $! > {daemon_pid}\necho started\n")
    try:
        started = time.monotonic()
        runs = runner(prestart=(Hook(hook),)).run("prestart", STATE)
        assert time.monotonic() - started < 5
        assert runs[0]["exit_code"] == 0
        assert runs[0]["stdout_tail"] == "started\n"
    finally:
        if daemon_pid.exists():
            os.kill(int(daemon_pid.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("point", ["prestart", "createContainer"])
def test_a_missing_executable_fails_with_the_errno_text(tmp_path: Path, point: str) -> None:
    missing = str(tmp_path / "missing")
    hooks = runner(os.getpid, prestart=(Hook(missing),), create_container=(Hook(missing),))

    err = failure(hooks, point)

    assert str(err) == f"{point} hook {missing} could not be executed: No such file or directory"
    assert err.details["runs"] == [
        {
            "path": missing,
            "exit_code": None,
            "duration_ms": pytest.approx(err.details["runs"][0]["duration_ms"]),
            "stderr_tail": "",
            "stdout_tail": "",
            "error": "No such file or directory",
        }
    ]


@pytest.mark.parametrize("point", ["poststop", "createContainer"])
def test_a_file_that_is_not_executable_fails_with_the_errno_text(
    tmp_path: Path, point: str
) -> None:
    hook = script(tmp_path, "hook", "exit 0\n", mode=0o644)
    hooks = runner(os.getpid, poststop=(Hook(hook),), create_container=(Hook(hook),))

    err = failure(hooks, point)

    assert str(err) == f"{point} hook {hook} could not be executed: Permission denied"
    assert err.details["runs"][0]["error"] == "Permission denied"


def test_the_first_exec_failure_stops_the_point(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    after = script(tmp_path, "after", f"touch {marker}\n")

    err = failure(runner(prestart=(Hook("/nonexistent/hook"), Hook(after))), "prestart")

    assert len(err.details["runs"]) == 1
    assert not marker.exists()


def test_the_hook_starts_with_default_signal_dispositions_and_mask() -> None:
    # grep as the hook, not a shell: a shell blocks signals around its forks.
    hook = Hook("/bin/grep", args=("grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"))
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        runs = runner(prestart=(hook,)).run("prestart", STATE)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGHUP, previous)

    masks = dict(line.split(":") for line in runs[0]["stdout_tail"].splitlines())
    # Python itself ignores SIGPIPE, and a caller may ignore glibc's reserved
    # signals 32 and 33 (which only the raw syscall resets): none of it must
    # reach the hook.
    assert {key: int(value, 16) for key, value in masks.items()} == {"SigIgn": 0, "SigBlk": 0}


def test_a_relative_path_is_refused_without_a_path_lookup() -> None:
    err = failure(runner(prestart=(Hook("true"),)), "prestart")

    assert str(err) == "prestart hook true could not be executed: path is not absolute"


def test_an_env_entry_that_is_not_key_value_is_refused(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook", "exit 0\n")

    err = failure(runner(prestart=(Hook(hook, env=("NOEQUALS",)),)), "prestart")

    assert "env entry 'NOEQUALS' is not KEY=VALUE" in str(err)


def test_an_unknown_point_is_an_action_error() -> None:
    with pytest.raises(ActionError, match="not a hook point"):
        runner().run("preStart", STATE)


# --- container-namespace points without namespaces to join -----------------


def test_a_point_without_hooks_does_not_ask_for_the_init() -> None:
    assert runner(no_init).run("createContainer", STATE) == []
    assert runner(no_init).run("startContainer", STATE) == []


@pytest.mark.parametrize("point", ["createContainer", "startContainer"])
def test_container_points_fail_clearly_without_an_init(tmp_path: Path, point: str) -> None:
    marker = tmp_path / "ran"
    hook = script(tmp_path, "hook", f"touch {marker}\n")
    hooks = runner(lambda: None, create_container=(Hook(hook),), start_container=(Hook(hook),))

    err = failure(hooks, point)

    assert str(err) == (
        f"{point} hooks run in the container's namespaces, but the container has no init process"
    )
    assert err.details["runs"] == []
    assert not marker.exists()


def test_a_vanished_init_is_reported(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    hook = script(tmp_path, "hook", "exit 0\n")

    err = failure(runner(lambda: child.pid, create_container=(Hook(hook),)), "createContainer")

    assert f"cannot open the namespaces of the container's init (pid {child.pid})" in str(err)


def test_create_container_executes_the_file_opened_in_the_runtime_namespace(
    tmp_path: Path,
) -> None:
    # Sharing every namespace with the runtime, nothing is joined, but the
    # hook is still executed by descriptor: a script then sees /dev/fd/N as
    # its name. startContainer resolves its path in the container instead.
    out = tmp_path / "out"
    hook = script(tmp_path, "hook", f'echo "$0" >> {out}\n')
    hooks = runner(os.getpid, create_container=(Hook(hook),), start_container=(Hook(hook),))

    hooks.run("createContainer", STATE)
    hooks.run("startContainer", STATE)

    by_fd, by_path = out.read_text().splitlines()
    assert by_fd.startswith("/dev/fd/")
    assert by_path == hook


# --- joining another process's namespaces (root) ---------------------------


HOSTNAME = "runlog-hook-target"
OWNER = 100000  # an unprivileged uid, owner of a user namespace


@pytest.fixture
def spawn_target(tmp_path: Path) -> Iterator[Any]:
    """Start processes in new uts, mount and pid namespaces, each with its own
    hostname. Started by root, a target also mounts a tmpfs over
    tmp_path/hidden that only it sees; started by ``owner`` (an unprivileged
    uid), it is in a user namespace of its own where it is root. Returns its
    pid; the targets are killed after the test."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    started: list[tuple[subprocess.Popen[bytes], int]] = []

    def spawn(owner: int | None = None) -> int:
        command = f"hostname {HOSTNAME} && echo ready && exec sleep 30"
        flags = ["--uts", "--mount", "--pid", "--fork", "--kill-child"]
        if owner is None:
            command = f"mount -t tmpfs runlog-test {hidden} && {command}"
        else:
            flags = ["--user", "--map-root-user", *flags]
        unshare = subprocess.Popen(
            ["unshare", *flags, "sh", "-c", command],
            stdout=subprocess.PIPE,
            cwd="/",
            user=owner,
            group=owner,
            extra_groups=None if owner is None else [],
        )
        started.append((unshare, 0))
        assert unshare.stdout is not None
        assert unshare.stdout.readline() == b"ready\n", "the target process did not start"
        children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
        assert len(children) == 1
        started[-1] = (unshare, int(children[0]))
        return int(children[0])

    yield spawn
    for unshare, pid in started:
        if pid:
            os.kill(pid, signal.SIGKILL)
        unshare.kill()
        unshare.wait(timeout=10)
        assert unshare.stdout is not None
        unshare.stdout.close()


@pytest.fixture
def target(spawn_target: Any) -> int:
    pid: int = spawn_target()
    return pid


def ns(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def report_script(directory: Path, name: str) -> str:
    """A hook that prints where it runs, one item a line (see ``Seen``)."""
    return script(
        directory,
        name,
        "hostname\n"
        "readlink /proc/self/ns/uts /proc/self/ns/mnt /proc/self/ns/pid /proc/self/ns/user\n"
        "echo $$\n"
        "id -u\n"
        "sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status\n",
    )


class Seen:
    def __init__(self, run: dict[str, Any]) -> None:
        assert run["exit_code"] == 0, run
        lines = run["stdout_tail"].splitlines()
        self.hostname, self.uts, self.mnt, self.pid_ns, self.user = lines[:5]
        self.pid, self.uid, self.caps = int(lines[5]), int(lines[6]), int(lines[7], 16)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for setns")


@pytest.mark.root
@needs_root
def test_create_container_hooks_run_in_the_init_namespaces(tmp_path: Path, target: int) -> None:
    # Under tmp_path/hidden, which the target's mount namespace covers with a
    # tmpfs: config.md says createContainer's path resolves in the runtime's.
    hook = report_script(tmp_path / "hidden", "hook")
    assert ns(target, "uts") != ns("self", "uts")

    runs = runner(lambda: target, create_container=(Hook(hook),)).run("createContainer", STATE)

    seen = Seen(runs[0])
    assert seen.hostname == HOSTNAME != os.uname().nodename
    assert (seen.uts, seen.mnt, seen.pid_ns) == (
        ns(target, "uts"),
        ns(target, "mnt"),
        ns(target, "pid"),
    )
    assert seen.pid < 100  # a pid of the target's pid namespace, where the target is 1
    assert seen.user == ns("self", "user")  # shared with the runtime: not joined


@pytest.mark.root
@needs_root
def test_start_container_hooks_resolve_their_path_in_the_container(
    tmp_path: Path, target: int
) -> None:
    visible = report_script(tmp_path, "visible")
    hidden = report_script(tmp_path / "hidden", "hidden")
    hooks = runner(lambda: target, start_container=(Hook(visible), Hook(hidden)))

    err = failure(hooks, "startContainer")

    assert str(err) == (
        f"startContainer hook {hidden} could not be executed: No such file or directory"
    )
    seen = Seen(err.details["runs"][0])
    assert (seen.hostname, seen.mnt) == (HOSTNAME, ns(target, "mnt"))


@pytest.mark.root
@needs_root
def test_a_timeout_in_the_container_pid_namespace_kills_the_hook(
    tmp_path: Path, target: int
) -> None:
    hook = script(tmp_path, "hook", "sleep 30\n")
    hooks = runner(lambda: target, create_container=(Hook(hook, timeout=1),))

    started = time.monotonic()
    err = failure(hooks, "createContainer")

    assert time.monotonic() - started < 5
    assert err.details["runs"][0]["timed_out"] is True
    # Nothing but the target itself is left running in its pid namespace.
    in_target = [
        entry
        for entry in os.listdir("/proc")
        if entry.isdigit() and entry != str(target) and _in_pid_ns(entry, ns(target, "pid"))
    ]
    assert all(gone(int(pid)) for pid in in_target), in_target


def _in_pid_ns(pid: str, pid_ns: str) -> bool:
    try:
        return ns(pid, "pid") == pid_ns
    except OSError:
        return False


@pytest.mark.root
@needs_root
def test_a_failure_in_the_container_namespaces_reports_the_hook_status(
    tmp_path: Path, target: int
) -> None:
    hook = script(tmp_path, "hook", "echo inside >&2\nkill -USR1 $$\n")

    err = failure(runner(lambda: target, create_container=(Hook(hook),)), "createContainer")

    # The hook's own status, passed up from inside the pid namespace.
    assert str(err) == f"createContainer hook {hook} was killed by signal SIGUSR1 (10): inside"
    assert err.details["runs"][0]["signal"] == signal.SIGUSR1


@pytest.mark.root
@needs_root
def test_a_container_user_namespace_is_joined_as_its_root(
    tmp_path: Path, spawn_target: Any
) -> None:
    # The namespace's root is uid OWNER outside, so the runtime's uid 0 is
    # unmapped there until the child becomes that root.
    target = spawn_target(owner=OWNER)
    hook = report_script(tmp_path, "hook")
    assert ns(target, "user") != ns("self", "user")

    runs = runner(lambda: target, create_container=(Hook(hook),)).run("createContainer", STATE)

    seen = Seen(runs[0])
    assert (seen.hostname, seen.uts, seen.pid_ns, seen.user) == (
        HOSTNAME,
        ns(target, "uts"),
        ns(target, "pid"),
        ns(target, "user"),
    )
    # Root of the namespace, with its capabilities (an unmapped uid would have
    # lost them all at exec).
    assert seen.uid == 0
    assert seen.caps != 0
