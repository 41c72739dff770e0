"""``runlog machine check|show|graph [FILE]``."""

from __future__ import annotations

import sys

from engine.errors import UsageError
from engine.machine.definition import load, resolve
from engine.machine.render import dot, mermaid, table
from engine.settings import Settings

__all__ = ["main"]


def main(settings: Settings, flags: dict[str, object], args: list[str]) -> int:
    verb = args[0]
    if verb not in ("check", "show", "graph"):
        raise UsageError(f"runlog machine: unknown action {verb!r} (check, show or graph)")
    path = resolve(args[1] if len(args) > 1 else settings.machine, {})
    definition = load(path)  # MachineError names the file, line and key
    if verb == "check":
        sys.stdout.write(
            f"{definition.path}: ok: {len(definition.states)} states, "
            f"{len(definition.transitions)} transitions, sha256 {definition.digest}\n"
        )
    elif verb == "show":
        sys.stdout.write(table(definition) + "\n")
    else:
        draw = dot if flags.get("format") == "dot" else mermaid
        sys.stdout.write(draw(definition) + "\n")
    return 0
