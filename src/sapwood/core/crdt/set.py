"""ORSWOT: the add-wins observed-remove set without tombstones (Riak's `set`).

Each element maps to its live dots (normally one); the owner's clock says which dots were ever
seen, so a removed element needs no tombstone. An add replaces the element's dots with the op's
new dot; a remove deletes the dots it observed (all local ones, or those its context covers), so
an add the remover had not seen survives.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

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
    shown = ", ".join(repr(m) for m in missing[:_PREVIEW])
    return shown + (f" and {len(missing) - _PREVIEW} more" if len(missing) > _PREVIEW else "")


class SetStore(DotStore):
    """Element -> live dots. Dot maps are never mutated once stored, so copies may share them."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[bytes, Dots] | None = None) -> None:
        self.entries: dict[bytes, Dots] = {} if entries is None else entries

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
        if kept:
            self.entries[elem] = kept
        else:
            del self.entries[elem]

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
                self.entries.pop(elem, None)
            else:
                self._discard_element(elem, observed)
                paths.append((elem,))
        if op.adds:
            # The add observed every local dot of the element, so it replaces them all.
            new_dots = {dot[0]: dot[1]}
            for elem in op.adds:
                self.entries[elem] = new_dots
        return paths

    def value(self) -> list[str]:
        return decode_elements(self.entries)

    def copy(self) -> Self:
        return type(self)(dict(self.entries))

    def to_wire(self, index: dict[bytes, int]) -> Any:
        """Columns [sorted elements, dot count of each, their flat (actor index, counter) pairs].

        Columns of small ints pack in msgpack's C code; elements added by one op share one dot
        map, so each distinct map is converted once.
        """
        items = sorted(self.entries.items())
        converted: dict[int, list[int]] = {}
        flat: list[int] = []
        for _, dots in items:
            wire = converted.get(id(dots))
            if wire is None:
                wire = converted[id(dots)] = dots_to_wire(dots, index)
            flat += wire
        return [[e for e, _ in items], [len(d) for _, d in items], flat]

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        elements, sizes, flat = data
        if len(elements) != len(sizes) or 2 * sum(sizes) != len(flat) or min(sizes, default=1) < 1:
            raise ValueError("malformed set entries")
        if flat and (min(flat[1::2]) < 1 or min(flat[::2]) < 0):
            raise ValueError("malformed set dots")
        shared: dict[tuple[int, ...], Dots] = {}  # elements with equal dots share one map
        entries: dict[bytes, Dots] = {}
        pos = 0
        for elem, size in zip(elements, sizes, strict=True):
            key = tuple(flat[pos : pos + 2 * size])
            pos += 2 * size
            dots = shared.get(key)
            if dots is None:
                dots = shared[key] = dots_from_wire(list(key), actors)
            entries[elem] = dots
        if not all(isinstance(e, bytes) for e in entries) or len(entries) != len(elements):
            raise ValueError("malformed set elements")
        return cls(entries)


class ORSet(CausalCRDT):
    """Riak's `set`. `update` mutates in place and returns self; `merge` returns a new set."""

    type_name: ClassVar[str] = "set"
    TAG: ClassVar[int] = 2
    store_type: ClassVar[type[DotStore]] = SetStore
    op_type: ClassVar[type] = SetOp

    __slots__ = ()
    store: SetStore

    def value(self) -> list[str]:
        return self.store.value()

    def elements(self) -> set[bytes]:
        """The raw elements (bytes), for callers that do not want Riak's text form."""
        return set(self.store.entries)
