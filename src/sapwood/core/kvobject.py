"""The stored object: siblings (value + metadata + dot) under one version vector.

Writes are applied by the coordinating vnode (`apply_write`), which mints the new dot; every other
replica merges whole objects (`merge`). Both keep exactly the siblings nobody has seen superseded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import msgpack

from sapwood.core.causal import (
    Dot,
    VClock,
    clock_from_wire,
    clock_to_wire,
    covers,
    descends,
    merge_clocks,
)
from sapwood.core.errors import Conflict, TooLarge
from sapwood.core.limits import MAX_OBJECT_BYTES, MAX_SIBLINGS
from sapwood.core.records import fast_init

ENCODING_VERSION = 1

Index = tuple[str, str | int]
Link = tuple[str, str, str]  # (bucket, key, tag)


@fast_init
@dataclass(frozen=True, slots=True)
class Metadata:
    content_type: str = "application/octet-stream"
    charset: str | None = None
    encoding: str | None = None
    usermeta: tuple[tuple[str, str], ...] = ()
    indexes: tuple[Index, ...] = ()
    links: tuple[Link, ...] = ()
    last_modified_ms: int = 0
    vtag: str = ""
    deleted: bool = False


def _stamped(meta: Metadata, last_modified_ms: int, vtag: str) -> Metadata:
    """`replace(meta, last_modified_ms=..., vtag=...)` at a fraction of its cost (every write
    runs it): keep it in step with Metadata's fields."""
    return Metadata(meta.content_type, meta.charset, meta.encoding, meta.usermeta, meta.indexes,
                    meta.links, last_modified_ms, vtag, meta.deleted)


@fast_init
@dataclass(frozen=True, slots=True)
class Sibling:
    value: bytes
    meta: Metadata
    dot: Dot


@fast_init
@dataclass(frozen=True, slots=True)
class KVObject:
    siblings: tuple[Sibling, ...]
    clock: VClock = field(default_factory=dict)
    # Its stored form, once computed: the replicas of a write on one node store the same object,
    # and a large value should be encoded once, not once per replica.
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def is_tombstone(self) -> bool:
        siblings = self.siblings
        if len(siblings) == 1:  # every read asks: no generator for the usual single sibling
            return siblings[0].meta.deleted
        return all(s.meta.deleted for s in siblings)

    @property
    def live_siblings(self) -> tuple[Sibling, ...]:
        return tuple(s for s in self.siblings if not s.meta.deleted)

    def byte_size(self) -> int:
        return sum(len(s.value) for s in self.siblings)


def make_vtag(dot: Dot) -> str:
    """A sibling's entity tag, derived from its dot so every replica names it alike.

    Sixteen base62 characters, one per digest byte (a byte-to-digit table rather than base
    conversion, which cost a 16-step divmod loop on every write): ~95 bits, printable, and
    opaque, as Riak's vtags are.
    """
    digest = hashlib.blake2b(dot.actor + dot.counter.to_bytes(8, "big"), digest_size=16).digest()
    return digest.translate(_VTAG_DIGITS).decode("ascii")


_BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VTAG_DIGITS = bytes(_BASE62[b % 62] for b in range(256))


def _newest_key(s: Sibling) -> tuple[int, bytes, int]:
    # Ties on the timestamp are broken by the dot so every replica picks the same winner.
    return (s.meta.last_modified_ms, s.dot.actor, s.dot.counter)


def resolve_newest(obj: KVObject) -> KVObject:
    """Collapse siblings to the newest one (allow_mult=false, last_write_wins); the clock is kept."""
    if len(obj.siblings) <= 1:
        return obj
    return KVObject((max(obj.siblings, key=_newest_key),), obj.clock)


def apply_write(
    current: KVObject | None,
    context: VClock,
    value: bytes,
    meta: Metadata,
    actor: bytes,
    now_ms: int,
    *,
    allow_mult: bool,
    last_write_wins: bool = False,
) -> KVObject:
    """Apply a client write at the coordinating vnode `actor`.

    Siblings the client's context has seen are replaced; concurrent ones stay beside the new value.
    With last_write_wins the new value replaces everything, seen or not.
    """
    clock: VClock = current.clock if current else {}  # read only: merge_clocks copies it
    # The client's context may have seen this actor further than the local copy has.
    counter = max(clock.get(actor, 0), context.get(actor, 0)) + 1
    dot = Dot(actor, counter)
    meta = _stamped(meta, now_ms, make_vtag(dot))
    new = Sibling(value, meta, dot)
    if last_write_wins or current is None:
        kept: tuple[Sibling, ...] = ()
    else:
        kept = tuple(s for s in current.siblings if not covers(context, s.dot))
    merged = merge_clocks(clock, context)
    merged[actor] = counter
    result = KVObject((*kept, new), merged)
    if not allow_mult or last_write_wins:
        return resolve_newest(result)
    check_sibling_limit(result)
    return result


def check_sibling_limit(obj: KVObject) -> None:
    if len(obj.siblings) > MAX_SIBLINGS:
        raise Conflict(
            f"the write would leave {len(obj.siblings)} siblings (limit {MAX_SIBLINGS}); "
            "fetch the object, resolve its siblings and write back with its context"
        )


def check_value_size(value: bytes) -> None:
    if len(value) > MAX_OBJECT_BYTES:
        raise TooLarge(f"object is {len(value)} bytes; the limit is {MAX_OBJECT_BYTES}")


def merge(a: KVObject | None, b: KVObject | None, *, allow_mult: bool = True) -> KVObject | None:
    """Syntactic merge of two replicas: keep each side's siblings the other side has not superseded."""
    if a is None or a is b:
        return b
    if b is None:
        return a
    if _merges_to(b, a):
        return b if allow_mult else resolve_newest(b)
    if a.clock == b.clock and {s.dot for s in a.siblings} == {s.dot for s in b.siblings}:
        return a
    b_dots = {s.dot for s in b.siblings}
    a_dots = {s.dot for s in a.siblings}
    kept = [s for s in a.siblings if s.dot in b_dots or not covers(b.clock, s.dot)]
    kept += [s for s in b.siblings if s.dot not in a_dots and not covers(a.clock, s.dot)]
    kept.sort(key=lambda s: (s.dot.actor, s.dot.counter))
    result = KVObject(tuple(kept), merge_clocks(a.clock, b.clock))
    return result if allow_mult else resolve_newest(result)


def _merges_to(new: KVObject, old: KVObject) -> bool:
    """merge(old, new) is `new` itself: it has seen all of `old`, and `old` has superseded none of
    its siblings (the common case of a replica receiving the next version)."""
    if not descends(new.clock, old.clock):
        return False
    old_clock = old.clock
    old_dots = {s.dot for s in old.siblings}
    for s in new.siblings:
        dot = s.dot
        if dot not in old_dots and old_clock.get(dot.actor, 0) >= dot.counter:
            return False
    return True


def equivalent(a: KVObject | None, b: KVObject | None) -> bool:
    if a is None or b is None or a is b:
        return a is b
    a_siblings, b_siblings = a.siblings, b.siblings
    if len(a_siblings) == 1 and len(b_siblings) == 1:  # the usual case: no set to build
        same_dots = a_siblings[0].dot == b_siblings[0].dot
    else:
        same_dots = {s.dot for s in a_siblings} == {s.dot for s in b_siblings}
    a_clock, b_clock = a.clock, b.clock
    if type(a_clock) is dict and type(b_clock) is dict:
        return same_dots and a_clock == b_clock
    return same_dots and dict(a_clock) == dict(b_clock)


# --- encoding -------------------------------------------------------------------------------


def _meta_to_wire(m: Metadata) -> list[object]:
    return [
        m.content_type,
        m.charset,
        m.encoding,
        [list(kv) for kv in m.usermeta],
        [list(ix) for ix in m.indexes],
        [list(link) for link in m.links],
        m.last_modified_ms,
        m.vtag,
        m.deleted,
    ]


def _meta_from_wire(w: list[object]) -> Metadata:
    ctype, charset, encoding, usermeta, indexes, links, lastmod, vtag, deleted = w
    # Positional and with list comprehensions: this runs for every sibling of every read.
    return Metadata(
        ctype,  # type: ignore[arg-type]
        charset,  # type: ignore[arg-type]
        encoding,  # type: ignore[arg-type]
        tuple([(k, v) for k, v in usermeta]) if usermeta else (),  # type: ignore[attr-defined]
        tuple([(k, v) for k, v in indexes]) if indexes else (),  # type: ignore[attr-defined]
        tuple([(b, k, t) for b, k, t in links]) if links else (),  # type: ignore[attr-defined]
        lastmod,  # type: ignore[arg-type]
        vtag,  # type: ignore[arg-type]
        deleted,  # type: ignore[arg-type]
    )


def to_wire(obj: KVObject) -> list[object]:
    return [
        ENCODING_VERSION,
        clock_to_wire(obj.clock),
        [[s.value, _meta_to_wire(s.meta), s.dot.actor, s.dot.counter] for s in obj.siblings],
    ]


def from_wire(w: list[object]) -> KVObject:
    version, clock, siblings = w
    if version != ENCODING_VERSION:
        raise ValueError(f"unknown object encoding version {version}")
    return KVObject(
        tuple([
            Sibling(value, _meta_from_wire(meta), Dot(actor, counter))
            for value, meta, actor, counter in siblings  # type: ignore[attr-defined]
        ]),
        clock_from_wire(clock),  # type: ignore[arg-type]
    )


def encode(obj: KVObject) -> bytes:
    """msgpack of `to_wire(obj)`, built around the values rather than copied through a buffer:
    the same bytes, without per-call buffer allocation and copying of large values."""
    if obj.encoded is not None:
        return obj.encoded
    # msgpack packs a tuple as it packs a list: the pairs and fields go in as they are, without
    # the lists `clock_to_wire` and `_meta_to_wire` would build for them.
    parts = [_ARRAY3, _VERSION, _pack(sorted(obj.clock.items())), _array_header(len(obj.siblings))]
    for s in obj.siblings:
        m = s.meta
        fields = (m.content_type, m.charset, m.encoding, m.usermeta, m.indexes, m.links,
                  m.last_modified_ms, m.vtag, m.deleted)
        parts += (_ARRAY4, _bin_header(len(s.value)), s.value,
                  _pack((fields, s.dot.actor, s.dot.counter))[1:])
    data = b"".join(parts)
    object.__setattr__(obj, "encoded", data)
    return data


_ARRAY3 = b"\x93"
_ARRAY4 = b"\x94"
_VERSION = msgpack.packb(ENCODING_VERSION)


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def decode(data: bytes) -> KVObject:
    obj = from_wire(msgpack.unpackb(data, raw=False))
    object.__setattr__(obj, "encoded", data)
    return obj


# The decoded objects a node keeps, by the memory they take: an entry count would hold a
# working set of small objects far smaller than this, or of large ones far larger. Every read
# of a key not held decodes it (a third of a single-node GET's core time at 10,000 keys).
DECODE_CACHE_BUDGET_BYTES = 64 * 1024**2
DECODE_CACHE_MAX_BYTES = 16 * 1024  # larger objects are decoded each time (see `decode`)
# An entry holds its stored bytes and the decoded object, whose values are copies of theirs;
# beyond twice the stored size, one sibling's objects (KVObject, Sibling, Metadata, Dot, clock,
# dict slot) measured ~820 bytes under tracemalloc. With 256-byte values an entry is ~1.7 KB,
# so the budget holds ~39,000 of them.
DECODE_ENTRY_OVERHEAD_BYTES = 1024


def _entry_cost(data: bytes) -> int:
    return 2 * len(data) + DECODE_ENTRY_OVERHEAD_BYTES


class DecodeCache:
    """Decoded objects by their stored bytes, within a memory budget (oldest entries out first).

    The N replicas of a key usually hold byte-identical copies, so a read decodes once, not N
    times, and a hot key is not decoded at all. Objects are immutable, so sharing them is safe.
    """

    def __init__(self, budget_bytes: int = DECODE_CACHE_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.held_bytes = 0
        # Oldest first. An OrderedDict, not a dict: evicting a dict's first key scans the holes
        # earlier evictions left, microseconds per eviction at this size.
        self._entries: OrderedDict[bytes, KVObject] = OrderedDict()

    def remember(self, data: bytes, obj: KVObject) -> None:
        """`data` is `encode(obj)`, just stored: its next read need not decode it again."""
        if len(data) <= DECODE_CACHE_MAX_BYTES and data not in self._entries:
            self._add(data, obj)

    def decode_uncached(self, data: bytes) -> KVObject:
        """The cached object if there is one, else a decoding that is not kept (folds over a
        whole partition must not push the hot objects out)."""
        obj = self._entries.get(data)
        return decode(data) if obj is None else obj

    def decode(self, data: bytes) -> KVObject:
        if len(data) > DECODE_CACHE_MAX_BYTES:
            return decode(data)  # hashing a large value costs more than decoding it
        obj = self._entries.get(data)
        if obj is None:
            obj = decode(data)
            self._add(data, obj)
        return obj

    def _add(self, data: bytes, obj: KVObject) -> None:
        entries = self._entries
        held = self.held_bytes + _entry_cost(data)
        # FIFO by insertion: a hit costs one lookup, no reordering.
        while held > self.budget_bytes and entries:
            held -= _entry_cost(entries.popitem(last=False)[0])
        entries[data] = obj
        self.held_bytes = held
