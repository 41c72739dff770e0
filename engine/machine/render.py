"""Drawing a machine definition: a text table, a Mermaid state diagram and
a Graphviz (dot) graph.

Pure functions from a :class:`~engine.machine.definition.MachineDefinition`
to text, without a trailing newline; printing is the caller's business
(``runlog machine show|graph``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.machine.definition import MachineDefinition, TransitionDef

__all__ = ["INTERNAL", "dot", "mermaid", "table"]

# The dest column of an internal transition (dest: null): the state stays.
INTERNAL = "(same)"
NO_ACTIONS = "-"
HEADER = ("TRIGGER", "SOURCE", "DEST", "ACTIONS")
GAP = "  "


def table(defn: MachineDefinition) -> str:
    """One row per transition, in file order, columns aligned like ``runc list``."""
    rows = [HEADER, *(_row(t) for t in defn.transitions)]
    widths = [max(len(row[col]) for row in rows) for col in range(len(HEADER) - 1)]
    # The last column is not padded, so no line ends in spaces.
    return "\n".join(
        GAP.join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def _row(t: TransitionDef) -> tuple[str, str, str, str]:
    actions = ", ".join(a.label() for a in t.actions) or NO_ACTIONS
    return (t.trigger, ", ".join(t.sources), INTERNAL if t.dest is None else t.dest, actions)


def mermaid(defn: MachineDefinition) -> str:
    """A ``stateDiagram-v2``: one edge per (source, dest), labelled with its triggers.

    An internal transition is drawn as a self-loop; terminal states lead to
    ``[*]``.
    """
    lines = ["stateDiagram-v2", f"    [*] --> {defn.initial}"]
    lines += [f"    {s} --> {d} : {', '.join(ts)}" for (s, d), ts in _edges(defn).items()]
    lines += [f"    {s} --> [*]" for s in defn.terminal_states()]
    return "\n".join(lines)


def dot(defn: MachineDefinition) -> str:
    """A Graphviz ``digraph`` with the edges of :func:`mermaid`: the initial
    and terminal states are marked (``dot -Tsvg`` renders it offline)."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "digraph machine {",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    __start [shape=point, label=""];',
        f"    __start -> {quote(defn.initial)};",
    ]
    terminal = set(defn.terminal_states())
    for state in defn.states:
        shape = ", peripheries=2" if state in terminal else ""
        lines.append(f"    {quote(state)} [label={quote(state)}{shape}];")
    lines += [
        f"    {quote(s)} -> {quote(d)} [label={quote(', '.join(ts))}];"
        for (s, d), ts in _edges(defn).items()
    ]
    lines.append("}")
    return "\n".join(lines)


def _edges(defn: MachineDefinition) -> dict[tuple[str, str], list[str]]:
    """Triggers by (source, dest), in file order.

    A trigger appears once per pair: the definition refuses a second
    transition with the same trigger and source.
    """
    edges: dict[tuple[str, str], list[str]] = {}
    for t in defn.transitions:
        for source in t.sources:
            dest = source if t.dest is None else t.dest
            edges.setdefault((source, dest), []).append(t.trigger)
    return edges
