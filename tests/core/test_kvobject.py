"""Laws of causal merge: nothing concurrent is dropped, nothing superseded survives."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core import kvobject
from sapwood.core.causal import covers, decode_context, descends, encode_context
from sapwood.core.errors import BadRequest, Conflict
from sapwood.core.kvobject import KVObject, Metadata, apply_write, merge
from sapwood.core.limits import MAX_SIBLINGS

ACTORS = [b"vnode-%d" % i for i in range(3)]

# A step: (replica doing the write, replica whose state the client read first, or a merge).
step = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
)


def _run(steps: list[tuple[str, int, int]]) -> tuple[list[KVObject | None], set, set]:
    replicas: list[KVObject | None] = [None, None, None]
    written: set = set()
    superseded: set = set()
    for n, (kind, a, b) in enumerate(steps):
        if kind == "sync":
            replicas[a] = merge(replicas[a], replicas[b])
            continue
        read = replicas[b]
        context = dict(read.clock) if read else {}
        superseded |= {s.dot for s in read.siblings} if read else set()
        new = apply_write(replicas[a], context, b"w%d" % n, Metadata(), ACTORS[a], n,
                          allow_mult=True)
        written.add(new.siblings[-1].dot)
        replicas[a] = new
    return replicas, written, superseded


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=25))
def test_merge_keeps_exactly_the_unsuperseded_writes(steps: list[tuple[str, int, int]]) -> None:
    replicas, written, superseded = _run(steps)
    final = reduce(lambda x, y: merge(x, y), replicas, None)
    dots = {s.dot for s in final.siblings} if final else set()
    assert dots == written - superseded


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=20), st.permutations([0, 1, 2]))
def test_merge_is_commutative_associative_idempotent(steps: list, order: list[int]) -> None:
    replicas, _, _ = _run(steps)
    a, b, c = (replicas[i] for i in order)
    assert kvobject.equivalent(merge(a, b), merge(b, a))
    assert kvobject.equivalent(merge(merge(a, b), c), merge(a, merge(b, c)))
    assert kvobject.equivalent(merge(a, a), a)


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=20))
def test_sibling_count_bounded_by_concurrent_writes(steps: list) -> None:
    replicas, written, superseded = _run(steps)
    for replica in replicas:
        if replica is not None:
            assert len(replica.siblings) <= len(written - superseded) + len(superseded)
            for sibling in replica.siblings:
                assert covers(replica.clock, sibling.dot)


def test_encode_round_trip() -> None:
    meta = Metadata(content_type="text/plain", charset="utf-8", usermeta=(("X-Riak-Meta-A", "1"),),
                    indexes=(("a_bin", "x"), ("n_int", 5)), links=(("b", "k", "tag"),))
    obj = apply_write(None, {}, b"\x00\xffdata", meta, ACTORS[0], 42, allow_mult=True)
    again = kvobject.decode(kvobject.encode(obj))
    assert again == obj


def test_context_round_trip_and_malformed() -> None:
    clock = {ACTORS[0]: 3, ACTORS[1]: 1}
    assert decode_context(encode_context(clock)) == clock
    assert decode_context("") == {}
    for bad in ("not base64!", "aGVsbG8=", encode_context(clock)[:-4]):
        with pytest.raises(BadRequest):
            decode_context(bad)


def test_descends() -> None:
    assert descends({b"a": 2, b"b": 1}, {b"a": 1})
    assert not descends({b"a": 1}, {b"a": 1, b"b": 1})


def test_sibling_limit() -> None:
    obj = None
    for i in range(MAX_SIBLINGS):
        obj = apply_write(obj, {}, b"%d" % i, Metadata(), ACTORS[0], i, allow_mult=True)
    with pytest.raises(Conflict):
        apply_write(obj, {}, b"x", Metadata(), ACTORS[0], 0, allow_mult=True)


def test_last_write_wins_replaces_concurrent_siblings() -> None:
    obj = apply_write(None, {}, b"a", Metadata(), ACTORS[0], 1, allow_mult=True)
    obj = apply_write(obj, {}, b"b", Metadata(), ACTORS[0], 2, allow_mult=True,
                      last_write_wins=True)
    assert [s.value for s in obj.siblings] == [b"b"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=70_000), st.integers(0, 2)), min_size=1, max_size=18))
def test_encoding_is_plain_msgpack_of_the_wire_form(writes: list[tuple[bytes, int]]) -> None:
    import msgpack

    obj = None
    for n, (value, actor) in enumerate(writes):
        obj = apply_write(obj, {}, value, Metadata(indexes=(("n_int", n),)), ACTORS[actor], n,
                          allow_mult=True)
    assert obj is not None
    fresh = KVObject(obj.siblings, obj.clock)  # no memoised form yet
    assert kvobject.encode(fresh) == msgpack.packb(kvobject.to_wire(fresh), use_bin_type=True)
    assert kvobject.decode(kvobject.encode(fresh)) == fresh


def test_vtags_are_printable_base62_named_by_the_dot() -> None:
    from sapwood.core.causal import Dot

    tags = {kvobject.make_vtag(Dot(actor, n)) for actor in ACTORS for n in range(1, 200)}
    assert len(tags) == len(ACTORS) * 199  # distinct dots, distinct tags
    assert all(len(t) == 16 and t.isascii() and t.isalnum() for t in tags)
    assert kvobject.make_vtag(Dot(ACTORS[0], 7)) == kvobject.make_vtag(Dot(ACTORS[0], 7))


def test_decode_cache_holds_its_budget_and_lets_the_oldest_go() -> None:
    encoded = []
    for n in range(40):
        obj = apply_write(None, {}, b"v%d" % n * 20, Metadata(), ACTORS[0], n, allow_mult=True)
        encoded.append(kvobject.encode(obj))
    cost = 2 * len(encoded[0]) + kvobject.DECODE_ENTRY_OVERHEAD_BYTES
    cache = kvobject.DecodeCache(budget_bytes=10 * cost)
    decoded = [cache.decode(data) for data in encoded]
    assert cache.held_bytes <= cache.budget_bytes
    assert cache.decode(encoded[-1]) is decoded[-1]  # held: the very same object
    again = cache.decode(encoded[0])  # long pushed out: decoded anew, equal
    assert again == decoded[0] and again is not decoded[0]


def test_decode_cache_does_not_keep_large_objects() -> None:
    big = apply_write(None, {}, b"x" * (kvobject.DECODE_CACHE_MAX_BYTES + 1), Metadata(),
                      ACTORS[0], 1, allow_mult=True)
    data = kvobject.encode(big)
    cache = kvobject.DecodeCache()
    cache.remember(data, big)
    assert cache.held_bytes == 0 and cache.decode(data) == big
