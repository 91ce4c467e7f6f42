"""HyperLogLog: estimate accuracy, register-wise max merge, precision folding, compact encoding."""

from __future__ import annotations

import pytest

from sapwood.core.crdt import (
    CorruptDatatype,
    HllOp,
    HyperLogLog,
    new_datatype,
    parse_op,
)
from sapwood.core.errors import BadRequest

A = b"vnode-a"


def items(start: int, stop: int) -> HllOp:
    return HllOp(tuple(b"item-%d" % i for i in range(start, stop)))


def test_estimate_of_10k_distinct_items_is_within_a_few_percent() -> None:
    h = HyperLogLog.new(14).update(items(0, 10_000), A, 0)
    assert abs(h.value() - 10_000) / 10_000 < 0.03
    h.update(items(0, 10_000), A, 0)  # repeats change nothing
    assert abs(h.value() - 10_000) / 10_000 < 0.03


@pytest.mark.parametrize("n", [0, 1, 2, 10, 100])
def test_small_cardinalities_are_nearly_exact(n: int) -> None:
    assert abs(HyperLogLog.new().update(items(0, n), A, 0).value() - n) <= max(1, n // 50)


def test_merge_is_register_wise_max_of_the_union() -> None:
    a = HyperLogLog.new(10).update(items(0, 3000), A, 0)
    b = HyperLogLog.new(10).update(items(2000, 5000), A, 0)
    union = HyperLogLog.new(10).update(items(0, 5000), A, 0)
    assert a.merge(b) == union
    assert abs(union.value() - 5000) / 5000 < 0.1


def test_lowering_precision_equals_counting_at_the_lower_precision() -> None:
    for n in (5, 500, 20_000):
        fine = HyperLogLog.new(14).update(items(0, n), A, 0)
        coarse = HyperLogLog.new(9).update(items(0, n), A, 0)
        assert fine.with_precision(9) == coarse
        assert fine.merge(coarse) == coarse.merge(fine) == coarse
    with pytest.raises(BadRequest, match="only be lowered"):
        coarse.with_precision(12)


def test_small_sketches_are_sparse_and_large_ones_dense() -> None:
    small = HyperLogLog.new(14).update(items(0, 100), A, 0)
    assert len(small.encode()) < 400
    large = HyperLogLog.new(14).update(items(0, 50_000), A, 0)
    assert len(large.encode()) < (1 << 14) + 32
    assert HyperLogLog.decode(small.encode()) == small
    assert HyperLogLog.decode(large.encode()) == large
    assert HyperLogLog.decode(small.merge(large).encode()).value() == large.merge(small).value()


def test_precision_bounds() -> None:
    for bad in (3, 17, "14"):
        with pytest.raises(BadRequest, match="hll_precision"):
            new_datatype("hll", hll_precision=bad)  # type: ignore[arg-type]
    h = new_datatype("hll", hll_precision=4)
    assert isinstance(h, HyperLogLog) and h.precision == 4
    h.update(parse_op("hll", {"add_all": [str(i) for i in range(1000)]}), A, 0)
    assert 500 < h.value() < 2000


def test_damaged_encoding_is_reported() -> None:
    good = HyperLogLog.new(4).update(items(0, 3), A, 0).encode()
    for bad in (good[:2] + b"\x93\x11\xc2\xc4\x00", good[:2] + b"\x93\x04\xc3\xc4\x01\x00"):
        with pytest.raises(CorruptDatatype):
            HyperLogLog.decode(bad)
