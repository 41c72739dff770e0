"""The audit and replay commands as the CLI declares them, and what importing the CLI costs."""

from __future__ import annotations

import subprocess
import sys

from engine.audit.filters import FILTER_FLAGS
from engine.cli import COMMANDS
from engine.cmdline import parse

HEAVY = ("sqlalchemy", "alembic", "watchdog", "orjson", "yaml", "transitions", "sqlite3")


def test_importing_the_cli_imports_nothing_heavy() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import engine.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert "engine.cli" in modules  # the check looked at the right import


def dests(command: str) -> set[str]:
    return {opt.dest for opt in COMMANDS[command].opts}


def test_audit_takes_every_filter() -> None:
    assert set(FILTER_FLAGS) <= dests("audit")


def test_replay_takes_the_same_filters() -> None:
    assert set(FILTER_FLAGS) <= dests("replay")
    audit = {o.dest: o for o in COMMANDS["audit"].opts}
    for opt in COMMANDS["replay"].opts:
        if opt.dest in FILTER_FLAGS and opt.dest != "until":
            assert (opt.names, opt.repeat) == (audit[opt.dest].names, audit[opt.dest].repeat)


def test_repeatable_filters_collect_every_value() -> None:
    flags, rest = parse(
        COMMANDS["audit"].opts,
        ["--id", "a", "--outcome=rejected", "--id", "b*", "--outcome", "failed"],
        interleave=True,
        where="runlog audit",
    )
    assert rest == []
    assert flags["id"] == ["a", "b*"] and flags["outcome"] == ["rejected", "failed"]
