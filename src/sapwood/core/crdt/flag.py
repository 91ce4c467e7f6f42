"""Enable-wins flag, as found in map fields (Riak has no top-level flag).

The flag is its set of enabling dots: enable replaces them with a new dot, disable removes the
ones it observed. So an enable concurrent with a disable survives: enable wins.
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
from sapwood.core.crdt.ops import FlagOp

# Path step naming a flag's enabling dots, for a disable deferred until its context's dots arrive.
FLAG_STEP = "enabled"


class FlagStore(DotStore):
    __slots__ = ("dots",)

    def __init__(self, dots: Dots | None = None) -> None:
        self.dots: Dots = {} if dots is None else dots

    def is_empty(self) -> bool:
        return not self.dots

    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        return type(self)(dict(join_dots(self.dots, other.dots, clock, other_clock)))

    def discard_seen(self, ctx: Clock) -> None:
        self.dots = unseen_dots(self.dots, ctx)

    def remove_path(self, path: Path, ctx: Clock) -> None:
        if path == (FLAG_STEP,):
            self.discard_seen(ctx)

    def apply(self, op: FlagOp, dot: Dot, now_ms: int, observed: Clock | None) -> list[Path]:
        if op.enable:
            self.dots = {dot[0]: dot[1]}
            return []
        if observed is None:
            self.dots = {}
            return []
        self.discard_seen(observed)
        return [(FLAG_STEP,)]

    def value(self) -> bool:
        return bool(self.dots)

    def copy(self) -> Self:
        return type(self)(dict(self.dots))

    def to_wire(self, index: dict[bytes, int]) -> Any:
        return dots_to_wire(self.dots, index)

    @classmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self:
        return cls(dots_from_wire(data, actors))


class Flag(CausalCRDT[FlagStore]):
    """A standalone flag (for tests and embedders); `update` mutates and returns self."""

    type_name: ClassVar[str] = "flag"
    TAG: ClassVar[int] = 7
    store_type: ClassVar[type[DotStore]] = FlagStore
    op_type: ClassVar[type] = FlagOp

    __slots__ = ()

    def value(self) -> bool:
        return self.store.value()
