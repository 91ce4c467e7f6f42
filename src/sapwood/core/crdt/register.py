"""Last-writer-wins register, as found in map fields (Riak has no top-level register).

Each assignment is tagged with a dot, so removing the field deletes exactly the assignments the
remover saw. The winner is the greatest (timestamp, writer actor, value): timestamps decide and
the tie-breaks are deterministic. An assignment older than the value it overwrites re-tags that
value rather than replacing it, so a late clock never rolls a register back (Riak's LWW rule).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from sapwood.core.crdt.dots import CausalCRDT, Clock, Dot, DotStore, Path
from sapwood.core.crdt.ops import RegisterOp

Assignment = tuple[int, bytes, bytes]  # (timestamp ms, writer actor, value)


class RegisterStore(DotStore):
    """Dot -> assignment. Several entries exist only while assignments are concurrent."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[Dot, Assignment] | None = None) -> None:
        self.entries: dict[Dot, Assignment] = {} if entries is None else entries

    def is_empty(self) -> bool:
        return not self.entries

    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        out = {
            dot: a
            for dot, a in self.entries.items()
            if dot in other.entries or dot[1] > other_clock.get(dot[0], 0)
        }
        for dot, a in other.entries.items():
            if dot not in self.entries and dot[1] > clock.get(dot[0], 0):
                out[dot] = a
        return type(self)(out)

    def discard_seen(self, ctx: Clock) -> None:
        self.entries = {d: a for d, a in self.entries.items() if d[1] > ctx.get(d[0], 0)}

    def apply(self, op: RegisterOp, dot: Dot, now_ms: int, observed: Clock | None) -> list[Path]:
        assignment = (now_ms, dot[0], op.value)
        current = self.winner()
        if current is not None and current > assignment:
            assignment = current
        self.entries = {dot: assignment}
        return []

    def winner(self) -> Assignment | None:
        return max(self.entries.values(), default=None)

    def value(self) -> str | None:
        current = self.winner()
        return None if current is None else current[2].decode("utf-8", "surrogateescape")

    def copy(self) -> Self:
        return type(self)(dict(self.entries))

    def to_wire(self, index: dict[bytes, int]) -> Any:
        """[[actor index, counter, timestamp, writer, value], ...]; the writer is an actor index
        too (it is one of the state's actors; bytes only if it is not, as in older encodings)."""
        return [[index[a], c, ts, index.get(w, w), v]
                for (a, c), (ts, w, v) in sorted(self.entries.items())]

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        entries: dict[Dot, Assignment] = {}
        for idx, counter, ts, writer, value in data:
            if not (isinstance(counter, int) and counter > 0 and isinstance(ts, int)):
                raise ValueError("malformed register entry")
            if isinstance(writer, int) and not isinstance(writer, bool) and writer >= 0:
                writer = actors[writer]
            if not isinstance(writer, bytes) or not isinstance(value, bytes):
                raise ValueError("malformed register entry")
            entries[(actors[idx], counter)] = (ts, writer, value)
        return cls(entries)


class Register(CausalCRDT[RegisterStore]):
    """A standalone register (for tests and embedders); `update` mutates and returns self."""

    type_name: ClassVar[str] = "register"
    TAG: ClassVar[int] = 6
    store_type: ClassVar[type[DotStore]] = RegisterStore
    op_type: ClassVar[type] = RegisterOp

    __slots__ = ()

    def value(self) -> str | None:
        return self.store.value()
