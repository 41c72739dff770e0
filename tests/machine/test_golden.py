"""The packaged machine, state by trigger: allowed or refused, and where it leads.

A change to statemachine.yaml that allows or refuses something new (say,
``pause`` from ``created``) changes this table, on purpose, in the same
commit - and is seen here without root and without running containers.
"""

from __future__ import annotations

from engine.actions.registry import REGISTRY
from engine.machine.definition import MachineDefinition, default_path, load, parse
from engine.machine.runtime import Lifecycle
from engine.machine.vocabulary import TRIGGERS

DEFINITION = load(default_path())

#: Each state's row: where each trigger leads from it (kill: it stays);
#: ``-``: refused.
GOLDEN_TEXT = """
state    create  start   pause  resume  kill    exit    delete
creating created -       -      -       -       -       -
created  -       running -      -       created stopped -
running  -       -       paused -       running stopped -
paused   -       -       -      running paused  stopped -
stopped  -       -       -      -       -       -       deleted
deleted  -       -       -      -       -       -       -
"""

#: The same for the triggers that leave the state as it is, restore, and
#: started (a start found done once its monitor was gone).
GOLDEN_MORE = """
state    update  checkpoint restore exec    exec_exit started
creating -       -          running -       -         -
created  created -          -       created created   running
running  running running    -       running running   -
paused   paused  paused     -       paused  paused    -
stopped  -       -          -       -       stopped   -
deleted  -       -          -       -       -         -
"""


def _golden() -> dict[str, dict[str, str | None]]:
    table: dict[str, dict[str, str | None]] = {}
    for text in (GOLDEN_TEXT, GOLDEN_MORE):
        header, *rows = (line.split() for line in text.strip().splitlines())
        triggers = header[1:]
        for state, *dests in rows:
            row = table.setdefault(state, {})
            row.update(
                {t: None if to == "-" else to for t, to in zip(triggers, dests, strict=True)}
            )
    return table


GOLDEN = _golden()


def _table(definition: MachineDefinition) -> dict[str, dict[str, str | None]]:
    """The table as the definition and the transitions library both say it."""
    lifecycle = Lifecycle(definition, REGISTRY)
    table: dict[str, dict[str, str | None]] = {}
    for state in definition.states:
        row: dict[str, str | None] = {}
        for trigger in definition.triggers():
            found = definition.find(trigger, state)
            allowed = lifecycle.may(state, trigger)
            assert allowed == (found is not None), (state, trigger)
            row[trigger] = None if found is None else (found.dest or state)
        table[state] = row
    return table


def test_the_packaged_machine_matches_its_golden_table() -> None:
    assert _table(DEFINITION) == GOLDEN


def test_the_golden_table_covers_every_state_and_the_code_s_triggers() -> None:
    assert set(GOLDEN) == set(DEFINITION.states)
    for row in GOLDEN.values():
        assert set(TRIGGERS) <= set(row)


def test_a_changed_machine_does_not_match() -> None:
    # The table catches a one-word change: pause allowed from created.
    text = DEFINITION.text.replace(
        "{trigger: pause, source: running,", "{trigger: pause, source: [created, running],"
    )
    assert text != DEFINITION.text
    changed = _table(parse(text.encode(), "changed.yaml"))
    assert changed["created"]["pause"] == "paused"
    assert changed != GOLDEN
