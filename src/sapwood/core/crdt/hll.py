"""HyperLogLog cardinality estimate (Riak's `hll`).

2**p registers each keep the longest run of leading zeros (+1) among hashes routed to them; merge
is the register-wise maximum. The estimate is Ertl's improved estimator ("New cardinality
estimation algorithms for HyperLogLog sketches", 2017), accurate from 0 to billions without
empirical bias tables. Few items are kept sparse (index -> register) and switch to a dense
register array once that is smaller.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Iterator
from typing import ClassVar, Self

from sapwood.core.crdt.dots import CorruptDatatype, pack, unpack
from sapwood.core.crdt.ops import HllOp, Op
from sapwood.core.errors import BadRequest

MIN_HLL_PRECISION = 4
MAX_HLL_PRECISION = 16
DEFAULT_HLL_PRECISION = 14
_HASH_BITS = 64
_ALPHA_INF = 1 / (2 * math.log(2))
_SPARSE_PAIR = struct.Struct(">HB")  # register index (p <= 16 bits), register value


def check_precision(precision: int) -> int:
    if not isinstance(precision, int) or not MIN_HLL_PRECISION <= precision <= MAX_HLL_PRECISION:
        raise BadRequest(
            f"hll_precision must be an integer {MIN_HLL_PRECISION}..{MAX_HLL_PRECISION}, "
            f"got {precision!r}"
        )
    return precision


def _hash64(item: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(item, digest_size=8).digest(), "big")


class HyperLogLog:
    """`update` adds in place and returns self; `merge` returns a new sketch.

    Merging sketches of different precision folds the finer one down to the coarser.
    """

    type_name: ClassVar[str] = "hll"
    TAG: ClassVar[int] = 4

    __slots__ = ("dense", "precision", "sparse")

    def __init__(
        self,
        precision: int = DEFAULT_HLL_PRECISION,
        sparse: dict[int, int] | None = None,
        dense: bytearray | None = None,
    ) -> None:
        self.precision = check_precision(precision)
        self.sparse: dict[int, int] | None = None
        self.dense: bytearray | None = dense
        if dense is None:
            self.sparse = {} if sparse is None else sparse
            self._densify_if_larger()

    @classmethod
    def new(cls, precision: int = DEFAULT_HLL_PRECISION) -> Self:
        return cls(precision)

    @property
    def registers_count(self) -> int:
        return 1 << self.precision

    def context(self) -> bytes:
        return b""

    def update(self, op: Op, actor: bytes, now_ms: int, context: bytes | None = None) -> Self:
        if not isinstance(op, HllOp):
            raise BadRequest(f"a {type(op).__name__} cannot update an hll")
        for item in op.adds:
            self._observe(_hash64(item))
        self._densify_if_larger()
        return self

    def _observe(self, hashed: int) -> None:
        rest_bits = _HASH_BITS - self.precision
        index = hashed >> rest_bits
        rank = rest_bits - (hashed & ((1 << rest_bits) - 1)).bit_length() + 1
        if self.dense is not None:
            if rank > self.dense[index]:
                self.dense[index] = rank
        elif self.sparse is not None and rank > self.sparse.get(index, 0):
            self.sparse[index] = rank

    def _densify_if_larger(self) -> None:
        # A sparse pair costs 3 bytes encoded against 1 per dense register.
        if self.sparse is not None and len(self.sparse) * _SPARSE_PAIR.size > self.registers_count:
            dense = bytearray(self.registers_count)
            for index, rank in self.sparse.items():
                dense[index] = rank
            self.dense, self.sparse = dense, None

    def registers(self) -> Iterator[tuple[int, int]]:
        """(index, value) of every non-zero register."""
        if self.dense is not None:
            # iter(): mypyc (2.4) crashes compiling a comprehension over enumerate(bytearray)
            return ((i, r) for i, r in enumerate(iter(self.dense)) if r)
        return iter((self.sparse or {}).items())

    def with_precision(self, precision: int) -> HyperLogLog:
        """A copy at a lower (or equal) precision: the registers a coarser sketch would hold."""
        check_precision(precision)
        if precision > self.precision:
            raise BadRequest(f"hll precision can only be lowered (is {self.precision})")
        shift = self.precision - precision
        if shift == 0:
            return self.copy()
        reduced: dict[int, int] = {}
        low_mask = (1 << shift) - 1
        for index, rank in self.registers():
            low = index & low_mask
            # The dropped index bits now lead the hash remainder.
            new_rank = shift - low.bit_length() + 1 if low else rank + shift
            new_index = index >> shift
            if new_rank > reduced.get(new_index, 0):
                reduced[new_index] = new_rank
        return HyperLogLog(precision, reduced)

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into an hll")
        precision = min(self.precision, other.precision)
        mine, theirs = self.with_precision(precision), other.with_precision(precision)
        if mine.dense is not None and theirs.dense is not None:
            return type(self)(precision, dense=bytearray(map(max, mine.dense, theirs.dense)))
        merged = type(self)(precision)
        for sketch in (mine, theirs):
            for index, rank in sketch.registers():
                merged._raise_register(index, rank)
        merged._densify_if_larger()
        return merged

    def _raise_register(self, index: int, rank: int) -> None:
        if self.dense is not None:
            self.dense[index] = max(self.dense[index], rank)
        elif self.sparse is not None and rank > self.sparse.get(index, 0):
            self.sparse[index] = rank
            self._densify_if_larger()

    def copy(self) -> Self:
        if self.dense is not None:
            return type(self)(self.precision, dense=bytearray(self.dense))
        return type(self)(self.precision, dict(self.sparse or {}))

    def value(self) -> int:
        return round(self.estimate())

    def estimate(self) -> float:
        m = self.registers_count
        q = _HASH_BITS - self.precision
        counts = self._histogram(q)
        z = m * _tau(1 - counts[q + 1] / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        return _ALPHA_INF * m * m / z

    def _histogram(self, q: int) -> list[int]:
        if self.dense is not None:
            return [self.dense.count(k) for k in range(q + 2)]
        counts = [0] * (q + 2)
        for rank in (self.sparse or {}).values():
            counts[rank] += 1
        counts[0] = self.registers_count - len(self.sparse or {})
        return counts

    def encode(self) -> bytes:
        if self.dense is not None:
            return pack(self.TAG, [self.precision, True, bytes(self.dense)])
        pairs = b"".join(_SPARSE_PAIR.pack(i, r) for i, r in sorted((self.sparse or {}).items()))
        return pack(self.TAG, [self.precision, False, pairs])

    @classmethod
    def decode(cls, data: bytes) -> Self:
        payload = unpack(data, cls.TAG, cls.type_name)
        try:
            precision, is_dense, raw = payload
            check_precision(precision)
            limit = _HASH_BITS - precision + 1
            if not isinstance(raw, bytes):
                raise ValueError("registers must be bytes")
            if is_dense:
                if len(raw) != 1 << precision or max(raw, default=0) > limit:
                    raise ValueError("wrong dense register array")
                return cls(precision, dense=bytearray(raw))
            return cls(precision, dict(_sparse_pairs(raw, precision, limit)))
        except (ValueError, TypeError, BadRequest, struct.error) as exc:
            raise CorruptDatatype("damaged hll payload") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HyperLogLog) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HyperLogLog(p={self.precision}, ~{self.value()})"


def _sparse_pairs(raw: bytes, precision: int, limit: int) -> Iterable[tuple[int, int]]:
    for index, rank in _SPARSE_PAIR.iter_unpack(raw):
        if index >= 1 << precision or not 0 < rank <= limit:
            raise ValueError("sparse register out of range")
        yield index, rank


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3
