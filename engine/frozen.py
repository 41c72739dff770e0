"""Frozen records: what ``@dataclass(frozen=True)`` gave the value types, for less.

``runlog create``'s monitor builds about two dozen value classes (the
configuration, cgroup resources, the machine definition) before it can act.
:mod:`dataclasses` costs about 14 ms to import (it brings :mod:`inspect` and
:mod:`re`) and some 400 µs per class, because it ``exec()``s generated
source for each method and ``slots=True`` builds every class twice. A
:func:`record` class instead shares generic methods bound by closures to
its field names, which costs tens of microseconds per class.

What a record keeps of a frozen dataclass: fields from the class's own
annotations (after those of a record base class), in order; positional and
keyword construction, defaults and :func:`field` with ``default_factory``;
``__eq__`` (same class, equal field tuples), ``__hash__`` of the field
tuple, a dataclass-like ``__repr__``, ``__match_args__``; assigning or
deleting any attribute raises :class:`FrozenInstanceError`. What it drops:
``__slots__``, ``__post_init__``, ``InitVar``, ``KW_ONLY``, ordering.
Type checkers see :func:`record` as a dataclass transform, so ``mypy
--strict`` checks constructors as it does for dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
else:
    # typing costs ~2 ms to import; these only matter to a type checker.
    def dataclass_transform(**_kw):
        return lambda f: f


__all__ = ["FrozenInstanceError", "field", "record", "replace"]


class FrozenInstanceError(AttributeError):
    """An attempt to assign or delete an attribute of a record (as
    :class:`dataclasses.FrozenInstanceError`, an :class:`AttributeError`)."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


class Field:
    """One field of a record: what :func:`field` says about it."""

    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr")

    def __init__(
        self,
        default: Any,
        default_factory: Callable[[], Any] | None,
        repr: bool,
        compare: bool,
        hash: bool | None,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = compare if hash is None else hash

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


if TYPE_CHECKING:

    @overload
    def field(
        *,
        default: T,
        repr: bool = True,
        compare: bool = True,
        hash: bool | None = None,
    ) -> T: ...

    @overload
    def field(
        *,
        default_factory: Callable[[], T],
        repr: bool = True,
        compare: bool = True,
        hash: bool | None = None,
    ) -> T: ...

    @overload
    def field(
        *,
        repr: bool = True,
        compare: bool = True,
        hash: bool | None = None,
    ) -> Any: ...


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
) -> Any:
    """A field's default or ``default_factory`` (called once per instance),
    and whether it shows in ``repr`` and counts in ``==`` and ``hash``
    (``hash=None``: as ``compare``), as :func:`dataclasses.field`."""
    if default is not _MISSING and default_factory is not None:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare, hash)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of {type(self).__qualname__}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of {type(self).__qualname__}")


def _plural(names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"argument{'s' if len(names) > 1 else ''}: {quoted}"


def _methods(cls: type, fields: tuple[Field, ...]) -> dict[str, Any]:
    """``__init__``, ``__repr__``, ``__eq__`` and ``__hash__`` of ``cls``:
    closures over its field names instead of generated source."""
    qualname = cls.__qualname__
    names = tuple(f.name for f in fields)
    known = frozenset(names)
    count = len(names)
    defaults = {f.name: f.default for f in fields if f.default is not _MISSING}
    factories = {f.name: f.default_factory for f in fields if f.default_factory is not None}
    shown = tuple(f.name for f in fields if f.repr)
    compared = tuple(f.name for f in fields if f.compare)
    hashed = tuple(f.name for f in fields if f.hash)
    set_dict = object.__setattr__

    def init(self: object, /, *args: object, **kwargs: object) -> None:
        if args:
            if len(args) > count:
                raise TypeError(
                    f"{qualname}() takes {count} positional arguments but {len(args)} were given"
                )
            given = dict(zip(names, args, strict=False))
            if kwargs:
                twice = [k for k in kwargs if k in given]
                if twice:
                    raise TypeError(f"{qualname}() got multiple values for {_plural(twice)}")
                given.update(kwargs)
        else:
            given = kwargs  # a new dict on every call: the instance may own it
        if not given.keys() <= known:
            unknown = [k for k in given if k not in known]
            raise TypeError(f"{qualname}() got unexpected keyword {_plural(unknown)}")
        if len(given) < count:
            missing = []
            for name in names:
                if name in given:
                    continue
                if name in defaults:
                    given[name] = defaults[name]
                elif name in factories:
                    given[name] = factories[name]()
                else:
                    missing.append(name)
            if missing:
                raise TypeError(f"{qualname}() missing required {_plural(missing)}")
        set_dict(self, "__dict__", given)

    def show(self: object) -> str:
        d = self.__dict__
        return f"{type(self).__qualname__}({', '.join(f'{n}={d[n]!r}' for n in shown)})"

    def eq(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented  # type: ignore[no-any-return]  # mypy knows only __eq__
        mine, theirs = self.__dict__, other.__dict__
        # Tuples, as dataclasses compare: an identical NaN is equal.
        return tuple([mine[n] for n in compared]) == tuple([theirs[n] for n in compared])

    def hash_(self: object) -> int:
        d = self.__dict__
        return hash(tuple([d[n] for n in hashed]))

    methods: dict[str, Any] = {"__init__": init, "__repr__": show, "__eq__": eq, "__hash__": hash_}
    for name, method in methods.items():
        method.__name__ = name
        method.__qualname__ = f"{qualname}.{name}"
    return methods


@dataclass_transform(frozen_default=True, field_specifiers=(Field, field))
def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record of its annotated fields (see the module)."""
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited.update(base.__dict__.get("__record_fields__", {}))
    body = cls.__dict__
    for name, annotation in body.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if text.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = body.get(name, _MISSING)
        if isinstance(value, Field):
            spec = value
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        else:
            spec = Field(value, None, True, True, None)
        if type(spec.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(spec.default)} for field {name} "
                "is not allowed: use default_factory"
            )
        spec.name = name
        inherited[name] = spec  # a redefined field keeps its place, as in dataclasses
    fields = tuple(inherited.values())
    has_default = False
    for spec in fields:
        if spec.default is not _MISSING or spec.default_factory is not None:
            has_default = True
        elif has_default:
            raise TypeError(f"non-default argument {spec.name!r} follows default argument")
    for name, method in _methods(cls, fields).items():
        # A method the class body defines wins, as with dataclasses; a body
        # defining __eq__ alone gets __hash__ = None from Python, not from us.
        if name not in body or (name == "__hash__" and body[name] is None):
            setattr(cls, name, method)
    frozen = {
        "__setattr__": _frozen_setattr,
        "__delattr__": _frozen_delattr,
        "__record_fields__": inherited,
        "__match_args__": tuple(inherited),
    }
    for name, value in frozen.items():
        setattr(cls, name, value)
    return cls


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (``dataclasses.replace``)."""
    fields = getattr(type(obj), "__record_fields__", None)
    if fields is None:
        raise TypeError(f"replace() should be called on a record, not {type(obj).__qualname__}")
    d = obj.__dict__
    return type(obj)(**{name: d[name] for name in fields} | changes)
