"""Every inter-node message of the KV protocol: the wire vocabulary.

Requests name the coordinator node and its request id so replies find their way back. Objects
travel as KVObject values; the wire codec turns them into msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sapwood.core.kvobject import KVObject, Metadata
from sapwood.core.records import fast_init
from sapwood.core.ring import BKey


@fast_init
@dataclass(frozen=True, slots=True)
class Fetch:
    req_id: int
    coordinator: str
    partition: int
    bkey: BKey


@fast_init
@dataclass(frozen=True, slots=True)
class FetchReply:
    req_id: int
    partition: int
    node: str
    obj: KVObject | None
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class CoordinatePut:
    """Ask the coordinating vnode to apply a client write with its own actor (it mints the dot)."""

    req_id: int
    coordinator: str
    partition: int
    bkey: BKey
    value: bytes
    meta: Metadata
    context: dict[bytes, int]
    allow_mult: bool
    last_write_wins: bool


@fast_init
@dataclass(frozen=True, slots=True)
class CoordinateUpdate:
    """Ask the coordinating vnode to apply a data type operation with its own actor."""

    req_id: int
    coordinator: str
    partition: int
    bkey: BKey
    type_name: str
    op: Any
    context: bytes | None
    hll_precision: int
    legacy: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class CoordinatePutReply:
    req_id: int
    partition: int
    node: str
    obj: KVObject | None
    error: str | None = None
    status: int = 0
    durable: bool = False  # the write is already as durable as the node makes writes


@fast_init
@dataclass(frozen=True, slots=True)
class Replicate:
    """Merge this object into the replica (the other N-1 replicas of a put, and read repair)."""

    req_id: int
    coordinator: str
    partition: int
    bkey: BKey
    obj: KVObject
    allow_mult: bool


@fast_init
@dataclass(frozen=True, slots=True)
class StoreAck:
    """A replica stored the write (`durable=False`), or has since made it durable (`durable=True`)."""

    req_id: int
    partition: int
    node: str
    durable: bool
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Reap:
    """Remove a tombstone, but only if the replica still holds exactly this one."""

    partition: int
    bkey: BKey
    clock: dict[bytes, int]
    delay_ms: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class Fold:
    """A coverage query at one vnode: `query` is a ListKeys/ListBuckets/IndexQuery value.

    Only keys whose first partition is in `first_partitions` are returned, so that each key is
    reported by exactly one vnode of the coverage plan.
    """

    req_id: int
    coordinator: str
    partition: int
    query: Any
    first_partitions: frozenset[int]


@fast_init
@dataclass(frozen=True, slots=True)
class FoldReply:
    req_id: int
    partition: int
    node: str
    items: list[Any]
    error: str | None = None


# Every message the KV service (coordinators and vnodes) handles, for dispatch by exact type.
KV_MESSAGES = frozenset({Fetch, FetchReply, CoordinatePut, CoordinateUpdate, CoordinatePutReply,
                         Replicate, StoreAck, Reap, Fold, FoldReply})
