"""The witness: what root saw of each event log, kept where the log's owner cannot write.

A log's hash chain has no secret: whoever can write the file (a user owns
their own log) can edit it and compute every hash again, and the chain
verifies. ``runlog witness`` (run by root) reads each log of the node as
it grows and appends every event's id and hash to the log's *record*, a
file of root's (``0640``, the group of the log's owner: its owner may
read it, never write it) in the witness directory (root's, ``0755``; the site
configuration's ``witness``, by default :data:`DEFAULT`). What the witness
saw cannot then be altered undetected: ``runlog audit --verify`` compares
the log with its record and names the first event that differs from what
the witness recorded, was removed, or was put in between.

A record is lines of text, appended::

    # runlog witness record of /var/lib/runlog/alice/events.db
    E 1 5d41...            an event the witness saw: its id and hash
    A 120 9f86...          the log's prune anchor (events to 120 pruned)
    D 1765000000000000000  the log was deleted or replaced, then (ns)

A ``D`` ends one log's life at that path; the next lines are the record of
a new log there. A log may be deleted (a user may delete their own): its
record says so, and what the witness last saw of it. A new log at the
path is a new log: an event in it dated before the old one was deleted is
an old history put back, and named as such.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from engine.errors import RunlogError
from engine.eventlog import chain
from engine.eventlog.schema import CHAINED

__all__ = [
    "DEFAULT",
    "Record",
    "Witness",
    "WitnessCheck",
    "WitnessError",
    "check_log",
    "record_path",
    "witness_dir",
]

#: Where the witness keeps its records unless the site configuration says.
DEFAULT = "/var/lib/runlog/witness"

_CHAINED = ", ".join(f'"{c}"' for c in CHAINED)
_BATCH = 5000


class WitnessError(RunlogError):
    """The witness directory or a record cannot be trusted or used."""


def witness_dir(flag: object = None) -> tuple[str, bool]:
    """The witness directory, and whether it was asked for by name:
    ``--witness``, else ``RUNLOG_WITNESS``, else the site configuration's
    ``witness``, else :data:`DEFAULT`."""
    if isinstance(flag, str) and flag:
        return flag, True
    from engine.settings import environ
    from engine.siteconfig import load

    env = environ()
    if env.get("RUNLOG_WITNESS"):
        return env["RUNLOG_WITNESS"], True
    site = load(env, os.geteuid())
    if site is not None and site[1].get("witness"):
        return site[1]["witness"], True
    return DEFAULT, False


def record_path(directory: str, log: str) -> Path:
    """The record of ``log`` (its resolved path, quoted into one file name)."""
    return Path(directory) / quote(os.path.realpath(log), safe="")


def _trusted(path: Path, what: str) -> None:
    """Refuse a record or directory root does not own, or others may write."""
    st = path.stat()
    if st.st_uid != 0:
        raise WitnessError(
            f"witness {what} {path}: owned by uid {st.st_uid}, not root: not trusted"
        )
    if st.st_mode & 0o022:
        raise WitnessError(
            f"witness {what} {path}: writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
            "not trusted"
        )


# -- the record ---------------------------------------------------------------


@dataclass
class Life:
    """One log's life at a path, as the record holds it."""

    offset: int  # where its lines begin in the record
    events: int = 0
    last_id: int = 0
    last_hash: str = chain.GENESIS
    deleted_ns: int | None = None


@dataclass
class Record:
    """A log's record: each life at the path, the last one possibly ongoing."""

    path: Path
    lives: list[Life] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Record:
        record = cls(path)
        life: Life | None = None
        offset = 0
        with open(path, "rb") as fh:
            for raw in fh:
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n") or raw.startswith(b"#"):
                    continue  # a line being written; the header
                kind, _, rest = raw.decode().strip().partition(" ")
                if life is None or life.deleted_ns is not None:
                    if kind == "D":
                        continue
                    life = Life(start)
                    record.lives.append(life)
                if kind == "D":
                    life.deleted_ns = int(rest)
                    continue
                number, _, digest = rest.partition(" ")
                life.last_id, life.last_hash = int(number), digest
                life.events += kind == "E"
        return record

    @property
    def current(self) -> Life | None:
        """The life the witness is following: the last, unless it ended."""
        if self.lives and self.lives[-1].deleted_ns is None:
            return self.lives[-1]
        return None

    def lines(self, life: Life) -> Iterator[tuple[str, int, str]]:
        """``(kind, id, hash)`` of a life's ``E`` and ``A`` lines, in order."""
        with open(self.path, "rb") as fh:
            fh.seek(life.offset)
            for raw in fh:
                if not raw.endswith(b"\n") or raw.startswith(b"#"):
                    continue
                kind, _, rest = raw.decode().strip().partition(" ")
                if kind == "D":
                    return
                number, _, digest = rest.partition(" ")
                yield kind, int(number), digest


# -- checking a log against its record -----------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """What a log's record says of it: lines to print, and the first
    disagreement, if any (``broken``: its event's position and what)."""

    label: str
    notes: tuple[str, ...]
    broken: chain.Break | None = None

    def line(self) -> str:
        return "".join(f"{self.label}: {note}\n" for note in self.notes)


def _when(ns: int) -> str:
    from engine.audit.times import utc_iso

    return utc_iso(ns)


def check_log(directory: str, log: str) -> WitnessCheck | None:
    """Compare ``log`` with its record in ``directory``; None where the
    witness has no record of it (and the log does not exist either)."""
    label = f"event log {log}"
    path = record_path(directory, log)
    try:
        if not path.exists():
            if not os.path.exists(log):
                return None
            return WitnessCheck(label, (f"not witnessed: no record in {directory}",))
        _trusted(path.parent, "directory")
        _trusted(path, "record")
        record = Record.read(path)
    except (OSError, ValueError) as err:
        raise WitnessError(f"witness record {path}: cannot be read: {err}") from err
    notes: list[str] = []
    for life in record.lives:
        if life.deleted_ns is not None:
            notes.append(
                f"log deleted at {_when(life.deleted_ns)}; last witnessed head event {life.last_id}"
            )
    if not os.path.exists(log):
        if record.current is not None:
            notes.append(f"log deleted; last witnessed head event {record.current.last_id}")
        return WitnessCheck(label, tuple(notes))
    from engine.audit.logdb import open_log

    conn = open_log(log)
    try:
        ended = [life.deleted_ns for life in record.lives if life.deleted_ns is not None]
        broken = _dated(conn, ended[-1]) if ended else None
        current = record.current
        if current is None:
            notes.append("this log is not witnessed yet")
        else:
            agreed, unseen, found = _compare(conn, record, current)
            if found is not None and (broken is None or found.position < broken.position):
                broken = found
            if found is None:
                since = f"; {unseen} event{'s' * (unseen != 1)} since, not yet witnessed"
                notes.append(
                    f"witness {directory}: {agreed} events as witnessed, to event "
                    f"{current.last_id}{since if unseen else ''}"
                )
        if broken is not None:
            notes.append(f"witness {directory}: {broken.problem}")
    finally:
        conn.close()
    return WitnessCheck(label, tuple(notes), broken)


def _dated(conn: sqlite3.Connection, deleted_ns: int) -> chain.Break | None:
    """The first event of a log made after its predecessor was deleted that
    is dated before: an old history put back."""
    row = conn.execute(
        "SELECT id FROM events WHERE time_ns < ? ORDER BY id LIMIT 1", (deleted_ns,)
    ).fetchone()
    if row is None:
        return None
    return chain.Break(
        int(row[0]),
        f"event {row[0]} is dated before the log the witness saw here was deleted "
        f"({_when(deleted_ns)}): an old history put back",
    )


def _compare(
    conn: sqlite3.Connection, record: Record, life: Life
) -> tuple[int, int, chain.Break | None]:
    """Walk the log's events and the life's witnessed ones side by side, in
    id order: how many agree, how many came after the last witnessed one,
    and the first that differs, is missing or was put in between."""
    row = conn.execute(
        "SELECT last_id, hash FROM chain_anchors WHERE node = '' AND log = ''"
    ).fetchone()
    anchor_id, anchor_hash = (0, None) if row is None else (int(row[0]), str(row[1]))
    cursor = conn.execute("SELECT id, hash FROM events WHERE id > ? ORDER BY id", (anchor_id,))
    cursor.arraysize = 4096
    rows = iter(cursor)
    current = next(rows, None)
    agreed = 0
    for kind, wid, digest in record.lines(life):
        if wid <= anchor_id:  # pruned from the log since
            if wid == anchor_id and digest != anchor_hash:
                return (
                    agreed,
                    0,
                    chain.Break(
                        wid,
                        f"the log's prune anchor at event {wid} is not the hash the witness "
                        "recorded (altered after it was witnessed)",
                    ),
                )
            continue
        while current is not None and current[0] < wid:
            return (
                agreed,
                0,
                chain.Break(
                    current[0],
                    f"event {current[0]} was not in the log when the witness read it (inserted)",
                ),
            )
        if kind == "A":
            continue
        if current is None or current[0] > wid:
            return (
                agreed,
                0,
                chain.Break(wid, f"event {wid} was witnessed but is not in the log (removed)"),
            )
        if current[1] != digest:
            return (
                agreed,
                0,
                chain.Break(
                    wid,
                    f"event {wid} is not the event the witness saw: its hash differs "
                    "(altered after it was witnessed)",
                ),
            )
        agreed += 1
        current = next(rows, None)
    unseen = 0 if current is None else 1 + sum(1 for _ in rows)
    return agreed, unseen, None


# -- the witness itself --------------------------------------------------------


@dataclass
class _Following:
    """What the witness holds of one log between looks."""

    open: bool = False  # a life is being recorded
    last_id: int = 0
    last_hash: str = chain.GENESIS
    gone: bool = False  # deleted or replaced since the last look (watchdog)
    stuck: str | None = None  # why it no longer follows the log


def _begun(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        is not None
    )


def _owners_group(log: str) -> int:
    """The primary group of the log's owner (so the owner may read the
    record, whichever group may read the log); else the log's group."""
    import pwd

    try:
        st = os.stat(log)
    except OSError:
        return 0
    try:
        return pwd.getpwuid(st.st_uid).pw_gid
    except KeyError:
        return st.st_gid


class Witness:
    """Records what it sees of logs into ``directory`` (root's)."""

    def __init__(self, directory: str) -> None:
        if os.geteuid() != 0:
            raise WitnessError(
                "runlog witness: must run as root (its records must be what users cannot write)"
            )
        self.directory = directory
        os.makedirs(directory, mode=0o755, exist_ok=True)
        _trusted(Path(directory), "directory")
        self.logs: list[str] = []
        self._state: dict[str, _Following] = {}

    def add(self, log: str) -> bool:
        """Witness ``log`` too from now on; False if it is already."""
        path = os.path.realpath(log)
        if path in self.logs:
            return False
        self.logs.append(path)
        return True

    def removed(self, log: str) -> None:
        """``log`` was deleted or replaced (watchdog): its life ends at the next look."""
        state = self._state.get(os.path.realpath(log))
        if state is not None:
            state.gone = True

    def look_all(self) -> int:
        return sum(self.look(log) for log in self.logs)

    def _following(self, log: str) -> _Following:
        state = self._state.get(log)
        if state is None:
            state = _Following()
            path = record_path(self.directory, log)
            if path.exists():
                _trusted(path, "record")
                life = Record.read(path).current
                if life is not None:
                    state.open, state.last_id, state.last_hash = True, life.last_id, life.last_hash
            self._state[log] = state
        return state

    def look(self, log: str) -> int:
        """Record what is new in ``log``; the number of events witnessed."""
        state = self._following(log)
        there = os.path.isfile(log)
        if state.gone or not there:
            state.gone = False
            if state.open:
                self._append(log, f"D {time.time_ns()}\n")
                self._state[log] = state = _Following()
            if not there:
                return 0
        try:
            conn = sqlite3.connect(f"file:{log}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error:
            return 0
        try:
            if not _begun(conn):
                return 0
            return self._read(conn, log, state)
        except sqlite3.Error as err:
            self._warn(log, state, f"cannot be read: {err}")
            return 0
        finally:
            conn.close()

    def _read(self, conn: sqlite3.Connection, log: str, state: _Following) -> int:
        row = conn.execute(
            "SELECT last_id, hash FROM chain_anchors WHERE node = '' AND log = ''"
        ).fetchone()
        anchor_id, anchor_hash = (0, chain.GENESIS) if row is None else (int(row[0]), str(row[1]))
        lines: list[str] = []
        if not state.open:
            if anchor_id:
                lines.append(f"A {anchor_id} {anchor_hash}\n")
            state.last_id, state.last_hash = anchor_id, anchor_hash
        elif state.last_id:
            head = conn.execute("SELECT hash FROM events WHERE id = ?", (state.last_id,)).fetchone()
            if head is None and anchor_id > state.last_id:
                lines.append(f"A {anchor_id} {anchor_hash}\n")  # pruned past the head
                state.last_id, state.last_hash = anchor_id, anchor_hash
            elif head is None and not (
                anchor_id == state.last_id and anchor_hash == state.last_hash
            ):
                self._warn(log, state, f"event {state.last_id}, witnessed, is gone: altered")
                return 0
            elif head is not None and head[0] != state.last_hash:
                self._warn(log, state, f"event {state.last_id} differs from what it witnessed")
                return 0
        if state.stuck is not None:
            return 0
        seen = 0
        while True:
            rows = conn.execute(
                f"SELECT id, {_CHAINED}, prev_hash, hash FROM events WHERE id > ? ORDER BY id "
                "LIMIT ?",
                (state.last_id, _BATCH),
            ).fetchall()
            if not rows:
                break
            walk = ((r[0], r[1:-2], r[-2], r[-1]) for r in rows)
            count, last, broken = chain.verify_rows(walk, state.last_hash, state.last_id)
            lines += [f"E {r[0]} {r[-1]}\n" for r in rows[:count]]
            if count:
                state.last_id, state.last_hash = int(rows[count - 1][0]), last
            seen += count
            if broken is not None:
                self._warn(log, state, f"hash chain broken at event {broken.position}")
                break
        if lines:
            self._append(log, "".join(lines))
            state.open = True
        return seen

    def _warn(self, log: str, state: _Following, problem: str) -> None:
        if state.stuck != problem:
            sys.stderr.write(
                f"runlog witness: event log {log}: {problem}; not witnessed further "
                "(audit --verify names where)\n"
            )
        state.stuck = problem

    def _append(self, log: str, text: str) -> None:
        """Append whole lines to the log's record, made root's and readable
        by the log's group (its owner's) the first time."""
        path = record_path(self.directory, log)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_size == 0:
                gid = _owners_group(log)
                os.fchown(fd, 0, gid)
                os.fchmod(fd, 0o640)
                text = f"# runlog witness record of {log}\n" + text
            os.write(fd, text.encode())
        finally:
            os.close(fd)
