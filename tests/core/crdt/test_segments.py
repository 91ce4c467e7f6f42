"""Segmented encoding: cached segment bytes always equal a fresh encoding, updates re-encode only
the segments they touch, and the older flat format still decodes."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sapwood.core.crdt import (
    CorruptDatatype,
    FieldKey,
    Map,
    MapOp,
    ORSet,
    RegisterOp,
    SetOp,
    decode_datatype,
)
from sapwood.core.crdt import map as map_module
from sapwood.core.crdt import segments as segments_module
from sapwood.core.crdt import set as set_module
from sapwood.core.crdt.dots import FORMAT_VERSION, pack
from sapwood.core.crdt.map import SHORT_REGISTER_CODE
from sapwood.core.crdt.segments import MAX_SEGMENTS, array_header, segment_count
from sapwood.core.errors import PreconditionFailed

# tiny_segments only patches a pure function: sharing it between examples is what is wanted.
FIXTURE_REUSED = HealthCheck.function_scoped_fixture
ACTORS = [b"vnode-0", b"vnode-1", b"vnode-2"]
ELEMENTS = [b"e%d" % i for i in range(12)]


@pytest.fixture
def tiny_segments() -> Iterator[None]:
    """Four segments whatever the size, in two groups, compressed whatever their size: small
    states are split and compressed, and the split never changes (a new count rebuilds every
    segment, which would hide a stale one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(segments_module, "segment_count", lambda entries, target: 4)
        mp.setattr(segments_module, "GROUP_SEGMENTS", 2)
        mp.setattr(segments_module, "MIN_COMPRESSED_GROUPS", 2)
        mp.setattr(segments_module, "COMPRESS_MIN_BYTES", 0)
        yield


def test_segment_count_is_a_bounded_power_of_two() -> None:
    assert [segment_count(n, 4) for n in (0, 1, 4, 5, 8, 9, 17)] == [1, 1, 1, 2, 2, 4, 8]
    assert segment_count(10**9, 1) == MAX_SEGMENTS


@pytest.mark.parametrize("length", [0, 1, 15, 16, 65_535, 65_536])
def test_array_header_is_msgpacks_own(length: int) -> None:
    assert array_header(length) == msgpack.packb([None] * length)[: len(array_header(length))]


# --- cached bytes equal fresh ones, through any history -----------------------------------------

elements = st.lists(st.sampled_from(ELEMENTS), max_size=4, unique=True).map(tuple)
set_ops = st.builds(SetOp, elements, elements).filter(lambda op: op.adds or op.removes)
keys = [FieldKey(f"f{i}", kind) for i in range(2) for kind in ("set", "register", "map")]


def map_op(depth: int = 0) -> st.SearchStrategy[MapOp]:
    def sub(key: FieldKey) -> st.SearchStrategy[Any]:
        if key.type == "set":
            return set_ops
        if key.type == "register":
            return st.sampled_from([b"x", b"y"]).map(RegisterOp)
        return map_op(depth + 1) if depth < 1 else set_ops.map(
            lambda op: MapOp(updates=((FieldKey("s", "set"), op),)))

    usable = [k for k in keys if depth < 1 or k.type != "map"]
    update = st.sampled_from(usable).flatmap(lambda k: sub(k).map(lambda op: (k, op)))
    removes = st.lists(st.sampled_from(usable), min_size=1, max_size=2, unique=True)
    remove_only = removes.map(lambda keys: MapOp(removes=tuple(keys)))
    mixed = st.builds(
        lambda removes, updates: MapOp(tuple(removes), tuple(dict(updates).items())),
        st.lists(st.sampled_from(usable), max_size=2, unique=True),
        st.lists(update, max_size=3),
    ).filter(lambda op: bool(op.removes or op.updates))
    return st.one_of(mixed, mixed, remove_only)


def steps(ops: st.SearchStrategy[Any]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    context_from = st.none() | st.integers(0, 2)  # the replica a client read its context from
    op_step = st.tuples(st.just("op"), st.integers(0, 2), ops, context_from)
    sync_step = st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2))
    encode_step = st.tuples(st.just("encode"), st.integers(0, 2))
    return st.lists(st.one_of(op_step, op_step, sync_step, encode_step), max_size=25)


def check_cached_encoding(state: Any) -> None:
    fresh = state.copy()  # copies carry no cached segments
    assert state.encode() == fresh.encode()
    decoded = decode_datatype(state.encode())
    assert decoded.value() == state.value()
    assert decoded.encode() == state.encode()


def replay(new: Any, history: list[tuple[Any, ...]]) -> None:
    replicas = [new() for _ in ACTORS]
    for step in history:
        if step[0] == "sync":
            replicas[step[1]] = replicas[step[1]].merge(replicas[step[2]])
        elif step[0] == "encode":
            replicas[step[1]].encode()  # fills the caches the next steps must keep right
        else:
            _, i, op, context_from = step
            context = None if context_from is None else replicas[context_from].context()
            try:
                replicas[i].update(op, ACTORS[i], 0, context)
            except PreconditionFailed:
                pass
        for replica in replicas:
            check_cached_encoding(replica)


@settings(max_examples=80, deadline=None, suppress_health_check=[FIXTURE_REUSED])
@given(history=steps(set_ops))
def test_set_cached_segments_match_a_fresh_encoding(tiny_segments: None,
                                                    history: list[tuple[Any, ...]]) -> None:
    replay(ORSet.new, history)


@settings(max_examples=150, deadline=None, suppress_health_check=[FIXTURE_REUSED])
@given(history=steps(map_op()))
def test_map_cached_segments_match_a_fresh_encoding(tiny_segments: None,
                                                    history: list[tuple[Any, ...]]) -> None:
    replay(Map.new, history)


def test_removes_with_a_context_keep_the_cache_right(tiny_segments: None) -> None:
    fields = tuple((FieldKey(name, "register"), RegisterOp(b"x")) for name in "abc")
    m = Map.new().update(MapOp(updates=fields), ACTORS[0], 0)
    s = ORSet.new().update(SetOp(adds=(b"a", b"b", b"c")), ACTORS[0], 0)
    for state, op in ((m, MapOp(removes=(FieldKey("a", "register"),))),
                      (s, SetOp(removes=(b"a",)))):
        state.encode()
        state.update(op, ACTORS[0], 1, state.context())
        check_cached_encoding(state)
        assert len(state.value()) == 2


# --- an update re-encodes only what it touched ------------------------------------------------


def count_segment_encodes(monkeypatch: pytest.MonkeyPatch, store_class: Any) -> list[int]:
    calls: list[int] = []
    original = store_class._encode_segment

    def counting(self: Any, *args: Any) -> bytes:
        calls.append(1)
        encoded: bytes = original(self, *args)
        return encoded

    monkeypatch.setattr(store_class, "_encode_segment", counting)
    return calls


def test_an_add_to_a_large_set_re_encodes_one_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ORSet.new().update(SetOp(adds=tuple(b"m-%d" % i for i in range(10_000))), ACTORS[0], 0)
    calls = count_segment_encodes(monkeypatch, set_module.SetStore)
    s.encode()
    assert len(calls) == segment_count(10_000, set_module.SET_SEGMENT_TARGET) > 1
    calls.clear()
    s.update(SetOp(adds=(b"one-more",)), ACTORS[0], 0)
    s.update(SetOp(removes=(b"m-7",)), ACTORS[0], 0)
    encoded = s.encode()
    assert len(calls) <= 2
    assert encoded == s.copy().encode()
    calls.clear()
    s.update(SetOp(adds=(b"from-a-new-actor",)), ACTORS[1], 0)
    s.encode()  # actor indexes moved: every segment again
    assert len(calls) == segment_count(10_000, set_module.SET_SEGMENT_TARGET)


def test_a_field_update_in_a_large_map_re_encodes_one_segment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fill = tuple((FieldKey(f"f{i}", "register"), RegisterOp(b"v")) for i in range(2_000))
    m = Map.new().update(MapOp(updates=fill), ACTORS[0], 0)
    m.encode()
    calls = count_segment_encodes(monkeypatch, map_module.MapStore)
    m.update(MapOp(updates=((FieldKey("f5", "register"), RegisterOp(b"w")),)), ACTORS[0], 1)
    encoded = m.encode()
    assert len(calls) == 1
    assert encoded == m.copy().encode()
    assert m.value()["f5_register"] == "w"


# --- the flat format of version 1 -------------------------------------------------------------


def test_version_1_flat_encodings_still_decode() -> None:
    a, b = ACTORS[0], ACTORS[1]
    flat_set = [[b"x", b"y"], [1, 2], [0, 1, 0, 2, 1, 1]]
    old_set = pack(ORSet.TAG, [[a, b], [2, 1], flat_set, []])
    assert old_set[1] == FORMAT_VERSION == 1
    s = decode_datatype(old_set)
    assert s.value() == ["x", "y"]
    assert decode_datatype(s.encode()).value() == ["x", "y"]

    register = [[0, 1, 5, a, b"v"]]  # writer spelled out; the type name spelled out
    old_map = pack(Map.TAG, [[a], [2], [["n", "register", [0, 1], register],
                                        ["s", "set", [0, 2], [[b"q"], [1], [0, 2]]]], []])
    m = decode_datatype(old_map)
    assert m.value() == {"n_register": "v", "s_set": ["q"]}
    assert decode_datatype(m.encode()).encode() == m.encode()


# --- version 2 (long register fields) and version 3 (short ones) -------------------------------


def test_maps_write_version_3_with_short_register_fields() -> None:
    key = FieldKey("name", "register")
    m = Map.new().update(MapOp(updates=((key, RegisterOp(b"v")),)), ACTORS[0], 7)
    data = m.encode()
    assert data[1] == 3
    _, _, store, _ = msgpack.unpackb(data[2:])
    assert store[0] == 1  # one segment
    [field] = store[1]
    assert field == ["name", SHORT_REGISTER_CODE, 0, 1, 7, b"v"]
    assert decode_datatype(data).encode() == data


def test_registers_the_short_form_cannot_say_round_trip() -> None:
    key = FieldKey("r", "register")
    a = Map.new().update(MapOp(updates=((key, RegisterOp(b"late")),)), ACTORS[0], 100)
    b = Map.new().update(MapOp(updates=((key, RegisterOp(b"early")),)), ACTORS[1], 5)
    concurrent = a.merge(b)  # two assignments under two touches
    kept = Map.new().update(MapOp(updates=((key, RegisterOp(b"new")),)), ACTORS[0], 100)
    kept.update(MapOp(updates=((key, RegisterOp(b"old")),)), ACTORS[1], 1)  # re-tags the winner
    for state, value in ((concurrent, "late"), (kept, "new")):
        decoded = decode_datatype(state.encode())
        assert decoded.value() == {"r_register": value}
        assert decoded.encode() == state.encode()
        assert decoded.merge(state).value() == state.value()


def test_version_2_maps_still_decode() -> None:
    a, b = ACTORS[0], ACTORS[1]
    register = [[0, 1, 5, 0, b"v"]]  # the long form: the touch's dot and writer spelled out
    segment = [["n", 2, [0, 1], register], ["s", 1, [0, 2], [[b"q"], [0, 2]]]]
    old_map = bytes([Map.TAG, 2]) + msgpack.packb(
        [[a, b], [2, 1], [1, segment], []], use_bin_type=True)
    m = decode_datatype(old_map)
    assert m.value() == {"n_register": "v", "s_set": ["q"]}
    assert m.encode()[1] == 3
    assert decode_datatype(m.encode()).value() == m.value()
    s = decode_datatype(bytes([ORSet.TAG, 2]) + msgpack.packb(
        [[a], [2], [2, [[b"x"], [0, 1]], [[b"y"], [0, 2]]], []], use_bin_type=True))
    assert s.value() == ["x", "y"]


@pytest.mark.parametrize("field", [
    ["n", SHORT_REGISTER_CODE, -1, 1, 5, b"v"],  # negative actor index
    ["n", SHORT_REGISTER_CODE, 0, 0, 5, b"v"],  # counter not positive
    ["n", SHORT_REGISTER_CODE, 0, 1, "5", b"v"],  # timestamp not an integer
    ["n", SHORT_REGISTER_CODE, 0, 1, 5, "v"],  # value not bytes
    [1, SHORT_REGISTER_CODE, 0, 1, 5, b"v"],  # name not text
])
def test_damaged_short_register_fields_are_refused(field: list[Any]) -> None:
    data = bytes([Map.TAG, 3]) + msgpack.packb([[ACTORS[0]], [1], [1, [field]], []],
                                               use_bin_type=True)
    with pytest.raises(CorruptDatatype):
        decode_datatype(data)


# --- compressed groups of segments (version 3) --------------------------------------------------


def test_a_large_set_is_stored_compressed_and_updates_keep_it_right() -> None:
    s = ORSet.new().update(SetOp(adds=tuple(b"member-%09d" % i for i in range(10_000))),
                           ACTORS[0], 0)
    data = s.encode()
    assert data[1] == 3
    assert len(data) < 8 * 10_000  # 16-byte elements: compressed, several times smaller
    _, _, store, _ = msgpack.unpackb(data[2:])
    assert any(isinstance(item, msgpack.ExtType) for item in store[1:])
    s.update(SetOp(adds=(b"one-more",), removes=(b"member-000000007",)), ACTORS[0], 0)
    assert s.encode() == s.copy().encode()
    assert decode_datatype(s.encode()).value() == s.value()


def compressed_set(group: bytes, count: int = 1) -> bytes:
    store = [count, msgpack.ExtType(segments_module.COMPRESSED_GROUP_EXT, group)]
    return bytes([ORSet.TAG, 3]) + msgpack.packb([[ACTORS[0]], [1], store, []],
                                                 use_bin_type=True)


def test_a_well_formed_compressed_group_decodes() -> None:
    segment = msgpack.packb([[b"x"], [0, 1]], use_bin_type=True)
    assert decode_datatype(compressed_set(zlib.compress(segment))).value() == ["x"]


@pytest.mark.parametrize("data", [
    compressed_set(b"not zlib"),
    compressed_set(zlib.compress(msgpack.packb([[b"x"], [0, 1]]))[:-3]),  # truncated
    compressed_set(zlib.compress(msgpack.packb([[b"x"], [0, 1]])), count=2),  # wrong count
    compressed_set(zlib.compress(msgpack.packb([[b"x"], [0, 1]])) + b"junk"),
    bytes([ORSet.TAG, 3]) + msgpack.packb(
        [[ACTORS[0]], [1], [1, msgpack.ExtType(9, b"")], []]),  # unknown group type
])
def test_damaged_compressed_groups_are_refused(data: bytes) -> None:
    with pytest.raises(CorruptDatatype):
        decode_datatype(data)


def test_groups_inflating_beyond_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    segment = msgpack.packb([[b"x" * 100], [0, 1]], use_bin_type=True)
    groups = [msgpack.ExtType(segments_module.COMPRESSED_GROUP_EXT, zlib.compress(
        msgpack.packb([[name * 100], [0, 1]], use_bin_type=True))) for name in (b"x", b"y")]
    two_groups = bytes([ORSet.TAG, 3]) + msgpack.packb([[ACTORS[0]], [1], [2, *groups], []],
                                                       use_bin_type=True)
    assert len(decode_datatype(two_groups).value()) == 2
    monkeypatch.setattr(segments_module, "MAX_INFLATED_BYTES", len(segment) + 10)
    with pytest.raises(CorruptDatatype):
        decode_datatype(two_groups)  # each fits, not both
    monkeypatch.setattr(segments_module, "MAX_INFLATED_BYTES", 50)
    with pytest.raises(CorruptDatatype):
        decode_datatype(compressed_set(zlib.compress(segment)))
