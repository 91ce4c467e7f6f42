"""ORSWOT: add-wins observed-remove set semantics, contexts, preconditions, limits, encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sapwood.core.crdt.dots as dots_module
import sapwood.core.crdt.set as set_module
from sapwood.core.crdt import CorruptDatatype, CounterOp, ORSet, SetOp, parse_op
from sapwood.core.errors import BadRequest, PreconditionFailed

A, B, C = b"vnode-a", b"vnode-b", b"vnode-c"


def add(*xs: str) -> SetOp:
    return SetOp(adds=tuple(x.encode() for x in xs))


def remove(*xs: str) -> SetOp:
    return SetOp(removes=tuple(x.encode() for x in xs))


def test_adds_and_removes_show_as_sorted_text() -> None:
    s = ORSet.new().update(add("pear", "apple", "fig"), A, 0).update(remove("fig"), A, 0)
    assert s.value() == ["apple", "pear"]


def test_update_mutates_in_place_and_returns_the_same_set() -> None:
    s = ORSet.new()
    assert s.update(add("x"), A, 0) is s
    assert s.value() == ["x"]


def test_non_utf8_elements_survive_as_surrogate_escapes() -> None:
    s = ORSet.new().update(SetOp(adds=(b"\xff\xfe",)), A, 0)
    (text,) = s.value()
    assert text.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_add_and_remove_of_one_element_in_one_op_keeps_it() -> None:
    s = ORSet.new().update(add("x"), A, 0)
    s.update(SetOp(adds=(b"x",), removes=(b"x",)), B, 0)
    assert s.value() == ["x"]
    fresh = ORSet.new().update(parse_op("set", {"add": "y", "remove": "y"}), A, 0)
    assert fresh.value() == ["y"]


def test_remove_of_unseen_element_without_context_fails_and_changes_nothing() -> None:
    s = ORSet.new().update(add("x"), A, 0)
    before = s.encode()
    with pytest.raises(PreconditionFailed, match="not in the set"):
        s.update(SetOp(adds=(b"y",), removes=(b"x", b"ghost")), A, 0)
    assert s.encode() == before


def test_remove_with_context_of_absent_element_is_accepted() -> None:
    s = ORSet.new().update(add("x"), A, 0)
    s.update(remove("never-here"), A, 0, s.context())
    assert s.value() == ["x"]


def test_concurrent_add_survives_a_remove_that_did_not_observe_it() -> None:
    r1 = ORSet.new().update(add("x"), A, 0)
    r2 = r1.copy()
    r1.update(remove("x"), A, 0)
    r2.update(add("x"), B, 0)
    assert r1.merge(r2).value() == ["x"]
    assert r2.merge(r1).value() == ["x"]


def test_stale_context_remove_leaves_a_concurrent_add() -> None:
    r1 = ORSet.new().update(add("x"), A, 0)
    stale = r1.context()  # a client reads x
    r2 = r1.copy().update(add("x"), B, 0)  # someone re-adds x the client never saw
    r1 = r1.merge(r2)
    r1.update(remove("x"), A, 0, stale)
    assert r1.value() == ["x"]
    fresh = r1.context()
    r1.update(remove("x"), A, 0, fresh)
    assert r1.value() == []


def test_context_remove_reaching_a_replica_before_the_add_is_deferred() -> None:
    r1 = ORSet.new().update(add("x", "y"), A, 0)
    seen = r1.context()
    r2 = ORSet.new()  # has not received x yet
    r2.update(remove("x"), B, 0, seen)  # no precondition failure: the context saw x
    assert r2.deferred
    r2 = r2.merge(r1)
    assert r2.value() == ["y"]
    assert not r2.deferred  # the context is now covered, nothing left pending
    assert r1.merge(r2).value() == ["y"]


def test_remove_then_merge_does_not_resurrect() -> None:
    r1 = ORSet.new().update(add("x", "y"), A, 0)
    r2 = r1.copy()
    r1.update(remove("x"), A, 0)
    assert r1.merge(r2).value() == ["y"]
    assert r2.merge(r1).value() == ["y"]


def test_elements_carry_one_dot_each_not_a_version_vector() -> None:
    s = ORSet.new()
    for i in range(50):
        s.update(add(f"e{i}"), [A, B, C][i % 3], 0)
    entries = s.store.entries
    assert all(len(dots) == 1 for dots in entries.values())
    assert s.clock == {A: 17, B: 17, C: 16}


def test_update_of_a_large_set_touches_only_the_op() -> None:
    s = ORSet.new().update(SetOp(adds=tuple(b"%d" % i for i in range(10_000))), A, 0)
    entries = s.store.entries
    s.update(add("one-more"), B, 0)
    assert s.store.entries is entries  # in place: no copy of the 10,000 entries
    assert len(s.value()) == 10_001
    # Dot compression: 10,000 elements added in one op cost a few bytes each beyond the element.
    assert len(s.encode()) < sum(len(b"%d" % i) + 5 for i in range(10_001)) + 100


def test_set_size_limit_is_a_bad_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(set_module, "MAX_SET_ELEMENTS", 3)
    s = ORSet.new().update(add("a", "b"), A, 0)
    s.update(add("a", "c"), A, 0)  # "a" is already there
    with pytest.raises(BadRequest, match="more than 3"):
        s.update(add("d"), A, 0)
    assert s.value() == ["a", "b", "c"]


def test_deferred_removes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dots_module, "MAX_DEFERRED_CONTEXTS", 1)
    ahead1 = ORSet.new().update(add("x"), A, 0)
    ahead2 = ahead1.copy().update(add("y"), A, 0)
    s = ORSet.new()
    s.update(remove("x"), B, 0, ahead1.context())
    s.update(remove("x"), B, 0, ahead1.context())  # the same context joins its pending entry
    with pytest.raises(BadRequest, match="waiting"):
        s.update(remove("y"), B, 0, ahead2.context())


def test_wrong_op_type_and_bad_actor_are_bad_requests() -> None:
    with pytest.raises(BadRequest):
        ORSet.new().update(CounterOp(1), A, 0)
    with pytest.raises(BadRequest):
        ORSet.new().update(add("x"), b"", 0)


def test_malformed_context_is_a_bad_request() -> None:
    s = ORSet.new().update(add("x"), A, 0)
    for junk in (b"\x09garbage", b"\x01\xc1", b"\x01\x92\x01\x01"):
        with pytest.raises(BadRequest, match="context"):
            s.update(remove("x"), A, 0, junk)
    assert s.value() == ["x"]


def test_damaged_encoding_is_reported() -> None:
    good = ORSet.new().update(add("x"), A, 0).encode()
    for bad in (b"", good[:1], b"\x05" + good[1:], good[:1] + b"\x63" + good[2:], good[:-2]):
        with pytest.raises(CorruptDatatype):
            ORSet.decode(bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=30), st.lists(st.binary(max_size=8), max_size=10))
def test_round_trip_keeps_value_clock_and_context(adds: list[bytes], removes: list[bytes]) -> None:
    s = ORSet.new().update(SetOp(adds=tuple(dict.fromkeys(adds))), A, 0)
    s.update(SetOp(removes=tuple(dict.fromkeys(removes))), B, 0, s.context())
    decoded = ORSet.decode(s.encode())
    assert decoded.value() == s.value()
    assert decoded.clock == s.clock
    assert decoded.context() == s.context()
    assert decoded.elements() == set(adds) - set(removes)
