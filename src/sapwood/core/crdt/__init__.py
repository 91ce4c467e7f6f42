"""Riak 2.0 data types (riak_dt semantics) as pure values: counter, set, gset, hll, map.

Every type offers `new()`, `value()` (Riak's JSON value), `update(op, actor, now_ms, context)`,
`merge(other)`, `context()`, `encode()` and `decode(data)`.

- `update` applies an op (from `parse_op`) as `actor` (a vnode id) *in place* and returns the same
  object, so it costs O(op) however large the state; on error it raises and changes nothing.
  `merge` and `copy` return new objects and never change their inputs.
- `context()` is the opaque causal context of a set or map (b"" for counter and hll; a gset's is
  an empty clock, as Riak hands one out). Passing it back to `update` limits removes to what that
  fetch saw; an empty or None context means "no context". Without one, removing an absent
  element or field raises PreconditionFailed. A malformed context is a BadRequest.
- `encode()` is a type-tag byte, a format-version byte, then msgpack; `decode_datatype` dispatches
  on the tag. Damaged bytes raise CorruptDatatype. Sets and maps encode in hash segments and keep
  each segment's bytes, so encoding after an update costs O(segments touched), not O(size)
  (segments.py; format version 2). Version 3 compresses large groups of segments, and a map's
  register field in its usual state takes a short form (map.py). Older versions still decode.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from sapwood.core.crdt.counter import MAX_COUNTER_TOTAL, Counter, CounterStore
from sapwood.core.crdt.dots import (
    MAX_ACTOR_BYTES,
    MAX_CONTEXT_BYTES,
    MAX_DEFERRED_CONTEXTS,
    CorruptDatatype,
    decode_context,
)
from sapwood.core.crdt.flag import Flag, FlagStore
from sapwood.core.crdt.gset import MAX_GSET_ELEMENTS, GSet
from sapwood.core.crdt.hll import (
    DEFAULT_HLL_PRECISION,
    MAX_HLL_PRECISION,
    MIN_HLL_PRECISION,
    HyperLogLog,
    check_precision,
)
from sapwood.core.crdt.map import MAX_MAP_FIELDS, Map, MapStore
from sapwood.core.crdt.ops import (
    MAX_COUNTER_DELTA,
    MAX_FIELD_NAME_BYTES,
    MAX_MAP_DEPTH,
    MAX_OP_ELEMENTS,
    MAX_REGISTER_BYTES,
    MAX_SET_ELEMENT_BYTES,
    CounterOp,
    FieldKey,
    FlagOp,
    HllOp,
    MapOp,
    Op,
    RegisterOp,
    SetOp,
    parse_field_name,
    parse_op,
)
from sapwood.core.crdt.register import Register, RegisterStore
from sapwood.core.crdt.set import MAX_SET_ELEMENTS, ORSet, SetStore
from sapwood.core.errors import BadRequest


class Datatype(Protocol):
    """What every data type offers (see the module docstring)."""

    type_name: ClassVar[str]

    def value(self) -> Any: ...

    def update(
        self, op: Op, actor: bytes, now_ms: int, context: bytes | None = None
    ) -> Datatype: ...

    def merge(self, other: Any) -> Datatype: ...

    def context(self) -> bytes: ...

    def encode(self) -> bytes: ...


TYPES: dict[str, type[Counter | ORSet | GSet | HyperLogLog | Map]] = {
    "counter": Counter,
    "set": ORSet,
    "gset": GSet,
    "hll": HyperLogLog,
    "map": Map,
}

_BY_TAG: dict[int, Any] = {
    cls.TAG: cls for cls in (Counter, ORSet, GSet, HyperLogLog, Map, Register, Flag)
}


def new_datatype(type_name: str, hll_precision: int = DEFAULT_HLL_PRECISION) -> Datatype:
    """An empty data type of a bucket type's `datatype`; unknown names -> BadRequest."""
    if type_name == "hll":
        return HyperLogLog.new(hll_precision)
    cls = TYPES.get(type_name)
    if cls is None:
        raise BadRequest(f"unknown data type {type_name!r}; expected one of {sorted(TYPES)}")
    return cls.new()


def decode_datatype(data: bytes) -> Datatype:
    """Decode any `encode()` output, dispatching on its tag byte."""
    cls = _BY_TAG.get(data[0]) if data else None
    if cls is None:
        raise CorruptDatatype("bytes do not hold a known data type")
    decoded: Datatype = cls.decode(data)
    return decoded


def merge_datatypes(a: Datatype, b: Datatype) -> Datatype:
    """Merge two states of one data type; states of different types -> CorruptDatatype."""
    if type(a) is not type(b):
        raise CorruptDatatype(f"cannot merge a {b.type_name} into a {a.type_name}")
    return a.merge(b)


__all__ = [
    "DEFAULT_HLL_PRECISION",
    "MAX_ACTOR_BYTES",
    "MAX_CONTEXT_BYTES",
    "MAX_COUNTER_DELTA",
    "MAX_COUNTER_TOTAL",
    "MAX_DEFERRED_CONTEXTS",
    "MAX_FIELD_NAME_BYTES",
    "MAX_GSET_ELEMENTS",
    "MAX_HLL_PRECISION",
    "MAX_MAP_DEPTH",
    "MAX_MAP_FIELDS",
    "MAX_OP_ELEMENTS",
    "MAX_REGISTER_BYTES",
    "MAX_SET_ELEMENTS",
    "MAX_SET_ELEMENT_BYTES",
    "MIN_HLL_PRECISION",
    "TYPES",
    "CorruptDatatype",
    "Counter",
    "CounterOp",
    "CounterStore",
    "Datatype",
    "FieldKey",
    "Flag",
    "FlagOp",
    "FlagStore",
    "GSet",
    "HllOp",
    "HyperLogLog",
    "Map",
    "MapOp",
    "MapStore",
    "ORSet",
    "Op",
    "Register",
    "RegisterOp",
    "RegisterStore",
    "SetOp",
    "SetStore",
    "check_precision",
    "decode_context",
    "decode_datatype",
    "merge_datatypes",
    "new_datatype",
    "parse_field_name",
    "parse_op",
]
