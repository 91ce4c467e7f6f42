"""Client requests a node serves and the results it answers with (the same for HTTP and embedded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sapwood.core.index import IndexQuery, Term
from sapwood.core.kvobject import KVObject, Metadata
from sapwood.core.records import fast_init
from sapwood.core.ring import BKey

Quorum = int | str | None  # None: the bucket's own value


@fast_init
@dataclass(frozen=True, slots=True)
class GetRequest:
    bkey: BKey
    r: Quorum = None
    pr: Quorum = None
    basic_quorum: bool | None = None
    notfound_ok: bool | None = None
    timeout_ms: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class GetResult:
    """`obj` is None when not found; a tombstone object when only a tombstone was found."""

    bkey: BKey
    obj: KVObject | None

    @property
    def found(self) -> bool:
        return self.obj is not None and not self.obj.is_tombstone


@fast_init
@dataclass(frozen=True, slots=True)
class PutRequest:
    bkey: BKey
    value: bytes
    meta: Metadata = field(default_factory=Metadata)
    context: dict[bytes, int] = field(default_factory=dict)
    w: Quorum = None
    dw: Quorum = None
    pw: Quorum = None
    timeout_ms: int | None = None
    return_body: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """A data type operation (`op` from sapwood.core.crdt.parse_op) on a datatype bucket, or on
    a legacy counter (`legacy=True`, any allow_mult bucket)."""

    bkey: BKey
    type_name: str
    op: Any
    context: bytes | None = None
    w: Quorum = None
    dw: Quorum = None
    pw: Quorum = None
    timeout_ms: int | None = None
    return_body: bool = False
    legacy: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class PutResult:
    bkey: BKey
    obj: KVObject | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class DeleteRequest:
    bkey: BKey
    context: dict[bytes, int] | None = None
    rw: Quorum = None
    r: Quorum = None
    w: Quorum = None
    dw: Quorum = None
    pr: Quorum = None
    pw: Quorum = None
    timeout_ms: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class DeleteResult:
    bkey: BKey


@fast_init
@dataclass(frozen=True, slots=True)
class ListKeys:
    bucket_type: str
    bucket: str


@fast_init
@dataclass(frozen=True, slots=True)
class ListBuckets:
    bucket_type: str


@fast_init
@dataclass(frozen=True, slots=True)
class CoverageRequest:
    """A query answered by a coverage plan: ListKeys, ListBuckets or an IndexQuery."""

    query: ListKeys | ListBuckets | IndexQuery
    timeout_ms: int | None = None
    stream: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class CoverageChunk:
    """Part of a streamed coverage answer (keys, bucket names or (term, key) pairs)."""

    items: list[Any]


@fast_init
@dataclass(frozen=True, slots=True)
class CoverageResult:
    """The end of a coverage answer. `harvest` is the fraction of partitions that answered."""

    items: list[Any]
    harvest: float
    continuation: str | None = None
    index_results: list[tuple[Term, str]] = field(default_factory=list)


Request = GetRequest | PutRequest | UpdateRequest | DeleteRequest | CoverageRequest
