"""PN-counter: value is the sum of increments minus decrements however replicas exchange state."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sapwood.core.crdt.counter as counter_module
from sapwood.core.crdt import CorruptDatatype, Counter, CounterOp, SetOp, parse_op
from sapwood.core.errors import BadRequest

ACTORS = [b"vnode-0", b"vnode-1", b"vnode-2"]


def test_increments_and_decrements() -> None:
    c = Counter.new()
    assert c.value() == 0
    c.update(parse_op("counter", {"increment": 10}), ACTORS[0], 0)
    c.update(parse_op("counter", {"decrement": 3}), ACTORS[1], 0)
    c.update(parse_op("counter", -2), ACTORS[0], 0)
    assert c.value() == 5
    assert c.context() == b""


def test_merge_takes_per_actor_maxima_not_sums() -> None:
    a = Counter.new().update(CounterOp(5), ACTORS[0], 0)
    b = a.copy().update(CounterOp(1), ACTORS[1], 0)
    assert a.merge(b).value() == 6
    assert a.merge(b).merge(b).merge(a).value() == 6


def test_total_per_actor_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counter_module, "MAX_COUNTER_TOTAL", 10)
    c = Counter.new().update(CounterOp(8), ACTORS[0], 0)
    with pytest.raises(BadRequest, match="exceed 10"):
        c.update(CounterOp(3), ACTORS[0], 0)
    assert c.value() == 8


def test_wrong_op_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="cannot update a counter"):
        Counter.new().update(SetOp(adds=(b"x",)), ACTORS[0], 0)


def test_damaged_encoding_is_reported() -> None:
    with pytest.raises(CorruptDatatype):
        Counter.decode(Counter.new().encode()[:1] + b"\x01\x91\x93\x01\x02\x03")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(-1000, 1000)), max_size=30),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), max_size=20),
    st.permutations(range(3)),
)
def test_value_is_sum_of_deltas_in_any_exchange_order(
    ops: list[tuple[int, int]], syncs: list[tuple[int, int]], order: list[int]
) -> None:
    replicas = [Counter.new() for _ in ACTORS]
    for step, (i, delta) in enumerate(ops):
        replicas[i].update(CounterOp(delta), ACTORS[i], 0)
        if step < len(syncs):
            dst, src = syncs[step]
            replicas[dst] = replicas[dst].merge(replicas[src])
    merged = reduce(Counter.merge, [replicas[i] for i in order])
    assert merged.value() == sum(delta for _, delta in ops)
    assert Counter.decode(merged.encode()) == merged
