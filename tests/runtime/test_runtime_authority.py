"""The machine is the one authority: every change of a real container's
state is its transition, with its actions - also where the monitor is gone
- and every history these paths record replays clean (`replay --all`)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.runtime.conftest import REPO

Bundle = Callable[..., Path]


def history(db: Path, cid: str) -> list[tuple[str, str | None, str | None, str]]:
    """(trigger, source, dest, outcome) of every event, queries included."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT "trigger", source, dest, outcome FROM events '
            "WHERE container_id = ? ORDER BY seq",
            (cid,),
        )
        return [(str(t), s, d, str(o)) for t, s, d, o in rows]


def payloads(db: Path, cid: str, trigger: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            'SELECT payload FROM events WHERE container_id = ? AND "trigger" = ? ORDER BY seq',
            (cid, trigger),
        )
        return [json.loads(p) for (p,) in rows]


def replays_clean(runlog: Any) -> None:
    out = runlog("replay", "--all")
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 diverge" in out.stdout


def kill_monitor(runlog: Any, cid: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((runlog.root / cid / "runtime.json").read_text())
    os.kill(info["monitor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{info['monitor_pid']}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{info['monitor_pid']}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.02)
    return info


def test_poststop_hooks_run_when_a_container_without_monitor_is_deleted(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path
) -> None:
    seen = tmp_path / "poststop.json"
    hook = shell_hook("poststop.sh", f"cat > {seen}\n", "poststop")
    runlog("run", "-d", "t-orphan", "-b", str(bundle(["sleep", "30"], hook)), check=True)
    kill_monitor(runlog, "t-orphan")
    assert runlog.state("t-orphan")["status"] == "running"
    refused = runlog("pause", "t-orphan")
    assert refused.returncode == 1 and "monitor is gone" in refused.stderr
    runlog("delete", "--force", "t-orphan", check=True)
    # runtime-spec: poststop hooks get the state, status stopped.
    state = json.loads(seen.read_text())
    assert (state["id"], state["status"]) == ("t-orphan", "stopped")
    changes = [e for e in history(runlog.db, "t-orphan") if e[0] != "state"]
    assert changes == [
        ("create", None, "created", "ok"),
        ("start", "created", "running", "ok"),
        ("pause", "running", None, "rejected"),
        ("kill", "running", "running", "ok"),
        ("exit", "running", "stopped", "ok"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    (delete,) = payloads(runlog.db, "t-orphan", "delete")
    assert [a["action"] for a in delete["actions"]] == [
        "cgroup.destroy",
        "hook(poststop, warn)",
        "state.remove",
    ]
    assert not (runlog.root / "t-orphan").exists()
    replays_clean(runlog)


def test_delete_without_force_of_a_running_orphan_is_refused_in_its_state(
    runlog: Any, bundle: Bundle
) -> None:
    runlog("run", "-d", "t-orph2", "-b", str(bundle(["sleep", "30"])), check=True)
    kill_monitor(runlog, "t-orph2")
    out = runlog("delete", "t-orph2")
    assert out.returncode == 1
    assert "cannot delete container t-orph2 that is not stopped: running" in out.stderr
    assert history(runlog.db, "t-orph2")[-1] == ("delete", "running", None, "rejected")
    runlog("delete", "--force", "t-orph2", check=True)
    replays_clean(runlog)


def test_an_orphan_whose_init_ended_records_exit_through_the_machine(
    runlog: Any, bundle: Bundle
) -> None:
    runlog("create", "t-orph3", "-b", str(bundle(["sleep", "30"])), check=True)
    kill_monitor(runlog, "t-orph3")
    # The created init waited for its monitor; it is gone with it.
    refused = runlog("start", "t-orph3")
    assert refused.returncode == 1
    assert runlog.state("t-orph3")["status"] == "stopped"
    runlog("delete", "t-orph3", check=True)
    changes = [e for e in history(runlog.db, "t-orph3") if e[0] != "state"]
    assert changes == [
        ("create", None, "created", "ok"),
        ("exit", "created", "stopped", "ok"),
        ("start", "stopped", None, "rejected"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    (exit_event,) = payloads(runlog.db, "t-orph3", "exit")
    assert exit_event["actions"][0]["action"] == "process.collect_status"
    replays_clean(runlog)


def _running(word: bytes) -> bool:
    """Whether a process has ``word`` in its command line."""
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if word in path.read_bytes():
                return True
        except OSError:
            continue  # ended meanwhile
    return False


def _killed_in_poststart(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path, cid: str
) -> tuple[dict[str, Any], Path]:
    """``cid`` created with a poststart hook that holds its start, started,
    and its monitor SIGKILLed while the hook runs (the init has exec'd the
    user's process; the start's event is not written). runtime.json, and
    the file the hook touches once it ends."""
    mark, done = tmp_path / "in-poststart", tmp_path / "hook-done"
    edit = shell_hook("slow", f"touch {mark}; sleep 2; touch {done}\n", "poststart")
    runlog("create", cid, "-b", str(bundle(["sleep", "30"], edit)), check=True)
    starter = subprocess.Popen(
        [sys.executable, "-m", "engine", "--root", str(runlog.root), "--db", str(runlog.db),
         "start", cid],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not mark.exists():
        assert time.monotonic() < deadline, "the poststart hook never ran"
        time.sleep(0.02)
    info = kill_monitor(runlog, cid)
    starter.kill()
    starter.communicate()
    return info, done


def _hook_ends(tmp_path: Path, done: Path) -> None:
    """The hook outlives the monitor killed under it, as under runc's kill."""
    deadline = time.monotonic() + 20
    while not done.exists() or _running(f"{tmp_path}/slow".encode()):
        assert time.monotonic() < deadline, "the poststart hook never ended"
        time.sleep(0.05)


def test_a_start_whose_monitor_died_after_the_release_is_found_and_recorded(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path
) -> None:
    """The monitor killed while a poststart hook runs: the init has exec'd
    the user's process, and the start's event was never written. The next
    command finds it running and records the machine's ``started`` (as
    runc, which reads its status from the process, says running)."""
    _info, done = _killed_in_poststart(runlog, bundle, shell_hook, tmp_path, "t-lost")
    doc = runlog.state("t-lost")
    assert doc["status"] == "running", doc
    runlog("kill", "t-lost", "KILL", check=True)
    assert runlog.wait_status("t-lost", "stopped")["status"] == "stopped"
    runlog("delete", "t-lost", check=True)
    changes = [e for e in history(runlog.db, "t-lost") if e[0] != "state"]
    assert changes == [
        ("create", None, "created", "ok"),
        ("started", "created", "running", "ok"),
        ("kill", "running", "running", "ok"),
        ("exit", "running", "stopped", "ok"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    (found,) = payloads(runlog.db, "t-lost", "started")
    assert found["actions"][0]["action"] == "process.confirm_exec", found
    assert found["actions"][0]["result"] == {"pid": doc["pid"]}, found
    replays_clean(runlog)
    _hook_ends(tmp_path, done)


def test_a_start_whose_monitor_and_init_died_after_the_release_is_recorded(
    runlog: Any, bundle: Bundle, shell_hook: Any, tmp_path: Path
) -> None:
    """The monitor and the init both SIGKILLed while a poststart hook runs
    (what Slurm's kill of a step's processes does to a container with no
    cgroup of its own): the program ran, though nothing of it is left to
    see. The monitor's sign of the release says so: the log has the start
    (``started``) before the exit, not an exit straight from ``created``."""
    info, done = _killed_in_poststart(runlog, bundle, shell_hook, tmp_path, "t-gone")
    os.kill(info["init_pid"], signal.SIGKILL)
    assert runlog.wait_status("t-gone", "stopped")["status"] == "stopped"
    runlog("delete", "t-gone", check=True)
    changes = [e for e in history(runlog.db, "t-gone") if e[0] != "state"]
    assert changes == [
        ("create", None, "created", "ok"),
        ("started", "created", "running", "ok"),
        ("exit", "running", "stopped", "ok"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    (found,) = payloads(runlog.db, "t-gone", "started")
    assert found["actions"][0]["result"] == {"pid": info["init_pid"]}, found
    replays_clean(runlog)
    _hook_ends(tmp_path, done)


def test_refusals_record_the_state_and_replay_clean(runlog: Any, bundle: Bundle) -> None:
    b = str(bundle(["sleep", "30"]))
    runlog("create", "t-dup", "-b", b, check=True)
    again = runlog("create", "t-dup", "-b", b)
    assert again.returncode == 1 and "exists" in again.stderr
    assert history(runlog.db, "t-dup")[-1] == ("create", "created", None, "rejected")
    assert runlog("start", "t-none").returncode == 1
    assert runlog("delete", "t-none").returncode == 1
    assert [e[1] for e in history(runlog.db, "t-none")] == [None, None]
    runlog("delete", "--force", "t-dup", check=True)
    replays_clean(runlog)


def test_churn_replays_clean(runlog: Any, bundle: Bundle) -> None:
    quick = str(bundle(["true"]))
    slow = str(bundle(["sleep", "30"]))
    for n in range(4):
        cid = f"t-churn{n}"
        runlog("create", cid, "-b", quick if n % 2 else slow, check=True)
        runlog("create", cid, "-b", quick)  # refused: exists
        runlog("start", cid, check=True)
        runlog("start", cid)  # refused: running or stopped
        if n % 2 == 0:
            runlog("pause", cid, check=True)
            runlog("pause", cid)  # refused: paused
            runlog("resume", cid, check=True)
            runlog("kill", cid, "KILL", check=True)
        runlog("delete", "--force", cid, check=True)
        runlog("delete", cid)  # refused: gone
    replays_clean(runlog)


def test_a_freezer_changed_by_hand_without_monitor_is_the_machine_s_pause(
    runlog: Any, bundle: Bundle
) -> None:
    from engine.cgroups import manager_at

    runlog("run", "-d", "t-frozen", "-b", str(bundle(["sleep", "30"])), check=True)
    info = kill_monitor(runlog, "t-frozen")
    manager = manager_at(info["cgroup_paths"])
    manager.freeze()
    assert runlog.state("t-frozen")["status"] == "paused"
    manager.thaw()
    assert runlog.state("t-frozen")["status"] == "running"
    runlog("delete", "--force", "t-frozen", check=True)
    changes = [e for e in history(runlog.db, "t-frozen") if e[0] != "state"]
    assert changes[2:4] == [
        ("pause", "running", "paused", "ok"),
        ("resume", "paused", "running", "ok"),
    ]
    replays_clean(runlog)


def test_concurrent_refusals_and_transitions_replay_clean(runlog: Any, bundle: Bundle) -> None:
    # While one caller drives containers through their lives, another keeps
    # asking for a duplicate create and a pause (refused, or not): the
    # CLI's refusals and the monitor's events interleave in the log.
    import threading

    # A bundle, and so a cgroup, each: runc's rule, one cgroup per container.
    bundles = {f"t-race{n}": str(bundle(["sleep", "30"])) for n in range(3)}
    ids = list(bundles)
    done = threading.Event()

    def pester() -> None:
        while not done.is_set():
            for cid in ids:
                runlog("create", cid, "-b", bundles[cid])
                runlog("pause", cid)

    for cid in ids:
        runlog("create", cid, "-b", bundles[cid], check=True)
    other = threading.Thread(target=pester)
    other.start()
    try:
        for cid in ids:
            runlog("start", cid, check=True)
            runlog("kill", cid, "KILL", check=True)
            runlog("delete", "--force", cid, check=True)
    finally:
        done.set()
        other.join(timeout=60)
    for cid in ids:
        runlog("delete", "--force", cid)  # the pester's create, after the delete
    replays_clean(runlog)


def test_a_live_monitor_that_does_not_answer_is_never_reconciled_around(
    runlog: Any, bundle: Bundle
) -> None:
    """A monitor that runs but cannot be reached (its socket not up yet in
    a create under way, or gone in a delete under way; here moved aside)
    keeps the container: ``state`` answers from its state.json, a command
    is refused after asking again a while, and nothing is recorded in its
    place - no external pause or exit while it lives."""
    runlog("run", "-d", "t-live", "-b", str(bundle(["sleep", "30"])), check=True)
    sock = runlog.root / "t-live" / "control.sock"
    aside = runlog.root / "t-live" / "control.sock.aside"
    before = history(runlog.db, "t-live")
    sock.rename(aside)
    try:
        assert runlog.state("t-live")["status"] == "running"
        started = time.monotonic()
        out = runlog("pause", "t-live")
        assert out.returncode == 1
        assert "its monitor runs but does not answer" in out.stderr
        assert time.monotonic() - started >= 4  # asked again meanwhile
        assert history(runlog.db, "t-live") == before  # nothing in its place
    finally:
        aside.rename(sock)
    runlog("pause", "t-live", check=True)
    runlog("resume", "t-live", check=True)
    # delete --force takes what is there: a monitor that does not answer
    # is killed, and the machine's kill, exit and delete run without it.
    sock.rename(aside)
    info = json.loads((runlog.root / "t-live" / "runtime.json").read_text())
    runlog("delete", "--force", "t-live", check=True)
    assert not (runlog.root / "t-live").exists()
    stat = Path(f"/proc/{info['monitor_pid']}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    changes = [e[0] for e in history(runlog.db, "t-live") if e[0] != "state"]
    assert changes[-3:] == ["kill", "exit", "delete"]
    replays_clean(runlog)


def test_kill_reaches_a_container_whose_monitor_is_gone(runlog: Any, bundle: Bundle) -> None:
    """As runc's kill after its `run` was killed (Slurm's proctrack/cgroup
    kills a step's monitor): the init signalled, the kill recorded, its end
    found by the next state; a second kill is runc's "not running"."""
    runlog("run", "-d", "t-orph3", "-b", str(bundle(["sleep", "30"])), check=True)
    info = kill_monitor(runlog, "t-orph3")
    runlog("kill", "-a", "t-orph3", "KILL", check=True)
    deadline = time.monotonic() + 5
    while runlog.state("t-orph3")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runlog.state("t-orph3")["status"] == "stopped"
    assert not Path(f"/proc/{info['init_pid']}/cmdline").exists() or (
        Path(f"/proc/{info['init_pid']}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    )
    again = runlog("kill", "t-orph3")
    assert again.returncode == 1 and "container not running" in again.stderr
    runlog("delete", "t-orph3", check=True)
    changes = [e for e in history(runlog.db, "t-orph3") if e[0] != "state"]
    assert changes == [
        ("create", None, "created", "ok"),
        ("start", "created", "running", "ok"),
        ("kill", "running", "running", "ok"),
        ("exit", "running", "stopped", "ok"),
        ("kill", "stopped", None, "rejected"),
        ("delete", "stopped", "deleted", "ok"),
    ]
    (kill, _again) = payloads(runlog.db, "t-orph3", "kill")
    assert kill["actions"][0]["result"]["pids"] == [info["init_pid"]]
    replays_clean(runlog)
