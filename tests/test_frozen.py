"""Frozen records: construction, defaults, errors, frozenness, eq/hash/repr, replace."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from engine.frozen import FrozenInstanceError, field, record, replace


def empty_tags() -> list[str]:
    return []


@record
class Point:
    x: int
    y: int = 0
    label: str = "p"


@record
class Tagged:
    name: str
    tags: list[str] = field(default_factory=empty_tags)
    note: str = field(default="", repr=False, compare=False)
    extra: dict[str, str] | None = field(default=None, hash=False)


@record
class Point3(Point):
    z: int = 0


@record
class Counted:
    unit: ClassVar[str] = "m"
    size: int

    def double(self) -> int:
        return self.size * 2


# -- construction ------------------------------------------------------------


def test_positional_keyword_and_default_construction() -> None:
    assert (Point(1).x, Point(1).y, Point(1).label) == (1, 0, "p")
    p = Point(1, 2, "q")
    assert (p.x, p.y, p.label) == (1, 2, "q")
    assert Point(1, label="q") == Point(x=1, y=0, label="q")
    assert Point(label="q", x=1) == Point(1, 0, "q")


def test_default_factory_is_called_per_instance() -> None:
    a, b = Tagged("a"), Tagged("b")
    assert a.tags == [] and b.tags == []
    a.tags.append("x")
    assert b.tags == []
    assert Tagged("c").tags == []
    given = ["y"]
    assert Tagged("d", given).tags is given


def test_fields_are_in_declaration_order_after_the_base_class_fields() -> None:
    assert Point.__match_args__ == ("x", "y", "label")
    assert Point3.__match_args__ == ("x", "y", "label", "z")
    p = Point3(1, 2, "r", 3)
    assert (p.x, p.y, p.label, p.z) == (1, 2, "r", 3)
    assert repr(p) == "Point3(x=1, y=2, label='r', z=3)"


def test_class_variables_are_not_fields_and_methods_still_work() -> None:
    c = Counted(4)
    assert Counted.__match_args__ == ("size",)
    assert (c.unit, c.double()) == ("m", 8)
    with pytest.raises(TypeError, match="takes 1 positional argument"):
        Counted(1, "cm")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (Point, r"Point\(\) missing required argument: 'x'"),
        (lambda: Point(y=1), r"Point\(\) missing required argument: 'x'"),
        (lambda: Point(1, z=2), r"Point\(\) got unexpected keyword argument: 'z'"),
        (lambda: Point(1, 2, "q", 4), r"Point\(\) takes 3 positional arguments but 4 were given"),
        (lambda: Point(1, x=2), r"Point\(\) got multiple values for argument: 'x'"),
        (Tagged, r"Tagged\(\) missing required argument: 'name'"),
    ],
)
def test_missing_unknown_and_repeated_arguments_are_type_errors(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_definition_errors() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(ValueError, match=r"mutable default .*list.* for field a"):

        @record
        class Mutable:
            a: list[int] = []  # noqa: RUF012

    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=int)  # type: ignore[call-overload]


# -- frozen ------------------------------------------------------------------


def test_assigning_or_deleting_any_attribute_raises() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x' of Point"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.new = 3  # type: ignore[attr-defined]
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'y' of Point"):
        del p.y  # type: ignore[misc]
    assert (p.x, p.y) == (1, 0)
    assert not hasattr(p, "new")
    assert issubclass(FrozenInstanceError, AttributeError)


def test_copy_and_pickle_keep_the_record() -> None:
    t = Tagged("a", ["x"], "n")
    for clone in (copy.copy(t), copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert clone == t and clone.note == "n"
        with pytest.raises(FrozenInstanceError):
            clone.name = "b"  # type: ignore[misc]


# -- eq, hash, repr ----------------------------------------------------------


def test_equality_needs_the_same_class_and_equal_fields() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 0, "p") != Point3(1, 0, "p", 0)
    assert Point(1) != (1, 0, "p")
    nan = float("nan")
    assert Point(nan) == Point(nan)  # type: ignore[arg-type]  # identical, as tuples compare


def test_hash_follows_the_compared_fields() -> None:
    assert hash(Point(1, 2)) == hash(Point(1, 2)) == hash((1, 2, "p"))
    assert len({Point(1), Point(1), Point(2)}) == 2
    # note is left out of eq and hash, extra out of hash only
    assert Tagged("a", note="x") == Tagged("a", note="y")
    assert Tagged("a", extra={"k": "v"}) != Tagged("a")
    assert hash(Tagged("a", ("t",), extra={"k": "v"})) == hash(Tagged("a", ("t",)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unhashable"):
        hash(Tagged("a"))  # the list of tags


def test_repr_is_the_dataclass_repr_without_hidden_fields() -> None:
    assert repr(Point(1, label="a'b")) == 'Point(x=1, y=0, label="a\'b")'
    assert repr(Tagged("a", note="hidden")) == "Tagged(name='a', tags=[], extra=None)"


def test_methods_the_class_defines_are_kept() -> None:
    @record
    class Loud:
        a: int

        def __repr__(self) -> str:
            return "LOUD"

    assert repr(Loud(1)) == "LOUD"
    assert Loud(1) == Loud(1)


# -- replace -----------------------------------------------------------------


def test_replace_builds_a_new_record() -> None:
    p = Point(1, 2)
    q = replace(p, y=5)
    assert q == Point(1, 5) and p == Point(1, 2)
    assert type(replace(Point3(1, z=2), x=0)) is Point3
    t = Tagged("a", ["x"], "n")
    assert replace(t).tags is t.tags  # fields are copied, factories not re-run
    with pytest.raises(TypeError, match="unexpected keyword argument: 'w'"):
        replace(p, w=1)
    with pytest.raises(TypeError, match="should be called on a record"):
        replace(object())


# -- cost --------------------------------------------------------------------


def test_importing_records_loads_neither_dataclasses_nor_typing() -> None:
    root = str(Path(__file__).resolve().parents[1])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); import engine.oci.model; "
        "print(' '.join(m for m in ('dataclasses', 'typing', 'inspect') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == []
