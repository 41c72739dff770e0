"""``runlog witness``: record every node log's event hashes where users cannot write.

The logs: ``--log PATH`` (repeatable), or the node's own, as ``runlog ship``
finds them (root's and every user's the site configuration names). Each
event's id and hash goes to the log's record in the witness directory
(``--witness``, ``RUNLOG_WITNESS``, the site configuration's ``witness``,
or ``/var/lib/runlog/witness``): engine.audit.witness. Once: record what is
new, say how much, exit. ``--follow``: keep recording as events are
recorded (watchdog wakes it; no polling), and note a log deleted or
replaced. Run by root; it only reads the logs.
"""

from __future__ import annotations

import sys

from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    from engine.audit.witness import Witness, witness_dir
    from engine.commands.ship import follow, node_logs

    directory, _ = witness_dir(flags.get("witness"))
    witness = Witness(directory)
    given = flags.get("log")
    named = [str(p) for p in given] if isinstance(given, list) else []
    for log in named or node_logs(settings):
        witness.add(log)
    if not flags.get("follow"):
        seen = witness.look_all()
        sys.stdout.write(
            f"witnessed {seen} new events of {len(witness.logs)} logs in {directory}\n"
        )
        return 0
    total = [0]

    def once() -> None:
        total[0] += witness.look_all()

    def stop() -> None:
        sys.stdout.write(f"witnessed {total[0]} events in {directory}\n")

    return follow(
        witness.logs,
        witness.add,
        once,
        None if named else lambda: node_logs(settings, quiet=True),
        stop,
        removed=witness.removed,
        who="witness",
    )
