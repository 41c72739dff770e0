"""``make demo``: a container driven through its whole lifecycle, then its history.

The containers here live in the in-package fake world (no kernel needed):
the machine, the actions, the undo on failure and the event log are the
real ones. One container goes create → start → pause → resume → kill →
exit → delete, with a rejected request on the way; a second one fails its
createRuntime hook and is rolled back. Both histories are then read back
from the SQLite event log.
"""

from __future__ import annotations

import os
import sys

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
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
    opts = (Opt("--db", value=True), Opt("--root", value=True), Opt("--machine", value=True))
    flags, _ = parse(opts, sys.argv[1:] if argv is None else argv, interleave=True, where="demo")
    settings = Settings.from_flags(flags, os.environ)
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
    with open_store(settings.db) as store:
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
