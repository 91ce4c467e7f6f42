"""Data types on top of the KV object: how a CRDT is stored, updated and read.

A datatype object is an ordinary KVObject whose siblings hold encoded CRDT states, so replication,
handoff and read repair need nothing new. Concurrent updates through different vnodes can leave
several siblings on disk for a while; every read and every update joins them into one state
(Riak's approach), so clients never see siblings in a datatype bucket.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sapwood.core.causal import Dot
from sapwood.core.crdt import CorruptDatatype, Datatype, decode_datatype, merge_datatypes, new_datatype
from sapwood.core.crdt.ops import Op
from sapwood.core.errors import BadRequest, Conflict
from sapwood.core.kvobject import KVObject, Metadata, apply_write
from sapwood.core.ring import BKey

CONTENT_TYPE = "application/x-sapwood-datatype"
LEGACY_COUNTER_CONTENT_TYPE = "application/riak_counter"
STATE_CACHE_ENTRIES = 1024


def join_state(obj: KVObject | None, type_name: str | None = None) -> Datatype | None:
    """The one state a (possibly sibling-holding) datatype object stands for; None if absent."""
    if obj is None:
        return None
    state: Datatype | None = None
    for sibling in obj.live_siblings:
        decoded = decode_datatype(sibling.value)
        state = decoded if state is None else merge_datatypes(state, decoded)
    if state is None and type_name is not None:
        return None
    return state


CacheKey = tuple[BKey, Dot]


class StateCache:
    """Decoded states by (key, dot of the sibling holding them), so successive updates of a
    large set or map do not decode it again each time. A dot names one value everywhere.

    States are mutable (updates apply in place): `take` hands the state over and forgets it, and
    the updater `put`s the new state back under its new dot.
    """

    def __init__(self, limit: int = STATE_CACHE_ENTRIES) -> None:
        self.limit = limit
        # take/put churn leaves a plain dict's front full of deleted slots, which makes finding
        # its oldest entry slow; an OrderedDict evicts in constant time.
        self._states: OrderedDict[CacheKey, Datatype] = OrderedDict()

    def take(self, key: CacheKey, encoded: bytes) -> Datatype:
        state = self._states.pop(key, None)
        return decode_datatype(encoded) if state is None else state

    def put(self, key: CacheKey, state: Datatype) -> None:
        if len(self._states) >= self.limit:
            self._states.popitem(last=False)
        self._states[key] = state


def apply_update(
    current: KVObject | None, bkey: BKey, type_name: str, op: Op, context: bytes | None,
    actor: bytes,
    now_ms: int, *, hll_precision: int, cache: StateCache, legacy: bool = False,
) -> KVObject:
    """Apply a data type operation at the coordinating vnode, as a write that replaces every
    sibling it joined (its context is the object's whole clock)."""
    live = current.live_siblings if current is not None else ()
    state: Any = None
    try:
        if len(live) == 1:
            state = cache.take((bkey, live[0].dot), live[0].value)
        for sibling in live if len(live) > 1 else ():
            decoded = decode_datatype(sibling.value)
            state = decoded if state is None else merge_datatypes(state, decoded)
    except CorruptDatatype:
        raise Conflict(f"{bkey.key!r} holds a plain object, not a {type_name}; delete it first "
                       "or use another key") from None
    if state is None:
        state = new_datatype(type_name, hll_precision)
    elif state.type_name != type_name:
        raise BadRequest(f"the stored value is a {state.type_name}, not a {type_name}")
    try:
        state.update(op, actor, now_ms, context or None)
    except Exception:
        if len(live) == 1:
            cache.put((bkey, live[0].dot), state)  # unchanged: updates are all-or-nothing
        raise
    ctype = LEGACY_COUNTER_CONTENT_TYPE if legacy else CONTENT_TYPE
    clock = dict(current.clock) if current is not None else {}
    new = apply_write(current, clock, state.encode(), Metadata(content_type=ctype), actor,
                      now_ms, allow_mult=True)
    cache.put((bkey, new.siblings[-1].dot), state)
    return new


def is_datatype_object(obj: KVObject) -> bool:
    return any(s.meta.content_type in (CONTENT_TYPE, LEGACY_COUNTER_CONTENT_TYPE)
               for s in obj.live_siblings)
