"""Map: fields keyed (name, type) holding nested data types, with observed-remove of fields.

All fields share the map's one clock and context: a field's value is itself a dot store (set,
dotted counter, register, flag or map). Each field also keeps the dots of the updates that touched
it, so an updated field is present even when its value is empty (an empty set, a disabled flag).

Removing a field deletes the dots the remover observed, in the field and everything beneath it.
An update concurrent with a remove carries a dot the remover never saw, so the field survives
holding only what such unseen dots hold: the concurrent update's effect ("reset-remove"). For a
set that is exactly the concurrently added elements; for a counter it is the full total of each
actor that updated concurrently (see CounterStore); for a register the new assignment. Removing
and updating a field in one op removes first, so only the update remains.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from sapwood.core.crdt.counter import CounterStore
from sapwood.core.crdt.dots import (
    CausalCRDT,
    Clock,
    Dot,
    Dots,
    DotStore,
    Path,
    dots_from_wire,
    dots_to_wire,
    join_dots,
    unseen_dots,
)
from sapwood.core.crdt.flag import FlagStore
from sapwood.core.crdt.ops import FieldKey, MapOp
from sapwood.core.crdt.register import RegisterStore
from sapwood.core.crdt.set import SetStore, check_room, missing_preview
from sapwood.core.errors import PreconditionFailed

MAX_MAP_FIELDS = 10_000


class MapField:
    """One field: the dots of the updates that touched it, and its value's dot store."""

    __slots__ = ("store", "touch")

    def __init__(self, touch: Dots, store: DotStore) -> None:
        self.touch = touch
        self.store = store

    @classmethod
    def empty(cls, kind: str) -> MapField:
        return cls({}, STORE_TYPES[kind]())

    def is_empty(self) -> bool:
        return not self.touch and self.store.is_empty()

    def join(self, other: MapField, clock: Clock, other_clock: Clock) -> MapField:
        touch = join_dots(self.touch, other.touch, clock, other_clock)
        return MapField(dict(touch), self.store.join(other.store, clock, other_clock))

    def discard_seen(self, ctx: Clock) -> None:
        self.touch = unseen_dots(self.touch, ctx)
        self.store.discard_seen(ctx)

    def copy(self) -> MapField:
        return MapField(dict(self.touch), self.store.copy())


class MapStore(DotStore):
    __slots__ = ("fields",)

    def __init__(self, fields: dict[FieldKey, MapField] | None = None) -> None:
        self.fields: dict[FieldKey, MapField] = {} if fields is None else fields

    def is_empty(self) -> bool:
        return not self.fields

    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        out: dict[FieldKey, MapField] = {}
        for key in self.fields.keys() | other.fields.keys():
            mine = self.fields.get(key) or MapField.empty(key.type)
            theirs = other.fields.get(key) or MapField.empty(key.type)
            joined = mine.join(theirs, clock, other_clock)
            if not joined.is_empty():
                out[key] = joined
        return type(self)(out)

    def discard_seen(self, ctx: Clock) -> None:
        for key in list(self.fields):
            self._discard_field(key, ctx)

    def _discard_field(self, key: FieldKey, ctx: Clock) -> None:
        field = self.fields.get(key)
        if field is None:
            return
        field.discard_seen(ctx)
        if field.is_empty():
            del self.fields[key]

    def remove_path(self, path: Path, ctx: Clock) -> None:
        if not path or not isinstance(path[0], FieldKey):
            return
        key, rest = path[0], path[1:]
        if not rest:
            self._discard_field(key, ctx)
            return
        field = self.fields.get(key)
        if field is not None:
            field.store.remove_path(rest, ctx)
            if field.is_empty():
                del self.fields[key]

    def check(self, op: MapOp, has_context: bool) -> None:
        updated = {key for key, _ in op.updates}
        if not has_context and op.removes:
            missing = [k.json_name for k in op.removes if k not in self.fields and k not in updated]
            if missing:
                raise PreconditionFailed(
                    f"cannot remove field {missing_preview(missing)}: not in the map; "
                    "send the context from a fetch to remove what you have seen"
                )
        check_room(len(self.fields), len(updated - self.fields.keys()), MAX_MAP_FIELDS, "map")
        reset = set(op.removes) if not has_context else set()
        for key, sub_op in op.updates:
            field = self.fields.get(key)
            fresh = field is None or key in reset
            store = STORE_TYPES[key.type]() if fresh or field is None else field.store
            store.check(sub_op, has_context)

    def apply(self, op: MapOp, dot: Dot, now_ms: int, observed: Clock | None) -> list[Path]:
        paths: list[Path] = []
        for key in op.removes:
            if observed is None:
                self.fields.pop(key, None)
            else:
                self._discard_field(key, observed)
                paths.append((key,))
        for key, sub_op in op.updates:
            field = self.fields.get(key) or MapField.empty(key.type)
            # The update observed every local touch of the field, so its dot replaces them.
            field.touch = {dot[0]: dot[1]}
            sub_paths = field.store.apply(sub_op, dot, now_ms, observed)
            paths.extend((key, *p) for p in sub_paths)
            self.fields[key] = field
        return paths

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in sorted(self.fields):
            value = self.fields[key].store.value()
            if value is not None:  # a register whose every assignment was removed
                out[key.json_name] = value
        return out

    def copy(self) -> Self:
        return type(self)({key: field.copy() for key, field in self.fields.items()})

    def to_wire(self, index: dict[bytes, int]) -> Any:
        return [
            [key.name, key.type, dots_to_wire(field.touch, index), field.store.to_wire(index)]
            for key, field in sorted(self.fields.items())
        ]

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        fields: dict[FieldKey, MapField] = {}
        for name, kind, touch, store in data:
            if not isinstance(name, str) or kind not in STORE_TYPES:
                raise ValueError("malformed map field")
            store_type = STORE_TYPES[kind]
            fields[FieldKey(name, kind)] = MapField(
                dots_from_wire(touch, actors), store_type.from_wire(store, actors)
            )
        return cls(fields)


STORE_TYPES: dict[str, type[DotStore]] = {
    "counter": CounterStore,
    "set": SetStore,
    "register": RegisterStore,
    "flag": FlagStore,
    "map": MapStore,
}


class Map(CausalCRDT):
    """Riak's `map`. `update` mutates in place and returns self; `merge` returns a new map."""

    type_name: ClassVar[str] = "map"
    TAG: ClassVar[int] = 5
    store_type: ClassVar[type[DotStore]] = MapStore
    op_type: ClassVar[type] = MapOp

    __slots__ = ()
    store: MapStore

    def value(self) -> dict[str, Any]:
        return self.store.value()
