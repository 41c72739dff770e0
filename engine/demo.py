"""``make demo``: a container driven through its whole lifecycle, then its history.

As root with a static busybox (the Makefile installs it), a real container:
a busybox bundle goes through runlog's CLI - create, start, pause (and a
second, rejected pause), resume, kill, its exit, delete - and a second
bundle whose ``args[0]`` does not exist fails to create and leaves nothing.
Both histories are then printed from the SQLite event log.

With ``--fake`` (or without root), the same story in the in-package fake
world: the machine, the actions, the undo and the log are the real ones;
the process, hook and cgroup drivers are in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.bundles import BUSYBOX, keep_default_cgroup_parent, make_busybox_bundle
from engine.cmdline import Opt, parse
from engine.commands import history
from engine.errors import RunlogError
from engine.eventlog import open_store
from engine.machine.definition import load, resolve
from engine.machine.render import table
from engine.machine.runtime import Lifecycle
from engine.service import Service
from engine.settings import Settings
from engine.status import Actor

__all__ = ["main"]

STEPS: list[tuple[str, str, dict[str, object]]] = [
    ("demo-1", "create", {}),
    ("demo-1", "start", {}),
    ("demo-1", "pause", {}),
    ("demo-1", "pause", {}),  # rejected: already paused
    ("demo-1", "resume", {}),
    ("demo-1", "kill", {"signal": 15}),
    ("demo-1", "delete", {}),  # refresh records the exit first
    ("demo-2", "create", {}),  # its createRuntime hook fails: rolled back
    ("demo-2", "start", {}),  # rejected: it does not exist
]


def main(argv: list[str] | None = None) -> int:
    opts = (
        Opt("--db", value=True),
        Opt("--root", value=True),
        Opt("--machine", value=True),
        Opt("--fake"),
    )
    flags, _ = parse(opts, sys.argv[1:] if argv is None else argv, interleave=True, where="demo")
    settings = Settings.from_flags(flags, os.environ)
    if not flags["fake"] and os.geteuid() == 0 and os.path.exists(BUSYBOX):
        # The containers take runlog's default cgroup parent, /runlog: it
        # goes again afterwards if the demo made it.
        with keep_default_cgroup_parent():
            return real(settings)
    if not flags["fake"]:
        print("(not root, or no /bin/busybox: showing the fake-world demo)\n")
    return fake(settings)


def _runlog(settings: Settings, *args: str, keep: str | None = None) -> int:
    """Run one runlog command as a user would, echoing it and its output.

    ``keep``: a file for the output instead, as a created container keeps
    create's stdout and writes its own output there.
    """
    print(f"$ runlog {' '.join(args)}", flush=True)
    cmd = [sys.executable, "-m", "engine", "--root", settings.root, "--db", settings.db]
    with open(keep, "w+b") if keep else tempfile.TemporaryFile() as out:
        code = subprocess.run([*cmd, *args], stdout=out, stderr=out, check=False).returncode
        out.seek(0)
        text = out.read().decode(errors="replace")
    for line in text.rstrip("\n").splitlines():
        print(f"  {line}")
    if code:
        print(f"  (exit status {code})")
    return code


def _status(settings: Settings, cid: str) -> str:
    path = os.path.join(settings.root, cid, "state.json")
    try:
        with open(path) as fh:
            return str(json.load(fh)["status"])
    except (OSError, ValueError, KeyError):
        return "gone"


def real(settings: Settings) -> int:
    base = os.path.dirname(os.path.abspath(settings.db))
    good = make_busybox_bundle(
        os.path.join(base, "bundle"),
        [
            "sh",
            "-c",
            "trap 'echo demo-1: got TERM, exiting 3; exit 3' TERM; "
            "echo demo-1: hello from $(hostname), pid $$; while true; do sleep 0.1; done",
        ],
    )
    bad = make_busybox_bundle(os.path.join(base, "bad-bundle"), ["no-such-program"])
    output = os.path.join(base, "demo-1.out")
    _runlog(settings, "create", "demo-1", "--bundle", good, keep=output)
    _runlog(settings, "state", "demo-1")
    _runlog(settings, "start", "demo-1")
    time.sleep(0.3)
    _runlog(settings, "pause", "demo-1")
    with open(os.path.join(settings.root, "demo-1", "state.json")) as fh:
        pid = json.load(fh)["pid"]
    with open(f"/proc/{pid}/status") as fh:
        proc_state = next(line for line in fh if line.startswith("State:")).split(None, 1)[1]
    print(f"  (the init, pid {pid}, is now {proc_state.strip()} in /proc)")
    _runlog(settings, "pause", "demo-1")
    _runlog(settings, "resume", "demo-1")
    _runlog(settings, "kill", "demo-1", "TERM")
    deadline = time.monotonic() + 10
    while _status(settings, "demo-1") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    _runlog(settings, "state", "demo-1")
    with open(output) as fh:
        print("  (what the container wrote to the stdout it got from create:)")
        for line in fh:
            print(f"  | {line.rstrip()}")
    _runlog(settings, "delete", "demo-1")
    _runlog(settings, "create", "demo-2", "--bundle", bad)
    _runlog(settings, "list")
    for cid in ("demo-1", "demo-2"):
        print()
        _runlog(settings, "history", cid)
    print(f"\nevent log: {settings.db}")
    return 0


def fake(settings: Settings) -> int:
    definition = load(resolve(settings.machine, {}))
    print(f"machine {definition.path} (sha256 {definition.digest[:12]}…)\n")
    print(table(definition) + "\n")

    world = FakeWorld(
        hooks={
            "createRuntime": [FakeHook("/usr/libexec/net-setup")],
            "poststop": [FakeHook("/usr/libexec/net-teardown")],
        }
    )
    actor = Actor.current()
    with open_store(settings.db, group=settings.log_group) as store:
        service = Service(store, Lifecycle(definition, REGISTRY), world.drivers)
        for cid, trigger, args in STEPS:
            if cid == "demo-2" and trigger == "create":
                world.hooks["createRuntime"].append(
                    FakeHook("/usr/libexec/quota-check", 3, "quota exceeded for /scratch")
                )
            if trigger == "kill":
                print(f"$ runlog kill {cid} TERM")
            else:
                print(f"$ runlog {trigger} {cid}")
            try:
                event = service.request(cid, trigger, actor, args)
            except RunlogError as err:
                print(f"  error: {err}")
            else:
                print(f"  ok: {event.source or '-'} → {event.dest} (seq {event.seq})")
    for cid in ("demo-1", "demo-2"):
        print(f"\n$ runlog history {cid}")
        history.main(settings, {"format": "table"}, [cid])
    print(f"\nevent log: {settings.db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
