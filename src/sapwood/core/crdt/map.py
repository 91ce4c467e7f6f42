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

import msgpack

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
from sapwood.core.crdt.segments import (
    MAP_SEGMENT_TARGET,
    Segments,
    array_header,
    current_segments,
    is_segmented,
    split_segments,
    touch,
)
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


def _field_hash(key: FieldKey) -> bytes:
    return f"{key.name}_{key.type}".encode("utf-8", "surrogatepass")


class MapStore(DotStore):
    """Field -> MapField. `fields` changes only through this class's methods, which keep the
    segmented encoding's cache (see segments.py) told of every change."""

    __slots__ = ("_segments", "fields")

    def __init__(self, fields: dict[FieldKey, MapField] | None = None) -> None:
        self.fields: dict[FieldKey, MapField] = {} if fields is None else fields
        self._segments: Segments[FieldKey] | None = None

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
        touch(self._segments, key, key in self.fields)

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
            touch(self._segments, key, key in self.fields)

    def check(self, op: MapOp, has_context: bool) -> None:
        updated = {key for key, _ in op.updates}
        if not has_context and op.removes:
            missing = [k.json_name for k in op.removes if k not in self.fields and k not in updated]
            if missing:
                raise PreconditionFailed(
                    f"cannot remove field {missing_preview(missing)}: not in the map; "
                    "send the context from a fetch to remove what you have seen"
                )
        # O(op): `updated - self.fields.keys()` would walk every field of the map.
        adding = sum(1 for key in updated if key not in self.fields)
        check_room(len(self.fields), adding, MAX_MAP_FIELDS, "map")
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
                if self.fields.pop(key, None) is not None:
                    touch(self._segments, key, False)
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
            touch(self._segments, key, True)
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

    def encode_parts(self, index: dict[bytes, int], actors: tuple[bytes, ...]) -> list[bytes]:
        segments = self._segments = current_segments(
            self._segments, self.fields, MAP_SEGMENT_TARGET, _field_hash)
        return segments.encode(actors, lambda keys: self._encode_segment(keys, index, actors))

    def _encode_segment(self, keys: set[FieldKey], index: dict[bytes, int],
                        actors: tuple[bytes, ...]) -> bytes:
        """[[name, type code, touch dots, value store], ...] sorted by field.

        Nested sets and maps bring their own cached bytes; a segment without them (registers,
        flags, counters) packs in one call, which is most of the cost of a map update.
        """
        ordered = sorted(keys)
        fields = self.fields
        if not any(type(fields[key].store) in CACHED_STORES for key in ordered):
            return _pack([_field_to_wire(key, fields[key], index) for key in ordered])
        parts = [array_header(len(ordered))]
        for key in ordered:
            field = fields[key]
            if type(field.store) not in CACHED_STORES:
                parts.append(_pack(_field_to_wire(key, field, index)))
                continue
            parts += (array_header(4), _pack(key.name), _pack(FIELD_TYPE_CODES[key.type]),
                      _pack(dots_to_wire(field.touch, index)),
                      *field.store.encode_parts(index, actors))
        return b"".join(parts)

    def to_wire(self, index: dict[bytes, int]) -> Any:
        actors = tuple(sorted(index, key=index.__getitem__))
        return msgpack.unpackb(self.encode_wire(index, actors), raw=False)

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        """The segmented form `[count, segment, ...]`, or the flat list of format version 1."""
        parts = split_segments(data) if is_segmented(data) else [data]
        fields: dict[FieldKey, MapField] = {}
        total = 0
        for part in parts:
            total += len(part)
            for wire in part:
                if len(wire) == SHORT_REGISTER_LENGTH and type(wire[1]) is int \
                        and wire[1] == SHORT_REGISTER_CODE:
                    name, _, idx, counter, ts, value = wire
                    fields[FieldKey(_field_name(name), "register")] = _short_register_field(
                        idx, counter, ts, value, actors)
                    continue
                name, code, touch_wire, store = wire
                kind = _field_type(code)
                if not isinstance(name, str) or kind not in STORE_TYPES:
                    raise ValueError("malformed map field")
                store_type = STORE_TYPES[kind]
                fields[FieldKey(name, kind)] = MapField(
                    dots_from_wire(touch_wire, actors), store_type.from_wire(store, actors)
                )
        if len(fields) != total:
            raise ValueError("malformed map fields")
        return cls(fields)


def _field_to_wire(key: FieldKey, field: MapField, index: dict[bytes, int]) -> list[Any]:
    """[name, type code, touch dots, value store]; a register field whose one assignment was
    made by the field's one touch (the usual case) leaves out what the touch already says:
    [name, SHORT_REGISTER_CODE, actor index, counter, timestamp, value] (format version 3)."""
    touch, store = field.touch, field.store
    if type(store) is RegisterStore and len(touch) == 1 and len(store.entries) == 1:
        ((dot, (ts, writer, value)),) = store.entries.items()
        ((actor, counter),) = touch.items()
        if dot == (actor, counter) and writer == actor:
            return [key.name, SHORT_REGISTER_CODE, index[actor], counter, ts, value]
    return [key.name, FIELD_TYPE_CODES[key.type], dots_to_wire(touch, index),
            store.to_wire(index)]


def _short_register_field(idx: Any, counter: Any, ts: Any, value: Any,
                          actors: list[bytes]) -> MapField:
    touch = dots_from_wire([idx, counter], actors)
    if type(idx) is not int or idx < 0 or type(ts) is not int or not isinstance(value, bytes):
        raise ValueError("malformed register field")
    actor = actors[idx]
    return MapField(touch, RegisterStore({(actor, counter): (ts, actor, value)}))


def _field_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError("malformed map field")
    return name


def _field_type(code: Any) -> Any:
    """A field's type from its wire code (older encodings spell the type out)."""
    if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < len(FIELD_TYPES):
        return FIELD_TYPES[code]
    return code


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# Field stores that cache their encoded parts (segments.py).
CACHED_STORES = (SetStore, MapStore)

# Field types travel as their index here: one byte instead of the name (append only).
FIELD_TYPES = ("counter", "set", "register", "flag", "map")
FIELD_TYPE_CODES = {kind: code for code, kind in enumerate(FIELD_TYPES)}
SHORT_REGISTER_CODE = 5  # a register field in short form (see _field_to_wire)
SHORT_REGISTER_LENGTH = 6

STORE_TYPES: dict[str, type[DotStore]] = {
    "counter": CounterStore,
    "set": SetStore,
    "register": RegisterStore,
    "flag": FlagStore,
    "map": MapStore,
}


class Map(CausalCRDT[MapStore]):
    """Riak's `map`. `update` mutates in place and returns self; `merge` returns a new map."""

    type_name: ClassVar[str] = "map"
    TAG: ClassVar[int] = 5
    FORMAT: ClassVar[int] = 3  # short register fields, compressed segment groups
    store_type: ClassVar[type[DotStore]] = MapStore
    op_type: ClassVar[type] = MapOp

    __slots__ = ()

    def value(self) -> dict[str, Any]:
        return self.store.value()
