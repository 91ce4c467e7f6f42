"""G-set: a grow-only set (Riak's `gset`). Merge is union; there is nothing to remove."""

from __future__ import annotations

from typing import ClassVar, Self

from sapwood.core.crdt.dots import CorruptDatatype, check_actor, encode_context, pack, unpack
from sapwood.core.crdt.ops import Op, SetOp
from sapwood.core.crdt.set import check_room, decode_elements
from sapwood.core.errors import BadRequest

MAX_GSET_ELEMENTS = 1_000_000


class GSet:
    """`update` adds in place and returns self; `merge` returns a new set. Contexts are ignored."""

    type_name: ClassVar[str] = "gset"
    TAG: ClassVar[int] = 3

    __slots__ = ("elements",)

    def __init__(self, elements: set[bytes] | None = None) -> None:
        self.elements: set[bytes] = set() if elements is None else elements

    @classmethod
    def new(cls) -> Self:
        return cls()

    def value(self) -> list[str]:
        return decode_elements(self.elements)

    def context(self) -> bytes:
        """An empty causal context: a gset never removes, but Riak hands gset readers one."""
        return encode_context({})

    def update(self, op: Op, actor: bytes, now_ms: int, context: bytes | None = None) -> Self:
        if not isinstance(op, SetOp):
            raise BadRequest(f"a {type(op).__name__} cannot update a gset")
        if op.removes:
            raise BadRequest("a gset only grows: remove is not supported")
        check_actor(actor)
        check_room(len(self.elements), len(set(op.adds) - self.elements), MAX_GSET_ELEMENTS, "gset")
        self.elements.update(op.adds)
        return self

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into a gset")
        return type(self)(self.elements | other.elements)

    def copy(self) -> Self:
        return type(self)(set(self.elements))

    def encode(self) -> bytes:
        return pack(self.TAG, sorted(self.elements))

    @classmethod
    def decode(cls, data: bytes) -> Self:
        elements = unpack(data, cls.TAG, cls.type_name)
        if not isinstance(elements, list) or not all(isinstance(e, bytes) for e in elements):
            raise CorruptDatatype("damaged gset payload")
        return cls(set(elements))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GSet) and self.elements == other.elements

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GSet({self.value()!r})"
