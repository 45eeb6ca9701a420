"""cni_common.record behaves like the dataclasses it replaces on the plugins' path."""

import pytest

from cni_common.record import FrozenInstanceError, field, fields_of, record, replace


@record
class Box:
    name: str
    size: int = 0
    tags: list = field(default_factory=list)


@record(frozen=True)
class Point:
    x: int
    y: int = 0

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def test_init_positional_keyword_defaults_and_factories():
    a, b = Box("a"), Box(name="b", size=2)
    assert (a.name, a.size, a.tags, b.size) == ("a", 0, [], 2)
    a.tags.append(1)
    assert Box("c").tags == []  # a fresh list per instance
    assert fields_of(Box) == ("name", "size", "tags")


@pytest.mark.parametrize("call", [lambda: Box(), lambda: Box("a", 1, [], 4), lambda: Box("a", name="b"),
                                  lambda: Box("a", colour=1)])
def test_bad_arguments_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


def test_repr_and_eq():
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert Point(1, 2) == Point(1, y=2) and Point(1) != Point(2)
    assert Box("a") != Point(1) and Box("a") == Box("a")


def test_frozen_is_hashable_and_immutable_mutable_is_unhashable():
    assert len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    with pytest.raises(FrozenInstanceError):
        Point(1).x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del Point(1).y
    with pytest.raises(TypeError):
        hash(Box("a"))
    box = Box("a")
    box.size = 5
    assert box.size == 5 and Point(1, -2).norm1 == 3


def test_replace_keeps_other_fields():
    box = Box("a", 3, [1])
    copy = replace(box, name="b")
    assert copy == Box("b", 3, [1]) and copy.tags is box.tags
    assert replace(Point(1, 2), y=5) == Point(1, 5)


def test_field_default_and_compare_false_as_in_dataclasses():
    @record(frozen=True)
    class Peer:
        ip: str
        node: str = field(default="", compare=False)

    assert Peer("10.0.0.1").node == ""
    assert Peer("10.0.0.1", "a") == Peer("10.0.0.1", "b")
    assert hash(Peer("10.0.0.1", "a")) == hash(Peer("10.0.0.1"))
    assert Peer("10.0.0.1", "a") != Peer("10.0.0.2", "a")
    assert repr(Peer("10.0.0.1", "a")).endswith("Peer(ip='10.0.0.1', node='a')")
