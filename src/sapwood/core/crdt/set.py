"""ORSWOT: the add-wins observed-remove set without tombstones (Riak's `set`).

Each element maps to its live dots (normally one); the owner's clock says which dots were ever
seen, so a removed element needs no tombstone. An add replaces the element's dots with the op's
new dot; a remove deletes the dots it observed (all local ones, or those its context covers), so
an add the remover had not seen survives.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import msgpack

from sapwood.core.crdt.dots import (
    CausalCRDT,
    Clock,
    Dot,
    Dots,
    DotStore,
    Path,
    dots_from_wire,
    dots_to_wire,
    join_dots,
    unseen_dots,
)
from sapwood.core.crdt.ops import SetOp
from sapwood.core.crdt.segments import (
    SET_SEGMENT_TARGET,
    Segments,
    current_segments,
    is_segmented,
    split_segments,
    touch,
)
from sapwood.core.errors import BadRequest, PreconditionFailed

MAX_SET_ELEMENTS = 1_000_000
_PREVIEW = 5


def decode_elements(elements: Any) -> list[str]:
    """Sorted (by bytes) elements as text, the way Riak JSON shows them."""
    return [e.decode("utf-8", "surrogateescape") for e in sorted(elements)]


def check_room(present: int, adding: int, limit: int, what: str) -> None:
    if present + adding > limit:
        raise BadRequest(f"{what} would hold more than {limit} elements")


def missing_preview(missing: list[Any]) -> str:
    shown = ", ".join(
        repr(m.decode("utf-8", "surrogateescape") if isinstance(m, bytes) else m)
        for m in missing[:_PREVIEW])
    return shown + (f" and {len(missing) - _PREVIEW} more" if len(missing) > _PREVIEW else "")


def _element_hash(element: bytes) -> bytes:
    return element


class SetStore(DotStore):
    """Element -> live dots. Dot maps are never mutated once stored, so copies may share them.

    `entries` changes only through this class's methods, which keep the segmented encoding's
    cache (see segments.py) told of every change.
    """

    __slots__ = ("_segments", "entries")

    def __init__(self, entries: dict[bytes, Dots] | None = None) -> None:
        self.entries: dict[bytes, Dots] = {} if entries is None else entries
        self._segments: Segments[bytes] | None = None

    def is_empty(self) -> bool:
        return not self.entries

    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        mine, theirs = self.entries, other.entries
        out: dict[bytes, Dots] = {}
        for elem, dots in mine.items():
            their_dots = theirs.get(elem)
            if their_dots is None:
                kept = unseen_dots(dots, other_clock)
            else:
                kept = join_dots(dots, their_dots, clock, other_clock)
            if kept:
                out[elem] = kept
        for elem, dots in theirs.items():
            if elem not in mine:
                kept = unseen_dots(dots, clock)
                if kept:
                    out[elem] = kept
        return type(self)(out)

    def discard_seen(self, ctx: Clock) -> None:
        for elem in list(self.entries):
            self._discard_element(elem, ctx)

    def remove_path(self, path: Path, ctx: Clock) -> None:
        if len(path) == 1 and isinstance(path[0], bytes):
            self._discard_element(path[0], ctx)

    def _discard_element(self, elem: bytes, ctx: Clock) -> None:
        dots = self.entries.get(elem)
        if dots is None:
            return
        kept = unseen_dots(dots, ctx)
        if kept is dots:
            return
        if kept:
            self.entries[elem] = kept
        else:
            del self.entries[elem]
        touch(self._segments, elem, bool(kept))

    def check(self, op: SetOp, has_context: bool) -> None:
        entries = self.entries
        if not has_context and op.removes:
            adds = set(op.adds)
            missing = [e for e in op.removes if e not in entries and e not in adds]
            if missing:
                raise PreconditionFailed(
                    f"cannot remove {missing_preview(missing)}: not in the set; "
                    "send the context from a fetch to remove what you have seen"
                )
        adding = sum(1 for e in op.adds if e not in entries)
        check_room(len(entries), adding, MAX_SET_ELEMENTS, "set")

    def apply(self, op: SetOp, dot: Dot, now_ms: int, observed: Clock | None) -> list[Path]:
        paths: list[Path] = []
        for elem in op.removes:
            if observed is None:
                if self.entries.pop(elem, None) is not None:
                    touch(self._segments, elem, False)
            else:
                self._discard_element(elem, observed)
                paths.append((elem,))
        if op.adds:
            # The add observed every local dot of the element, so it replaces them all.
            new_dots = {dot[0]: dot[1]}
            for elem in op.adds:
                self.entries[elem] = new_dots
                touch(self._segments, elem, True)
        return paths

    def value(self) -> list[str]:
        return decode_elements(self.entries)

    def copy(self) -> Self:
        return type(self)(dict(self.entries))

    def encode_parts(self, index: dict[bytes, int], actors: tuple[bytes, ...]) -> list[bytes]:
        segments = self._segments = current_segments(
            self._segments, self.entries, SET_SEGMENT_TARGET, _element_hash)
        return segments.encode(actors, lambda members: self._encode_segment(members, index))

    def _encode_segment(self, members: set[bytes], index: dict[bytes, int]) -> bytes:
        """Columns [sorted elements, dot count of each, their flat (actor index, counter) pairs];
        the counts column is left out when every element has one dot (the usual case).

        Columns of small ints pack in msgpack's C code; elements added by one op share one dot
        map, so each distinct map is converted once.
        """
        entries = self.entries
        elements = sorted(members)
        converted: dict[int, list[int]] = {}
        sizes: list[int] = []
        flat: list[int] = []
        for elem in elements:
            dots = entries[elem]
            wire = converted.get(id(dots))
            if wire is None:
                wire = converted[id(dots)] = dots_to_wire(dots, index)
            sizes.append(len(dots))
            flat += wire
        columns = [elements, flat] if len(flat) == 2 * len(elements) else [elements, sizes, flat]
        return msgpack.packb(columns, use_bin_type=True)

    def to_wire(self, index: dict[bytes, int]) -> Any:
        actors = tuple(sorted(index, key=index.__getitem__))
        return msgpack.unpackb(self.encode_wire(index, actors), raw=False)

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        """The segmented form `[count, segment, ...]`, or the flat form of format version 1.

        The segments' columns are concatenated first, so the checks and the loop run once, not
        once per (small) segment."""
        parts = split_segments(data) if is_segmented(data) else [data]
        elements: list[Any] = []
        sizes: list[Any] = []
        flat: list[Any] = []
        for part in parts:
            if len(part) == 2:  # every element has one dot
                part_elements, part_flat = part
                part_sizes: list[Any] = [1] * len(part_elements)
            else:
                part_elements, part_sizes, part_flat = part
            if len(part_elements) != len(part_sizes) or 2 * sum(part_sizes) != len(part_flat):
                raise ValueError("malformed set entries")
            elements += part_elements
            sizes += part_sizes
            flat += part_flat
        entries = _entries_from_columns(elements, sizes, flat, actors)
        if len(entries) != len(elements):
            raise ValueError("malformed set elements")
        return cls(entries)


def _entries_from_columns(elements: list[Any], sizes: list[Any], flat: list[Any],
                          actors: list[bytes]) -> dict[bytes, Dots]:
    if min(sizes, default=1) < 1:
        raise ValueError("malformed set entries")
    if flat and (min(flat[1::2]) < 1 or min(flat[::2]) < 0):
        raise ValueError("malformed set dots")
    if not set(map(type, elements)) <= {bytes}:
        raise ValueError("malformed set elements")
    entries: dict[bytes, Dots] = {}
    shared: dict[tuple[int, ...], Dots] = {}  # elements with equal dots share one map
    if len(flat) == 2 * len(elements):  # one dot each: the usual case
        for elem, idx, counter in zip(elements, flat[::2], flat[1::2], strict=True):
            dots = shared.get((idx, counter))
            if dots is None:
                dots = shared[(idx, counter)] = dots_from_wire([idx, counter], actors)
            entries[elem] = dots
        return entries
    pos = 0
    for elem, size in zip(elements, sizes, strict=True):
        key = tuple(flat[pos : pos + 2 * size])
        pos += 2 * size
        dots = shared.get(key)
        if dots is None:
            dots = shared[key] = dots_from_wire(list(key), actors)
        entries[elem] = dots
    return entries


class ORSet(CausalCRDT[SetStore]):
    """Riak's `set`. `update` mutates in place and returns self; `merge` returns a new set."""

    type_name: ClassVar[str] = "set"
    TAG: ClassVar[int] = 2
    FORMAT: ClassVar[int] = 3  # compressed segment groups (segments.py)
    store_type: ClassVar[type[DotStore]] = SetStore
    op_type: ClassVar[type] = SetOp

    __slots__ = ()

    def value(self) -> list[str]:
        return self.store.value()

    def elements(self) -> set[bytes]:
        """The raw elements (bytes), for callers that do not want Riak's text form."""
        return set(self.store.entries)
