"""Loading and validating a machine definition (``statemachine.yaml``).

This module owns the file format and turns a file into frozen, checked data;
it does not build a ``transitions`` machine. The format, version 1::

    version: 1                      # required, the integer 1
    states: [creating, created]     # required, names from engine.status.STATUSES
    initial: creating               # required, one of states
    transitions:                    # required, a list (may be empty)
      - trigger: create             # an ASCII identifier, not a transitions method name
        source: creating            # a state or a non-empty list of states
        dest: created               # a state, or null: internal, the state is unchanged
        description: optional text
        actions:                    # optional, run in order
          - cgroup.create           # an action without required parameters
          - hook: {point: prestart} # an action with parameters (defaults filled in)

Every error is a :class:`~engine.errors.MachineError` naming the file, the
1-based line and the key, written as a path from the top of the file:
``transitions[2].actions[0].hook.point`` (list indices count from 0).
Lines come from the composed YAML nodes rather than ``yaml.safe_load``, which
forgets where values were (:mod:`engine.machine.reader`, which alone
imports YAML). This module holds the checked data, where the machine file
is (:func:`resolve`), and :func:`load`, which keeps each definition that
validated in a cache by digest.
"""

from __future__ import annotations

import os
from types import MappingProxyType

import engine
from engine.errors import MachineError
from engine.frozen import field, record
from engine.machine.vocabulary import require

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from hashlib import sha256
    from typing import Any

else:  # hashlib's OpenSSL backend costs 2 ms to import; the digest is the same
    from _sha256 import sha256

__all__ = [
    "ActionRef",
    "MachineDefinition",
    "TransitionDef",
    "default_path",
    "digest_of",
    "load",
    "parse",
    "resolve",
]

ENV_VAR = "RUNLOG_MACHINE"


@record
class ActionRef:
    """One action of a transition, as named in the file."""

    name: str
    # Left out of the hash: a mapping proxy is not hashable.
    params: Mapping[str, object] = field(hash=False)
    line: int

    def label(self) -> str:
        """``cgroup.create`` or ``hook(prestart, abort)``, for tables and events."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(str(v) for v in self.params.values())})"


@record
class TransitionDef:
    """One transition: ``trigger`` from any of ``sources`` to ``dest``."""

    trigger: str
    sources: tuple[str, ...]
    dest: str | None  # None: internal, the state does not change (e.g. kill)
    actions: tuple[ActionRef, ...]
    line: int
    description: str | None = None


@record
class MachineDefinition:
    """A validated machine file and the sha256 of its bytes."""

    path: str
    digest: str
    version: int
    states: tuple[str, ...]
    initial: str
    transitions: tuple[TransitionDef, ...]
    #: The file's text, so the event log can archive the machine by digest
    #: and a replay can find it after the file changed.
    text: str = field(default="", repr=False, compare=False)

    def triggers(self) -> tuple[str, ...]:
        """Every trigger, in file order, once."""
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def find(self, trigger: str, state: str) -> TransitionDef | None:
        """The transition ``trigger`` takes from ``state``, if any."""
        for t in self.transitions:
            if t.trigger == trigger and state in t.sources:
                return t
        return None

    def allowed(self, state: str) -> tuple[str, ...]:
        """The triggers allowed in ``state``, in file order."""
        return tuple(dict.fromkeys(t.trigger for t in self.transitions if state in t.sources))

    def terminal_states(self) -> tuple[str, ...]:
        """States no transition leaves (``deleted``)."""
        left = {s for t in self.transitions for s in t.sources}
        return tuple(s for s in self.states if s not in left)


def default_path() -> str:
    """The machine shipped with runlog.

    A wheel carries it inside the package (pyproject's force-include); a
    source checkout has it at the repository root. A ``str``, not a
    ``pathlib.Path``: pathlib costs ``runlog create`` about 3 ms to import.
    """
    package = os.path.dirname(engine.__file__)
    inside = os.path.join(package, "statemachine.yaml")
    if os.path.exists(inside):
        return inside
    return os.path.join(os.path.dirname(package), "statemachine.yaml")


def resolve(explicit: str | None, env: Mapping[str, str]) -> str:
    """The machine file to use: ``--machine``, then ``$RUNLOG_MACHINE``, then the default.

    An empty value counts as unset, as the shell's ``VAR= runlog ...`` means.
    """
    if explicit:
        return explicit
    if env.get(ENV_VAR):
        return env[ENV_VAR]
    return default_path()


def load(path: str | os.PathLike[str], *, cache: str | None = None) -> MachineDefinition:
    """Read and validate the machine file at ``path``, to be run: it must
    have the triggers and states runlog's code relies on
    (:func:`engine.machine.vocabulary.require`).

    With ``cache`` (a directory), a definition that validated once is kept
    there under the sha256 of the file's bytes, so the next load of the same
    bytes skips YAML (whose import and parse cost ~13 ms of every create).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise MachineError(name, None, None, f"cannot read: {err.strerror or err}") from err
    if cache is None:
        definition = parse(data, name)
        require(definition)
        return definition
    digest = digest_of(data)
    cached = _cache_read(cache, digest, name, data)
    if cached is not None:
        return cached
    definition = parse(data, name)
    require(definition)
    _cache_write(cache, definition)
    return definition


# Bump when the cached layout changes, or what a cached definition has
# passed: old entries are then ignored.
_CACHE_LAYOUT = 2


def _cache_read(cache: str, digest: str, name: str, data: bytes) -> MachineDefinition | None:
    import marshal

    try:
        with open(os.path.join(cache, f"{digest}.marshal"), "rb") as fh:
            layout, *plain = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if layout != _CACHE_LAYOUT:
        return None
    return _from_plain(name, digest, plain, data)


def _from_plain(name: str, digest: str, plain: Any, data: bytes) -> MachineDefinition:
    """The records, from the reader's (and the cache's) plain layout."""
    version, states, initial, transitions = plain
    return MachineDefinition(
        name,
        digest,
        version,
        tuple(states),
        initial,
        tuple(
            TransitionDef(
                trigger,
                tuple(sources),
                dest,
                tuple(
                    ActionRef(an, MappingProxyType(dict(params)), aline)
                    for an, params, aline in actions
                ),
                line,
                description,
            )
            for trigger, sources, dest, actions, line, description in transitions
        ),
        data.decode("utf-8"),
    )


def _cache_write(cache: str, d: MachineDefinition) -> None:
    import marshal

    plain = (
        _CACHE_LAYOUT,
        d.version,
        d.states,
        d.initial,
        tuple(
            (
                t.trigger,
                t.sources,
                t.dest,
                tuple((a.name, dict(a.params), a.line) for a in t.actions),
                t.line,
                t.description,
            )
            for t in d.transitions
        ),
    )
    path = os.path.join(cache, f"{d.digest}.marshal")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        _private_dirs(cache)
        with open(tmp, "wb") as fh:
            marshal.dump(plain, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _private_dirs(path: str) -> None:
    """``os.makedirs`` with every directory it makes 0700 (the cache sits
    beside the event log, whose directory must be as private)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def digest_of(data: bytes) -> str:
    """The digest that names a machine: the sha256 of its file's bytes, as
    every event's ``machine_digest`` and the log's ``machines`` table hold it."""
    return sha256(data).hexdigest()


def parse(data: bytes, path: str) -> MachineDefinition:
    """Validate ``data``, the bytes of the machine file ``path`` (used in
    errors): :mod:`engine.machine.reader`, which imports YAML."""
    from engine.machine.reader import read

    return _from_plain(path, digest_of(data), read(data, path), data)
