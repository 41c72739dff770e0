"""The machine a recorded digest names, and the archive that keeps them.

Events record only the sha256 of the machine definition in force. To replay
a history through *that* machine, its text must still be somewhere; the
event log keeps texts by digest in its ``machines`` table, and a fixture
file carries the texts its events need. :class:`MachineCatalog` looks a
digest up, in order:

1. an override (``runlog replay --machine FILE``) answers for every digest;
2. an archived text whose sha256 is the digest;
3. the current machine file (``--machine``/``RUNLOG_MACHINE``/the default)
   if its digest is the one asked for;
4. otherwise the current machine, with a note saying the recorded one is
   not archived - the replay then checks the history against today's
   machine, which is the next best question.

Writing the archive: :func:`remember` stores a definition's text (read back
from its file and checked against its digest). ``runlog replay`` calls it
for the current machine when the log's containers use it, so a log replayed
once can be replayed by digest after ``statemachine.yaml`` changes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.eventlog import sql
from engine.machine.definition import MachineDefinition, digest_of, parse
from engine.replay.table import Stepper, TransitionTable

__all__ = ["MachineCatalog", "archived_in", "machine_text", "remember"]


def machine_text(definition: MachineDefinition) -> str | None:
    """The text of ``definition``'s file, if the file still holds those bytes."""
    try:
        data = Path(definition.path).read_bytes()
    except OSError:
        return None
    if digest_of(data) != definition.digest:
        return None  # changed since it was loaded
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def archived_in(conn: sqlite3.Connection) -> Callable[[str], str | None]:
    """A lookup of archived machine texts in the event log behind ``conn``."""

    def lookup(digest: str) -> str | None:
        row = conn.execute(sql.SELECT_MACHINE, (digest,)).fetchone()
        return None if row is None else str(row[0])

    return lookup


def remember(conn: sqlite3.Connection, definition: MachineDefinition) -> bool:
    """Archive ``definition`` in the event log; True if its text is there now.

    Best effort: a log the caller may not write, or one another process
    holds locked, is left as it is.
    """
    text = machine_text(definition)
    if text is None:
        return False
    row = (definition.digest, text, definition.path, time.time_ns())
    try:
        conn.execute("PRAGMA query_only = OFF")
        try:
            conn.execute(sql.INSERT_MACHINE, row)
        finally:
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.OperationalError:
        return False
    return True


class MachineCatalog:
    """Steppers by recorded digest, each machine compiled once."""

    def __init__(
        self,
        *,
        override: MachineDefinition | None = None,
        archived: Callable[[str], str | None] | Mapping[str, str | None] | None = None,
        current: Callable[[], MachineDefinition] | None = None,
        compile: Callable[[MachineDefinition], Stepper] = TransitionTable.compile,
    ) -> None:
        self.override = override
        if archived is None:
            self._archived: Callable[[str], str | None] = lambda _digest: None
        elif isinstance(archived, Mapping):
            self._archived = archived.get
        else:
            self._archived = archived
        self._current_loader = current
        self._current: MachineDefinition | None = None
        self._compile = compile
        self._by_definition: dict[str, Stepper] = {}
        self._by_digest: dict[str, Stepper] = {}
        #: Recorded digest → what replayed it ("archived", "current", "override", "fallback").
        self.sources: dict[str, str] = {}
        #: One line per digest replayed through a machine other than its own.
        self.notes: list[str] = []

    def current(self) -> MachineDefinition:
        if self._current is None:
            if self._current_loader is None:
                raise LookupError("no current machine to fall back to")
            self._current = self._current_loader()
        return self._current

    def _stepper(self, definition: MachineDefinition) -> Stepper:
        found = self._by_definition.get(definition.digest)
        if found is None:
            found = self._by_definition[definition.digest] = self._compile(definition)
        return found

    def __call__(self, digest: str) -> Stepper:
        found = self._by_digest.get(digest)
        if found is None:
            definition, how = self._resolve(digest)
            found = self._by_digest[digest] = self._stepper(definition)
            self.sources[digest] = how
        return found

    def _resolve(self, digest: str) -> tuple[MachineDefinition, str]:
        if self.override is not None:
            return self.override, "override"
        text = self._archived(digest)
        if text is not None:
            data = text.encode("utf-8")
            if digest_of(data) == digest:
                return parse(data, f"<machine {digest[:12]}, archived>"), "archived"
            self.notes.append(f"the archived text of machine {digest[:12]} has another digest")
        current = self.current()
        if current.digest == digest:
            return current, "current"
        self.notes.append(
            f"machine {digest[:12]} is not archived here; its events were replayed "
            f"through {current.path} (sha256 {current.digest[:12]})"
        )
        return current, "fallback"
