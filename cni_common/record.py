"""``@record``: the part of :mod:`dataclasses` the suite uses, for classes on a plugin call's path.

Why not :mod:`dataclasses`: importing it costs ~12 ms per process (it imports ``inspect``, which imports
``ast``, ``dis``, ``tokenize``...) and each decorated class ~0.5 ms more (it compiles generated methods with
``exec``). A plugin process defines ~20 such classes and lives ~100 ms, once per pod per ADD and DEL: that
was a fifth of its time. Here the methods are shared closures over the field list, nothing is compiled.

Same behaviour as ``@dataclass`` / ``@dataclass(frozen=True)`` for what the suite uses: fields are the
class's annotations in order (no inheritance of fields, no ``ClassVar``, no ``__post_init__``);
``__init__`` takes them positionally or by keyword, with defaults and ``field(default=..., default_factory=...,
compare=...)``; ``__repr__``; ``__eq__`` between instances of the same class (on the compared fields); a frozen
record refuses assignment and is hashable (a mutable one is not, as with dataclasses). :func:`replace` is
``dataclasses.replace``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs: object):
        """Only the type checker reads it (it then checks records as dataclasses): at run time, nothing."""
        return lambda decorator: decorator

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "default_factory", "compare")

    def __init__(self, default: object, default_factory: object, compare: bool) -> None:
        self.default, self.default_factory, self.compare = default, default_factory, compare


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True) -> Any:
    """A field's default, or a factory for it (``field(default_factory=list)``), and whether ``__eq__`` and
    ``__hash__`` look at it, as in dataclasses."""
    return _Field(default, default_factory, compare)


@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, *, frozen: bool = False) -> Any:
    """Class decorator: ``@record`` or ``@record(frozen=True)``."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def fields_of(obj_or_cls: object) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return obj_or_cls.__record_fields__  # type: ignore[attr-defined]


def replace(obj: _T, **changes: object) -> _T:
    """A new record of the same class with ``changes`` applied (defaults are not re-run)."""
    values = {name: getattr(obj, name) for name in fields_of(obj)}
    values.update(changes)
    return obj.__class__(**values)


def _build(cls: type, frozen: bool) -> type:
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults: dict[str, object] = {}
    factories: dict[str, object] = {}
    uncompared: set[str] = set()
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            if value.default_factory is not _MISSING:
                factories[name] = value.default_factory
            if value.default is not _MISSING:
                defaults[name] = value.default
            if not value.compare:
                uncompared.add(name)
            delattr(cls, name)
        elif value is not _MISSING:
            defaults[name] = value
    compared = tuple(name for name in names if name not in uncompared)
    known = frozenset(names)

    def __init__(self, *args: object, **kwargs: object) -> None:  # noqa: N807
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but {len(args)} were given")
        for key in kwargs:
            if key not in known:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")
        for i, name in enumerate(names):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs[name]
            elif name in factories:
                value = factories[name]()  # type: ignore[operator]
            elif name in defaults:
                value = defaults[name]
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            object.__setattr__(self, name, value)

    def _values(self: object) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in compared)

    def __repr__(self: object) -> str:  # noqa: N807
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{cls.__qualname__}({inner})"

    def __eq__(self: object, other: object) -> bool:  # noqa: N807
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    cls.__record_fields__ = names  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = __repr__  # type: ignore[assignment]
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = __eq__  # type: ignore[assignment]
    if frozen:
        def __setattr__(self: object, name: str, value: object) -> None:  # noqa: N807
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: object, name: str) -> None:  # noqa: N807
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        cls.__setattr__ = __setattr__  # type: ignore[assignment]
        cls.__delattr__ = __delattr__  # type: ignore[assignment]
    def __hash__(self: object) -> int:  # noqa: N807
        return hash(_values(self))

    if cls.__dict__.get("__hash__") is None:  # not written in the class body (or voided by its own __eq__)
        cls.__hash__ = __hash__ if frozen else None  # type: ignore[assignment]
    return cls
