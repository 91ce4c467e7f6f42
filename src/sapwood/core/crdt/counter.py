"""Counters: the top-level PN-counter, and the dotted counter that lives in map fields."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from sapwood.core.crdt.dots import Clock, CorruptDatatype, Dot, DotStore, check_actor, pack, unpack
from sapwood.core.crdt.ops import CounterOp, Op
from sapwood.core.errors import BadRequest

# Per-actor increment and decrement totals are stored as unsigned 64-bit integers.
MAX_COUNTER_TOTAL = 2**64 - 1


def _grow(total: int, amount: int) -> int:
    grown = total + amount
    if grown > MAX_COUNTER_TOTAL:
        raise BadRequest(f"counter total for one replica would exceed {MAX_COUNTER_TOTAL}")
    return grown


class Counter:
    """PN-counter: per actor, a total of increments (P) and of decrements (N); merge takes maxima.

    `update` changes the counter in place and returns it; `merge` returns a new counter.
    """

    type_name: ClassVar[str] = "counter"
    TAG: ClassVar[int] = 1

    __slots__ = ("n", "p")

    def __init__(self, p: dict[bytes, int] | None = None, n: dict[bytes, int] | None = None):
        self.p: dict[bytes, int] = {} if p is None else p
        self.n: dict[bytes, int] = {} if n is None else n

    @classmethod
    def new(cls) -> Self:
        return cls()

    def value(self) -> int:
        return sum(self.p.values()) - sum(self.n.values())

    def context(self) -> bytes:
        return b""

    def update(self, op: Op, actor: bytes, now_ms: int, context: bytes | None = None) -> Self:
        if not isinstance(op, CounterOp):
            raise BadRequest(f"a {type(op).__name__} cannot update a counter")
        check_actor(actor)
        totals = self.p if op.delta >= 0 else self.n
        grown = _grow(totals.get(actor, 0), abs(op.delta))
        if op.delta:
            totals[actor] = grown
        return self

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into a counter")
        return type(self)(_max_merge(self.p, other.p), _max_merge(self.n, other.n))

    def copy(self) -> Self:
        return type(self)(dict(self.p), dict(self.n))

    def encode(self) -> bytes:
        actors = sorted(set(self.p) | set(self.n))
        return pack(self.TAG, [[a, self.p.get(a, 0), self.n.get(a, 0)] for a in actors])

    @classmethod
    def decode(cls, data: bytes) -> Self:
        counter = cls()
        try:
            for actor, p, n in unpack(data, cls.TAG, cls.type_name):
                if not isinstance(actor, bytes) or not _is_total(p) or not _is_total(n):
                    raise ValueError("malformed counter entry")
                if p:
                    counter.p[actor] = p
                if n:
                    counter.n[actor] = n
        except (ValueError, TypeError) as exc:
            raise CorruptDatatype("damaged counter payload") from exc
        return counter

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counter) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Counter({self.value()})"


def _max_merge(a: dict[bytes, int], b: dict[bytes, int]) -> dict[bytes, int]:
    merged = dict(a)
    for actor, total in b.items():
        if total > merged.get(actor, 0):
            merged[actor] = total
    return merged


def _is_total(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER_TOTAL
    )


CounterEntry = tuple[int, int, int]  # (counter of the actor's latest dot, P total, N total)


class CounterStore(DotStore):
    """A counter inside a map: each actor's totals are tagged with the dot of its latest update.

    Removing the field drops the entries whose dots the remover saw. An actor updating
    concurrently with that remove re-tags its *whole* total with a new dot, so its contribution
    survives in full while the other actors' observed contributions are gone (Riak's embedded
    counter behaves the same way). Removing and updating in one op starts from zero.
    """

    __slots__ = ("entries",)

    def __init__(self, entries: dict[bytes, CounterEntry] | None = None) -> None:
        self.entries: dict[bytes, CounterEntry] = {} if entries is None else entries

    def is_empty(self) -> bool:
        return not self.entries

    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        out: dict[bytes, CounterEntry] = {}
        for actor in self.entries.keys() | other.entries.keys():
            mine, theirs = self.entries.get(actor), other.entries.get(actor)
            survivors = []
            if mine is not None and (
                (theirs is not None and theirs[0] == mine[0]) or mine[0] > other_clock.get(actor, 0)
            ):
                survivors.append(mine)
            if theirs is not None and theirs[0] > clock.get(actor, 0):
                survivors.append(theirs)
            if survivors:
                out[actor] = max(survivors)
        return type(self)(out)

    def discard_seen(self, ctx: Clock) -> None:
        seen = [a for a, entry in self.entries.items() if entry[0] <= ctx.get(a, 0)]
        for actor in seen:
            del self.entries[actor]

    def check(self, op: CounterOp, has_context: bool) -> None:
        # The updating actor is not known yet: bound by the largest total, so apply cannot fail.
        largest = max((max(e[1], e[2]) for e in self.entries.values()), default=0)
        _grow(largest, abs(op.delta))

    def apply(self, op: CounterOp, dot: Dot, now_ms: int, observed: Clock | None) -> list[Any]:
        actor, counter = dot
        _, p, n = self.entries.get(actor, (0, 0, 0))
        if op.delta >= 0:
            p = _grow(p, op.delta)
        else:
            n = _grow(n, -op.delta)
        self.entries[actor] = (counter, p, n)
        return []

    def value(self) -> int:
        return sum(p - n for _, p, n in self.entries.values())

    def copy(self) -> Self:
        return type(self)(dict(self.entries))

    def to_wire(self, index: dict[bytes, int]) -> Any:
        flat: list[int] = []
        for actor, (counter, p, n) in sorted(self.entries.items()):
            flat += (index[actor], counter, p, n)
        return flat

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        if not isinstance(data, list) or len(data) % 4:
            raise ValueError("malformed counter field")
        entries = {}
        for i in range(0, len(data), 4):
            idx, counter, p, n = data[i : i + 4]
            if not (_is_total(counter) and counter > 0 and _is_total(p) and _is_total(n)):
                raise ValueError("malformed counter field entry")
            entries[actors[idx]] = (counter, p, n)
        return cls(entries)
