"""Reading a machine file: YAML to checked plain data.

The format is :mod:`engine.machine.definition`'s, which turns what
:func:`read` returns - the layout its cache keeps - into its records (this
module does not import it: the definition imports the reader). Every error is a
:class:`~engine.errors.MachineError` naming the file, the 1-based line and
the key, written as a path from the top of the file
(``transitions[2].actions[0].hook.point``); lines come from the composed
YAML nodes rather than ``yaml.safe_load``, which forgets where values were.
Only a definition that is not in the cache is read here, so YAML is
imported here alone.
"""

from __future__ import annotations

import keyword
from types import MappingProxyType

from engine.actions.catalog import ACTIONS, ActionSignature, Param
from engine.errors import MachineError
from engine.status import STATUSES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from yaml.error import MarkedYAMLError
    from yaml.nodes import Node

    #: engine.machine.definition.ActionRef's fields: name, params, line.
    PlainAction = tuple[str, Mapping[str, object], int]
    #: TransitionDef's: trigger, sources, dest, actions, line, description.
    PlainTransition = tuple[
        str, tuple[str, ...], str | None, tuple[PlainAction, ...], int, str | None
    ]
    #: MachineDefinition's: version, states, initial, transitions.
    Plain = tuple[int, tuple[str, ...], str, tuple[PlainTransition, ...]]

__all__ = ["SUPPORTED_VERSION", "read"]

SUPPORTED_VERSION = 1

_TOP_REQUIRED = ("version", "states", "initial", "transitions")
_TOP_LIST = ", ".join(_TOP_REQUIRED)
_TRANSITION_REQUIRED = ("trigger", "source", "dest")
_TRANSITION_OPTIONAL = ("actions", "description")

# The transitions library binds these names on the model; a trigger named
# like one would shadow it or be shadowed (transitions/core.py,
# Machine._checked_assignment). `_` guards the model's private attributes.
_RESERVED_TRIGGERS = ("trigger", "state")
_RESERVED_PREFIXES = ("to_", "may_", "is_", "_")

_TAG = "tag:yaml.org,2002:"
_IMPLICIT_SCALARS = tuple(_TAG + t for t in ("bool", "int", "float", "null"))
_KINDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "seq": "a list",
    "map": "a mapping",
}


def read(data: bytes, path: str) -> Plain:
    """Validate ``data``, the bytes of the machine file ``path`` (used in errors)."""
    root = _compose(data, path)
    reader = _Reader(path, data.decode("utf-8"))  # _compose refused non-UTF-8
    reader.check_unique_keys(root, "")
    return reader.machine(root)


def _compose(data: bytes, path: str) -> Node:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(data, Loader=loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        raise MachineError(path, line, None, f"not valid YAML: {_problem(err)}") from err
    except yaml.reader.ReaderError as err:  # bad encoding: an offset, no line
        problem = f"not valid YAML: {err.reason} at offset {err.position}"
        raise MachineError(path, None, None, problem) from err
    if root is None:
        raise MachineError(path, 1, None, "empty file; expected a mapping with " + _TOP_LIST)
    return root


def _problem(err: MarkedYAMLError) -> str:
    # str(err) repeats the marks, naming the stream "<byte string>".
    return ", ".join(p for p in (err.context, err.problem) if p) or type(err).__name__


def _join(parent: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _kind(node: Node) -> str:
    return _KINDS.get(node.tag.removeprefix(_TAG), f"a {_short(node.tag)} value")


def _line(node: Node) -> int | None:
    return node.start_mark.line + 1 if node.start_mark is not None else None


def _trigger_problem(name: str) -> str | None:
    if not name:
        return "empty trigger name"
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        return f"trigger {name!r} is not an identifier (letters, digits, _)"
    if name in _RESERVED_TRIGGERS or name.startswith(_RESERVED_PREFIXES):
        return (
            f"trigger {name!r} clashes with a name the transitions library uses "
            f"({', '.join(_RESERVED_TRIGGERS)}, {', '.join(p + '*' for p in _RESERVED_PREFIXES)})"
        )
    return None


class _Reader:
    """Walks the composed nodes, raising at the first node that is wrong."""

    __slots__ = ("path", "text")

    def __init__(self, path: str, text: str = "") -> None:
        self.text = text
        self.path = path

    def error(self, node: Node, key: str | None, problem: str) -> MachineError:
        return MachineError(self.path, _line(node), key, problem)

    # -- YAML shapes ---------------------------------------------------

    def check_unique_keys(self, root: Node, key: str) -> None:
        """Refuse a key given twice in any mapping (PyYAML keeps the last)."""
        from yaml.nodes import MappingNode, ScalarNode, SequenceNode

        seen: set[int] = set()  # aliases share nodes, and may loop
        stack = [(root, key)]
        while stack:
            node, at = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, SequenceNode):
                stack.extend((item, _join(at, i)) for i, item in enumerate(node.value))
            elif isinstance(node, MappingNode):
                first: dict[tuple[str, str], Node] = {}
                for knode, vnode in node.value:
                    name = str(knode.value) if isinstance(knode, ScalarNode) else "?"
                    if isinstance(knode, ScalarNode):
                        self._unique(first, knode, _join(at, name))
                    stack.append((vnode, _join(at, name)))

    def _unique(self, first: dict[tuple[str, str], Node], knode: Node, key: str) -> None:
        earlier = first.setdefault((knode.tag, knode.value), knode)
        if earlier is not knode:
            raise self.error(knode, key, f"duplicate key (first at line {_line(earlier)})")

    def fields(
        self, node: Node, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Node]:
        """A mapping's values by key; unknown and missing keys are errors."""
        from yaml.nodes import MappingNode

        if not isinstance(node, MappingNode):
            raise self.error(node, key or None, f"expected a mapping, found {_kind(node)}")
        known = required + optional
        out: dict[str, Node] = {}
        for knode, vnode in node.value:
            name = self.string(knode, key or None)
            if name not in known:
                expected = f"expected: {', '.join(known)}" if known else "none allowed here"
                raise self.error(knode, _join(key, name), f"unknown key ({expected})")
            out[name] = vnode
        for name in required:
            if name not in out:
                raise self.error(node, _join(key, name), "missing")
        return out

    def items(self, node: Node, key: str) -> list[Node]:
        from yaml.nodes import SequenceNode

        if not isinstance(node, SequenceNode):
            raise self.error(node, key, f"expected a list, found {_kind(node)}")
        return list(node.value)

    def string(self, node: Node, key: str | None) -> str:
        from yaml.nodes import ScalarNode

        if not (isinstance(node, ScalarNode) and node.tag == _TAG + "str"):
            # `on`, `no`, `1` and `~` are not strings to YAML 1.1 unless quoted.
            hint = " (quote it)" if node.tag in _IMPLICIT_SCALARS else ""
            raise self.error(node, key, f"expected a string, found {_kind(node)}{hint}")
        return str(node.value)

    def names(self, node: Node, key: str) -> list[tuple[str, Node, str]]:
        """A string, or a list of strings, with their nodes and keys."""
        from yaml.nodes import SequenceNode

        if not isinstance(node, SequenceNode):
            return [(self.string(node, key), node, key)]
        if not node.value:
            raise self.error(node, key, "empty list; name at least one state")
        keys = [_join(key, i) for i in range(len(node.value))]
        return [(self.string(item, k), item, k) for item, k in zip(node.value, keys, strict=True)]

    def value(self, node: Node, key: str) -> object:
        """Any YAML value, built by PyYAML's safe constructor."""
        import yaml
        from yaml.constructor import SafeConstructor

        try:
            return SafeConstructor().construct_object(node, deep=True)
        except yaml.MarkedYAMLError as err:
            raise self.error(node, key, f"cannot read value: {_problem(err)}") from err
        except (ValueError, LookupError, AttributeError) as err:
            # PyYAML's constructors fail this way on an explicit tag that does
            # not fit its text, such as `!!int abc`.
            raise self.error(node, key, f"cannot read value as {_short(node.tag)}") from err

    # -- the machine ---------------------------------------------------

    def machine(self, root: Node) -> Plain:
        top = self.fields(root, "", _TOP_REQUIRED)
        version = self.version(top["version"])
        states = self.states(top["states"])
        initial = self.string(top["initial"], "initial")
        if initial not in states:
            raise self.error(top["initial"], "initial", f"{initial!r} is not declared in states")
        transitions = self.transitions(top["transitions"], states)
        self.check_reachable(states, initial, transitions)
        return version, tuple(states), initial, tuple(transitions)

    def version(self, node: Node) -> int:
        value = self.value(node, "version")
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(node, "version", f"expected an integer, found {_kind(node)}")
        if value != SUPPORTED_VERSION:
            problem = f"unsupported version {value} (this runlog reads {SUPPORTED_VERSION})"
            raise self.error(node, "version", problem)
        return value

    def states(self, node: Node) -> dict[str, Node]:
        """Declared states, in file order, with their nodes."""
        states: dict[str, Node] = {}
        for i, item in enumerate(self.items(node, "states")):
            key = _join("states", i)
            name = self.string(item, key)
            if name not in STATUSES:
                problem = f"unknown state {name!r} (runlog's states: {', '.join(STATUSES)})"
                raise self.error(item, key, problem)
            if name in states:
                first = _line(states[name])
                raise self.error(item, key, f"duplicate state {name!r} (first at line {first})")
            states[name] = item
        return states

    def transitions(self, node: Node, states: Mapping[str, Node]) -> list[PlainTransition]:
        out: list[PlainTransition] = []
        first: dict[tuple[str, str], PlainTransition] = {}
        for i, item in enumerate(self.items(node, "transitions")):
            key = _join("transitions", i)
            transition = self.transition(item, key, states)
            trigger, sources, _dest, _actions, line, _description = transition
            for source in sources:
                earlier = first.setdefault((trigger, source), transition)
                if earlier is not transition:
                    problem = (
                        f"duplicate transition {trigger!r} from {source!r} "
                        f"(lines {earlier[4]} and {line})"
                    )
                    raise self.error(item, key, problem)
            out.append(transition)
        return out

    def transition(self, node: Node, key: str, states: Mapping[str, Node]) -> PlainTransition:
        f = self.fields(node, key, _TRANSITION_REQUIRED, _TRANSITION_OPTIONAL)
        trigger = self.string(f["trigger"], _join(key, "trigger"))
        problem = _trigger_problem(trigger)
        if problem:
            raise self.error(f["trigger"], _join(key, "trigger"), problem)
        sources = self.sources(f["source"], _join(key, "source"), states)
        dest = self.dest(f["dest"], _join(key, "dest"), states)
        actions = self.actions(f.get("actions"), _join(key, "actions"))
        description = None
        if "description" in f:
            description = self.string(f["description"], _join(key, "description"))
        line = _line(node) or 0
        return trigger, sources, dest, actions, line, description

    def sources(self, node: Node, key: str, states: Mapping[str, Node]) -> tuple[str, ...]:
        sources: list[str] = []
        for name, item, item_key in self.names(node, key):
            self.check_declared(name, item, item_key, states)
            if name in sources:
                raise self.error(item, item_key, f"{name!r} listed twice")
            sources.append(name)
        return tuple(sources)

    def dest(self, node: Node, key: str, states: Mapping[str, Node]) -> str | None:
        if node.tag == _TAG + "null":
            return None
        name = self.string(node, key)
        self.check_declared(name, node, key, states)
        return name

    def check_declared(self, name: str, node: Node, key: str, states: Mapping[str, Node]) -> None:
        if name not in states:
            raise self.error(node, key, f"state {name!r} is not declared in states")

    def actions(self, node: Node | None, key: str) -> tuple[PlainAction, ...]:
        if node is None or node.tag == _TAG + "null":
            return ()
        return tuple(
            self.action(item, _join(key, i)) for i, item in enumerate(self.items(node, key))
        )

    def action(self, node: Node, key: str) -> PlainAction:
        """``name`` or ``{name: {param: value, ...}}``."""
        from yaml.nodes import MappingNode

        if not isinstance(node, MappingNode):
            name = self.string(node, key)
            params = self.params(self.signature(name, node, key), {}, node, key)
            return name, params, _line(node) or 0
        if len(node.value) != 1:
            raise self.error(node, key, "an action with parameters is a one-key mapping")
        ((knode, vnode),) = node.value
        name = self.string(knode, key)
        signature = self.signature(name, knode, key)
        pkey = _join(key, name)
        given = {}
        if vnode.tag != _TAG + "null":  # `hook:` with nothing after it
            given = self.fields(vnode, pkey, (), tuple(signature.params))
        return name, self.params(signature, given, node, pkey), _line(node) or 0

    def signature(self, name: str, node: Node, key: str) -> ActionSignature:
        signature = ACTIONS.get(name)
        if signature is None:
            raise self.error(node, key, f"unknown action {name!r} (known: {', '.join(ACTIONS)})")
        return signature

    def params(
        self, signature: ActionSignature, given: Mapping[str, Node], node: Node, key: str
    ) -> Mapping[str, object]:
        """Checked parameters in the signature's order, defaults filled in."""
        out: dict[str, object] = {}
        for name, param in signature.params.items():
            if name in given:
                out[name] = self.param(param, given[name], _join(key, name))
            elif param.required:
                raise self.error(node, key, f"{signature.name} needs parameter {name!r}")
            elif param.default is not None:
                out[name] = param.default
        return MappingProxyType(out)

    def param(self, param: Param, node: Node, key: str) -> object:
        value = self.value(node, key)
        # bool is an int to isinstance, not to a reader of the file.
        if not isinstance(value, param.kind) or (
            isinstance(value, bool) and param.kind is not bool
        ):
            expected = _KINDS.get(param.kind.__name__, param.kind.__name__)
            raise self.error(node, key, f"expected {expected}, found {_kind(node)}")
        if param.choices is not None and value not in param.choices:
            raise self.error(node, key, f"{value!r} is not one of: {', '.join(param.choices)}")
        return value

    def check_reachable(
        self, states: Mapping[str, Node], initial: str, transitions: Iterable[PlainTransition]
    ) -> None:
        edges = [(t[1], t[2]) for t in transitions if t[2] is not None]
        reached = {initial}
        frontier = [initial]
        while frontier:
            state = frontier.pop()
            for sources, dest in edges:
                if state in sources and dest not in reached:
                    reached.add(dest)
                    frontier.append(dest)
        for i, (name, node) in enumerate(states.items()):
            if name not in reached:
                problem = f"state {name!r} is not reachable from {initial!r}"
                raise self.error(node, _join("states", i), problem)
