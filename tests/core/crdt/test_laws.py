"""Laws every data type keeps: merge is a join (commutative, associative, idempotent), replicas that
apply ops in any interleaving and exchange states converge, and the converged value matches a
model of the type's semantics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.crdt import (
    CorruptDatatype,
    Counter,
    CounterOp,
    FieldKey,
    Flag,
    FlagOp,
    GSet,
    HllOp,
    HyperLogLog,
    Map,
    MapOp,
    Op,
    ORSet,
    Register,
    RegisterOp,
    SetOp,
    decode_context,
    decode_datatype,
)
from sapwood.core.errors import PreconditionFailed

ACTORS = [b"vnode-0", b"vnode-1", b"vnode-2"]
ELEMENTS = [b"a", b"b", b"c", b"d"]

elements = st.lists(st.sampled_from(ELEMENTS), max_size=3, unique=True).map(tuple)
set_ops = st.builds(SetOp, elements, elements).filter(lambda op: op.adds or op.removes)
counter_ops = st.integers(-5, 5).map(CounterOp)
register_ops = st.sampled_from([b"x", b"y", b"z"]).map(RegisterOp)
flag_ops = st.booleans().map(FlagOp)


def map_ops(depth: int = 0) -> st.SearchStrategy[Op]:
    subs: dict[str, st.SearchStrategy[Any]] = {
        "counter": counter_ops,
        "set": set_ops,
        "register": register_ops,
        "flag": flag_ops,
    }
    if depth < 2:
        subs["map"] = st.deferred(lambda: map_ops(depth + 1))
    keys = [FieldKey(name, kind) for name in ("a", "b") for kind in subs]
    update = st.sampled_from(keys).flatmap(lambda k: subs[k.type].map(lambda op: (k, op)))
    return st.builds(
        lambda removes, updates: MapOp(tuple(removes), tuple(dict(updates).items())),
        st.lists(st.sampled_from(keys), max_size=2, unique=True),
        st.lists(update, max_size=3),
    ).filter(lambda op: op.removes or op.updates)


@dataclass
class Event:
    op: Any
    actor: bytes
    dot: int  # the op's dot counter (causal types)
    now_ms: int
    observed: dict[bytes, int]  # what a remove in this op could see


@dataclass
class Kind:
    name: str
    new: Callable[[], Any]
    ops: st.SearchStrategy[Any]
    causal: bool
    model: Callable[[list[Event]], Any] | None = None


def counter_model(events: list[Event]) -> int:
    return sum(e.op.delta for e in events)


def gset_model(events: list[Event]) -> list[str]:
    return sorted({x.decode() for e in events for x in e.op.adds})


def hll_model(events: list[Event]) -> int:
    every = tuple(x for e in events for x in e.op.adds)
    return HyperLogLog.new(8).update(HllOp(every), ACTORS[0], 0).value()


def covered(event: Event, by: Event) -> bool:
    return by.observed.get(event.actor, 0) >= event.dot


def orset_model(events: list[Event]) -> list[str]:
    """An element is present iff some add of it was observed by no remove of it."""
    present = set()
    for add in events:
        for x in add.op.adds:
            if not any(x in rm.op.removes and covered(add, rm) for rm in events):
                present.add(x.decode())
    return sorted(present)


def flag_model(events: list[Event]) -> bool:
    enables = [e for e in events if e.op.enable]
    disables = [e for e in events if not e.op.enable]
    return any(not any(covered(en, d) for d in disables) for en in enables)


def register_model(events: list[Event]) -> str | None:
    writes = [(e.now_ms, e.actor, e.op.value) for e in events]
    return max(writes)[2].decode() if writes else None


def map_effects(op: MapOp, prefix: tuple[FieldKey, ...] = ()) -> list[tuple[str, Any, Any]]:
    """Flatten a map op into (effect, field path, detail) records."""
    out: list[tuple[str, Any, Any]] = [("drop", (*prefix, key), None) for key in op.removes]
    for key, sub in op.updates:
        path = (*prefix, key)
        out.append(("touch", path, None))
        if isinstance(sub, MapOp):
            out += map_effects(sub, path)
        elif isinstance(sub, SetOp):
            out += [("rm", path, x) for x in sub.removes] + [("add", path, x) for x in sub.adds]
        elif isinstance(sub, FlagOp):
            out.append(("enable" if sub.enable else "disable", path, None))
    return out


def map_model(events: list[Event]) -> dict[str, Any]:
    """Fields, set elements and flags survive iff some update of them was unobserved by every
    remove of them or of an enclosing field. Counters and registers are masked (see test_map)."""
    effects = [(e, kind, path, x) for e in events for kind, path, x in map_effects(e.op)]

    def survives(e: Event, path: tuple[FieldKey, ...], killers: set[str], x: Any = None) -> bool:
        for r, kind, rpath, rx in effects:
            dropped = kind == "drop" and path[: len(rpath)] == rpath
            if (dropped or (kind in killers and rpath == path and rx == x)) and covered(e, r):
                return False
        return True

    def build(prefix: tuple[FieldKey, ...]) -> dict[str, Any]:
        value: dict[str, Any] = {}
        keys = {p[len(prefix)] for _, k, p, _ in effects if k == "touch" and len(p) > len(prefix)}
        for key in sorted(keys):
            path = (*prefix, key)
            if not any(
                k == "touch" and p == path and survives(e, path, set()) for e, k, p, _ in effects
            ):
                continue
            if key.type == "set":
                adds = [(e, x) for e, k, p, x in effects if k == "add" and p == path]
                value[key.json_name] = sorted(
                    {x.decode() for e, x in adds if survives(e, path, {"rm"}, x)}
                )
            elif key.type == "flag":
                value[key.json_name] = any(
                    survives(e, path, {"disable"})
                    for e, k, p, _ in effects
                    if k == "enable" and p == path
                )
            elif key.type == "map":
                value[key.json_name] = build(path)
            else:
                value[key.json_name] = "masked"
        return value

    return build(())


def mask_scalars(value: dict[str, Any]) -> dict[str, Any]:
    return {
        k: mask_scalars(v)
        if isinstance(v, dict)
        else "masked"
        if k.endswith(("_counter", "_register"))
        else v
        for k, v in value.items()
    }


KINDS = [
    Kind("counter", Counter.new, counter_ops, False, counter_model),
    Kind("gset", GSet.new, elements.filter(bool).map(lambda xs: SetOp(xs)), False, gset_model),
    Kind("hll", lambda: HyperLogLog.new(8), elements.filter(bool).map(HllOp), False, hll_model),
    Kind("set", ORSet.new, set_ops, True, orset_model),
    Kind("flag", Flag.new, flag_ops, True, flag_model),
    Kind("register", Register.new, register_ops, True, register_model),
    Kind("map", Map.new, map_ops(), True, map_model),
]


def steps_for(kind: Kind) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    op_step = st.tuples(
        st.just("op"),
        st.integers(0, 2),  # replica
        kind.ops,
        st.integers(0, 4),  # now_ms: small, so timestamps tie
        st.none() | st.integers(0, 2),  # the replica the client read its context from
    )
    sync_step = st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2))
    return st.lists(st.one_of(op_step, op_step, sync_step), min_size=2, max_size=16)


def run(kind: Kind, history: list[tuple[Any, ...]]) -> tuple[list[Any], list[Event]]:
    """Apply ops at the chosen replicas, with stale contexts, exchanging states as told."""
    replicas = [kind.new() for _ in ACTORS]
    events = []
    for step in history:
        if step[0] == "sync":
            _, i, j = step
            replicas[i] = replicas[i].merge(replicas[j])
            continue
        _, i, op, now_ms, ctx_from = step
        context = replicas[ctx_from].context() if kind.causal and ctx_from is not None else None
        before = replicas[i].encode()
        observed = decode_context(context) if context else dict(getattr(replicas[i], "clock", {}))
        try:
            replicas[i].update(op, ACTORS[i], now_ms, context)
        except PreconditionFailed:
            assert replicas[i].encode() == before, "a refused op changed the state"
            continue
        dot = replicas[i].clock[ACTORS[i]] if kind.causal else 0
        events.append(Event(op, ACTORS[i], dot, now_ms, observed))
    return replicas, events


def history_for(kind: Kind) -> st.SearchStrategy[tuple[list[Any], list[Event]]]:
    return steps_for(kind).map(lambda history: run(kind, history))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_replicas_converge_to_the_modelled_value(kind: Kind, data: st.DataObject) -> None:
    replicas, events = data.draw(history_for(kind))
    order = data.draw(st.permutations(range(len(replicas))))
    merged = reduce(lambda acc, r: acc.merge(r), [replicas[i] for i in order])
    other = reduce(lambda acc, r: acc.merge(r), reversed(replicas))
    assert merged.encode() == other.encode()
    for replica in replicas:
        assert replica.merge(merged).encode() == merged.encode()
    if kind.model is not None:
        value = mask_scalars(merged.value()) if kind.name == "map" else merged.value()
        assert value == kind.model(events)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_is_commutative_associative_idempotent(kind: Kind, data: st.DataObject) -> None:
    (a, b, c), _ = data.draw(history_for(kind))
    encoded = [x.encode() for x in (a, b, c)]
    assert a.merge(b).encode() == b.merge(a).encode()
    assert a.merge(b).merge(c).encode() == a.merge(b.merge(c)).encode()
    assert a.merge(a).encode() == a.encode()
    assert a.merge(b).value() == b.merge(a).value()
    assert [x.encode() for x in (a, b, c)] == encoded, "merge changed an input"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_merged_state_shares_nothing_mutable_with_inputs(kind: Kind, data: st.DataObject) -> None:
    (a, b, _), _ = data.draw(history_for(kind))
    encoded = (a.encode(), b.encode())
    merged = a.merge(b)
    copied = a.copy()
    for op in data.draw(st.lists(kind.ops, min_size=1, max_size=4)):
        for state in (merged, copied):
            try:
                state.update(op, ACTORS[2], 9, None)
            except PreconditionFailed:
                pass
    assert (a.encode(), b.encode()) == encoded


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(kind: Kind, data: st.DataObject) -> None:
    replicas, _ = data.draw(history_for(kind))
    for replica in replicas:
        decoded = decode_datatype(replica.encode())
        assert type(decoded) is type(replica)
        assert decoded.encode() == replica.encode()
        assert decoded.value() == replica.value()
        assert decoded.context() == replica.context()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_damaged_bytes_decode_to_a_usable_state_or_corrupt_datatype(
    kind: Kind, data: st.DataObject
) -> None:
    replicas, _ = data.draw(history_for(kind))
    raw = bytearray(replicas[0].encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at:]
        else:
            raw.insert(at, data.draw(st.integers(0, 255)))
    try:
        state = decode_datatype(bytes(raw))
    except CorruptDatatype:
        return
    state.value()
    state.context()
    assert decode_datatype(state.encode()).encode() == state.encode()
