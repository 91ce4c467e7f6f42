"""Segmented encoding: a large set's elements (or a map's fields) encode in hash segments, and only
the segments an update touched are encoded again.

An update changes O(1) entries, yet encoding the whole state is O(n); for a 10,000-element set that
made every add cost milliseconds. So a store's entries are split by a stable hash (CRC-32) into
`segment_count(n)` segments, each encoded on its own (entries sorted within it) and kept as bytes
beside the state. A mutation marks its entry's segment stale; `encode()` re-encodes stale segments
and concatenates the rest. Merges build new stores, so they start with no cached bytes.

The bytes are canonical: the segment count is a function of the number of entries, membership a
function of the entry, and the order within a segment sorted, so equal states encode equally.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

import msgpack

# Entries per segment the count aims at: small enough that re-encoding one is cheap, large
# enough that the per-segment framing (a few bytes) stays small beside the entries. Set elements
# pack in column form (cheap each); map fields cost a few Python calls each, so fewer per segment.
SET_SEGMENT_TARGET = 64
MAP_SEGMENT_TARGET = 16
MAX_SEGMENTS = 4096

K = TypeVar("K", bound=Hashable)


def segment_count(entries: int, target: int) -> int:
    """A power of two near entries / target (1 for small stores), at most MAX_SEGMENTS."""
    wanted = -(-entries // target)
    count = 1
    while count < wanted and count < MAX_SEGMENTS:
        count *= 2
    return count


def array_header(length: int) -> bytes:
    """msgpack's header of an array of `length` items (to splice pre-encoded items after it)."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


class Segments(Generic[K]):
    """The segment membership of a store's entries and each segment's cached bytes.

    `hash_of(entry key) -> bytes` gives the bytes the segment is chosen by. The owner calls
    `touch(key, present)` on every mutation of an entry; `encode` does the rest.
    """

    __slots__ = ("actors", "count", "encoded", "hash_of", "members", "stale")

    def __init__(self, keys: Iterable[K], count: int, hash_of: Callable[[K], bytes]) -> None:
        self.count = count
        self.hash_of = hash_of
        self.members: list[set[K]] = [set() for _ in range(count)]
        self.encoded: list[bytes] = [b""] * count
        self.stale: set[int] = set(range(count))
        self.actors: tuple[bytes, ...] | None = None
        for key in keys:
            self.members[self.segment_of(key)].add(key)

    def segment_of(self, key: K) -> int:
        if self.count == 1:
            return 0
        return zlib.crc32(self.hash_of(key)) & (self.count - 1)

    def touch(self, key: K, present: bool) -> None:
        """The entry at `key` changed (present: it exists now; else it was deleted)."""
        segment = self.segment_of(key)
        self.stale.add(segment)
        if present:
            self.members[segment].add(key)
        else:
            self.members[segment].discard(key)

    def encode(self, actors: tuple[bytes, ...], encode_segment: Callable[[set[K]], bytes]
               ) -> list[bytes]:
        """[count, segment 0, segment 1, ...] as msgpack (in parts, to be joined by the caller),
        re-encoding only stale segments.

        Encoded dots refer to actors by their index in `actors`, so a new actor list makes every
        cached segment stale.
        """
        if actors != self.actors:
            self.stale = set(range(self.count))
            self.actors = actors
        for segment in self.stale:
            self.encoded[segment] = encode_segment(self.members[segment])
        self.stale.clear()
        return [array_header(self.count + 1), msgpack.packb(self.count), *self.encoded]


def touch(segments: Segments[K] | None, key: K, present: bool) -> None:
    """`segments.touch` when the owner has built its segments (none before the first encode)."""
    if segments is not None:
        segments.touch(key, present)


def split_segments(data: list[Any]) -> list[Any]:
    """The segments of a segmented wire value `[count, seg, ...]`; ValueError if malformed."""
    count = data[0]
    if not isinstance(count, int) or isinstance(count, bool) or count != len(data) - 1:
        raise ValueError("malformed segment count")
    return data[1:]


def is_segmented(data: object) -> bool:
    """Segmented wire values start with their segment count; the older flat form never does."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], int)
