"""The consistent-hashing ring: SHA-1 key space, partitions, owners and preference lists."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

HASH_BITS = 160
HASH_SPACE = 1 << HASH_BITS
DEFAULT_RING_SIZE = 64
MIN_RING_SIZE = 1
MAX_RING_SIZE = 1024
# Hot keys are encoded, hashed and checked once, not on every request and replica read. Sized
# for a node's hot set rather than a test's: an entry of each cache keyed by BKey (encode_bkey,
# key_hash, service's name check) measured ~130 bytes under tracemalloc, plus the ~140-byte BKey
# the caches keep alive, so ~530 bytes a key and ~35 MB with all 65,536 held. At 8,192 a
# 10,000-key working set missed on every request (+20% core GET time).
BKEY_CACHE_ENTRIES = 65_536


class BKey(NamedTuple):
    """The identity of an object: (bucket type, bucket, key)."""

    type: str
    bucket: str
    key: str


@lru_cache(maxsize=BKEY_CACHE_ENTRIES)
def encode_bkey(bkey: BKey) -> bytes:
    """A stable, prefix-friendly byte form: len16 type, len16 bucket, then the key.

    (type, bucket) forms a prefix, so one bucket's keys are contiguous in a sorted store.
    """
    t = bkey.type.encode("utf-8", "surrogateescape")
    b = bkey.bucket.encode("utf-8", "surrogateescape")
    k = bkey.key.encode("utf-8", "surrogateescape")
    return len(t).to_bytes(2, "big") + t + len(b).to_bytes(2, "big") + b + k


def encode_bucket_prefix(bucket_type: str, bucket: str | None = None) -> bytes:
    t = bucket_type.encode("utf-8", "surrogateescape")
    prefix = len(t).to_bytes(2, "big") + t
    if bucket is None:
        return prefix
    b = bucket.encode("utf-8", "surrogateescape")
    return prefix + len(b).to_bytes(2, "big") + b


def decode_bkey(data: bytes) -> BKey:
    tlen = int.from_bytes(data[0:2], "big")
    t = data[2 : 2 + tlen]
    pos = 2 + tlen
    blen = int.from_bytes(data[pos : pos + 2], "big")
    b = data[pos + 2 : pos + 2 + blen]
    k = data[pos + 2 + blen :]
    return BKey(
        t.decode("utf-8", "surrogateescape"),
        b.decode("utf-8", "surrogateescape"),
        k.decode("utf-8", "surrogateescape"),
    )


@lru_cache(maxsize=BKEY_CACHE_ENTRIES)
def key_hash(bkey: BKey) -> int:
    return int.from_bytes(hashlib.sha1(encode_bkey(bkey)).digest(), "big")


def first_partition(h: int, ring_size: int) -> int:
    """The first replica of a hash: the partition *after* it (as Riak does)."""
    return (h // (HASH_SPACE // ring_size) + 1) % ring_size


class PreflistEntry(NamedTuple):
    partition: int
    node: str
    primary: bool


def validate_ring_size(ring_size: int) -> None:
    if not (MIN_RING_SIZE <= ring_size <= MAX_RING_SIZE) or ring_size & (ring_size - 1):
        raise ValueError(
            f"ring_size must be a power of two between {MIN_RING_SIZE} and {MAX_RING_SIZE}, "
            f"got {ring_size}"
        )


@dataclass(frozen=True, slots=True)
class Ring:
    """Ownership of every partition. `owners[i]` owns partition i, which starts at i * 2^160 / size."""

    owners: tuple[str, ...]
    members: tuple[str, ...] = field(init=False, compare=False)
    # (first partition, n_val) -> its primaries: every request asks, and a ring never changes.
    # At most ring size x distinct n_vals entries, so it needs no limit.
    _primaries: dict[tuple[int, int], tuple[PreflistEntry, ...]] = field(
        init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(sorted(set(self.owners))))
        object.__setattr__(self, "_primaries", {})

    @classmethod
    def single(cls, node: str, ring_size: int = DEFAULT_RING_SIZE) -> Ring:
        validate_ring_size(ring_size)
        return cls(tuple([node] * ring_size))

    @property
    def size(self) -> int:
        return len(self.owners)

    def partition_of_hash(self, h: int) -> int:
        return first_partition(h, self.size)

    def first_partition(self, bkey: BKey) -> int:
        return self.partition_of_hash(key_hash(bkey))

    def primaries(self, bkey: BKey, n_val: int) -> list[PreflistEntry]:
        first = first_partition(key_hash(bkey), len(self.owners))
        cached = self._primaries.get((first, n_val))
        if cached is None:
            owners = self.owners
            size = len(owners)
            cached = tuple([
                PreflistEntry(p, owners[p], True)
                for p in [(first + i) % size for i in range(min(n_val, size))]
            ])
            self._primaries[(first, n_val)] = cached
        return list(cached)

    def preflist(self, bkey: BKey, n_val: int, up: frozenset[str] | None = None) -> list[PreflistEntry]:
        """The N replicas for a key: up primaries, and for each down primary a fallback.

        A fallback is the next up node found walking the ring past the first N partitions that is not
        already serving; it stores the data under the primary's partition and hands it back later.
        """
        primaries = self.primaries(bkey, n_val)
        if up is None:
            return primaries
        result = [e for e in primaries if e.node in up]
        down = [e for e in primaries if e.node not in up]
        if not down:
            return primaries
        used = {e.node for e in result}
        first = primaries[0].partition
        for i in range(len(primaries), self.size):
            if not down:
                break
            node = self.owners[(first + i) % self.size]
            if node in up and node not in used:
                used.add(node)
                result.append(PreflistEntry(down.pop(0).partition, node, False))
        return result

    def partitions_of(self, node: str) -> list[int]:
        return [p for p, owner in enumerate(self.owners) if owner == node]

    def with_owners(self, owners: tuple[str, ...]) -> Ring:
        return Ring(owners)
