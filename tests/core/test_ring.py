from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sapwood.core.ring import BKey, Ring, decode_bkey, encode_bkey, validate_ring_size

names = st.text(min_size=1, max_size=20)


@given(names, names, names)
def test_bkey_encoding_round_trips(t: str, b: str, k: str) -> None:
    assert decode_bkey(encode_bkey(BKey(t, b, k))) == BKey(t, b, k)


@given(names, names)
def test_preflist_is_n_consecutive_partitions(b: str, k: str) -> None:
    ring = Ring(tuple(f"n{i % 4}" for i in range(64)))
    pl = ring.primaries(BKey("default", b, k), 3)
    assert [(e.partition - pl[0].partition) % 64 for e in pl] == [0, 1, 2]
    assert len({e.node for e in pl}) == 3


def test_fallbacks_replace_down_primaries() -> None:
    ring = Ring(tuple(f"n{i % 4}" for i in range(16)))
    key = BKey("default", "b", "k")
    primaries = ring.primaries(key, 3)
    down = primaries[1].node
    up = frozenset({"n0", "n1", "n2", "n3"} - {down})
    pl = ring.preflist(key, 3, up)
    assert len(pl) == 3
    assert sum(not e.primary for e in pl) == 1
    fallback = next(e for e in pl if not e.primary)
    assert fallback.partition == primaries[1].partition and fallback.node != down


def test_ring_size_validation() -> None:
    for bad in (0, 3, 48, 2048):
        with pytest.raises(ValueError):
            validate_ring_size(bad)
    validate_ring_size(64)


def test_primaries_are_shared_by_keys_of_one_partition() -> None:
    ring = Ring(tuple(f"n{i % 4}" for i in range(8)))
    keys = [BKey("default", "b", f"k{i}") for i in range(200)]
    for key in keys:
        first = ring.first_partition(key)
        assert [e.partition for e in ring.primaries(key, 3)] == [(first + i) % 8 for i in range(3)]
    assert len(ring._primaries) <= 8  # per partition, not per key
