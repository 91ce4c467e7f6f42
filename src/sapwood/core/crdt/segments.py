"""Segmented encoding: a large set's elements (or a map's fields) encode in hash segments, and only
the segments an update touched are encoded again.

An update changes O(1) entries, yet encoding the whole state is O(n); for a 10,000-element set that
made every add cost milliseconds. So a store's entries are split by a stable hash (CRC-32) into
`segment_count(n)` segments, each encoded on its own (entries sorted within it) and kept as bytes
beside the state. A mutation marks its entry's segment stale; `encode()` re-encodes stale segments
and concatenates the rest. Merges build new stores, so they start with no cached bytes.

The bytes are canonical: the segment count is a function of the number of entries, membership a
function of the entry, and the order within a segment sorted, so equal states encode equally.

Segments are also kept joined in groups of GROUP_SEGMENTS (joining a thousand small parts costs
several times one memcpy of their total), and since format version 3 a group of at least
COMPRESS_MIN_BYTES is written zlib-compressed, as one msgpack ext item (COMPRESSED_GROUP_EXT)
standing for its segments, in states of at least MIN_COMPRESSED_GROUPS groups. An update
re-joins and re-compresses its segment's group only. Every byte of a large state is copied and
written several times per update (its encoding, the N replicas' reads, the backend's pages), so
a state a quarter of the size is cheaper to update even with the compression, and it takes a
quarter of the disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Any, Generic, TypeVar

import msgpack

# Entries per segment the count aims at: small enough that re-encoding one is cheap (an entry
# costs a few Python calls), large enough that the per-segment framing (a few bytes) stays small
# beside the entries.
SET_SEGMENT_TARGET = 16
MAP_SEGMENT_TARGET = 8
MAX_SEGMENTS = 4096
GROUP_SEGMENTS = 16  # segments kept joined together (see the module docstring)
# Compression pays when the copies it saves (the whole state, about a dozen times per update)
# outweigh compressing one group (zlib runs some 5x slower per byte than a copy): so only in
# states of at least this many groups, and only groups of at least COMPRESS_MIN_BYTES.
MIN_COMPRESSED_GROUPS = 16
COMPRESS_MIN_BYTES = 1024
COMPRESS_LEVEL = 1  # zlib's fastest: a group is compressed again on every update it sees
COMPRESSED_GROUP_EXT = 1  # msgpack ext type of a compressed group
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # a state's groups inflating beyond this are damaged

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

    __slots__ = ("actors", "count", "encoded", "group_items", "group_size", "groups", "hash_of",
                 "members", "stale")

    def __init__(self, keys: Iterable[K], count: int, hash_of: Callable[[K], bytes]) -> None:
        self.count = count
        self.hash_of = hash_of
        self.members: list[set[K]] = [set() for _ in range(count)]
        self.encoded: list[bytes] = [b""] * count
        self.stale: set[int] = set(range(count))
        self.group_size = GROUP_SEGMENTS
        self.groups: list[bytes] = [b""] * -(-count // self.group_size)
        self.group_items: list[int] = [0] * len(self.groups)  # wire items each group is
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
        size = self.group_size
        stale_groups = {segment // size for segment in self.stale}
        for segment in self.stale:
            self.encoded[segment] = encode_segment(self.members[segment])
        self.stale.clear()
        if len(self.groups) == 1:
            return [array_header(self.count + 1), msgpack.packb(self.count), *self.encoded]
        for group in stale_groups:
            self._encode_group(group)
        return [array_header(sum(self.group_items) + 1), msgpack.packb(self.count), *self.groups]

    def _encode_group(self, group: int) -> None:
        size = self.group_size
        members = self.encoded[group * size:(group + 1) * size]
        joined = b"".join(members)
        if len(self.groups) < MIN_COMPRESSED_GROUPS or len(joined) < COMPRESS_MIN_BYTES:
            self.groups[group], self.group_items[group] = joined, len(members)
            return
        packed = msgpack.packb(msgpack.ExtType(
            COMPRESSED_GROUP_EXT, zlib.compress(joined, COMPRESS_LEVEL)))
        self.groups[group], self.group_items[group] = packed, 1


def current_segments(segments: Segments[K] | None, keys: Collection[K], target: int,
                     hash_of: Callable[[K], bytes]) -> Segments[K]:
    """The owner's `segments` while their count still suits `keys`, else a fresh split of them
    (the first encode, or the store grew or shrank past a power of two)."""
    count = segment_count(len(keys), target)
    if segments is None or segments.count != count:
        return Segments(keys, count, hash_of)
    return segments


def touch(segments: Segments[K] | None, key: K, present: bool) -> None:
    """`segments.touch` when the owner has built its segments (none before the first encode)."""
    if segments is not None:
        segments.touch(key, present)


def split_segments(data: list[Any]) -> list[Any]:
    """The segments of a segmented wire value `[count, seg or compressed group, ...]`;
    ValueError if malformed."""
    count = data[0]
    segments: list[Any] = []
    budget = MAX_INFLATED_BYTES
    for item in data[1:]:
        if isinstance(item, msgpack.ExtType):
            raw = _inflate(item, budget)
            budget -= len(raw)
            unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(raw), 1))
            unpacker.feed(raw)
            segments += unpacker
        else:
            segments.append(item)
    if not isinstance(count, int) or isinstance(count, bool) or count != len(segments):
        raise ValueError("malformed segment count")
    return segments


def _inflate(item: msgpack.ExtType, limit: int) -> bytes:
    """A compressed group's bytes, if they are at most `limit` long; else ValueError."""
    if item.code != COMPRESSED_GROUP_EXT:
        raise ValueError(f"unknown segment group type {item.code}")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(item.data, max(limit, 1))
    except zlib.error as exc:
        raise ValueError("damaged segment group") from exc
    if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        raise ValueError("segment group truncated, followed by junk or too large")
    return raw


def is_segmented(data: object) -> bool:
    """Segmented wire values start with their segment count; the older flat form never does."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], int)
