"""One partition replica: stores objects with causal merge, answers fetches and coverage folds.

The vnode's actor id changes with every node incarnation, so a node that restarts after losing
unsynced writes can never reuse a dot it handed out before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from sapwood.core import datatypes, kvobject
from sapwood.core.backend import Backend
from sapwood.core.effects import Effect, Flush, Send, SetTimer
from sapwood.core.errors import SapwoodError
from sapwood.core.index import (
    IndexQuery,
    Term,
    after_continuation,
    decode_term_and_key,
    entry_key,
    field_prefix,
    term_range,
)
from sapwood.core.kvobject import KVObject
from sapwood.core.messages import (
    CoordinatePut,
    CoordinatePutReply,
    CoordinateUpdate,
    Fetch,
    FetchReply,
    Fold,
    FoldReply,
    Reap,
    Replicate,
    StoreAck,
)
from sapwood.core.requests import ListBuckets, ListKeys
from sapwood.core.ring import (
    BKey,
    decode_bkey,
    encode_bkey,
    encode_bucket_prefix,
    first_partition,
    key_hash,
)


def vnode_actor(node: str, partition: int, incarnation: int, epoch: int = 0) -> bytes:
    """A compact actor id for (node, partition, incarnation, epoch): 8 bytes, as Riak's ids."""
    raw = f"{node}/{partition}/{incarnation}/{epoch}".encode()
    return hashlib.blake2b(raw, digest_size=8).digest()


class Vnode:
    def __init__(
        self, node: str, partition: int, backend: Backend, incarnation: int, ring_size: int,
        cache: kvobject.DecodeCache | None = None, states: datatypes.StateCache | None = None,
    ) -> None:
        self.cache = cache if cache is not None else kvobject.DecodeCache()
        self.states = states if states is not None else datatypes.StateCache()
        self.node = node
        self.partition = partition
        self.ring_size = ring_size
        self.backend = backend
        self.incarnation = incarnation
        self.epoch = 0
        self.actor = vnode_actor(node, partition, incarnation)
        self.stats = {"puts": 0, "gets": 0, "reaps": 0}
        # True when a committed write is all the durability the node offers (sync=commit): one
        # durable ack then replaces a stored ack plus a flushed one.
        self.commit_is_durable = False
        self.last_write_ms = 0

    # --- storage ------------------------------------------------------------------------------

    def read(self, bkey: BKey) -> KVObject | None:
        raw = self.backend.get(self.partition, encode_bkey(bkey))
        return None if raw is None else self.cache.decode(raw)

    def _store(self, bkey: BKey, old: KVObject | None, new: KVObject) -> None:
        data = kvobject.encode(new)
        old_entries = _index_entries(bkey, old)
        new_entries = _index_entries(bkey, new)
        if old_entries or new_entries:
            self.backend.put(
                self.partition, encode_bkey(bkey), data,
                add_index=sorted(new_entries - old_entries),
                remove_index=sorted(old_entries - new_entries),
            )
        else:
            self.backend.put(self.partition, encode_bkey(bkey), data)
        self.cache.remember(data, new)

    def delete_if_unchanged(self, raw_key: bytes, raw_value: bytes) -> None:
        """Drop a handed-off object, unless a write changed it since it was sent."""
        if self.backend.get(self.partition, raw_key) != raw_value:
            return
        bkey = decode_bkey(raw_key)
        entries = sorted(_index_entries(bkey, self.cache.decode(raw_value)))
        self.backend.delete(self.partition, raw_key, entries)
        self._new_actor_epoch()

    def merge_handoff(self, raw_key: bytes, obj: KVObject, allow_mult: bool, now_ms: int) -> None:
        bkey = decode_bkey(raw_key)
        current = self.read(bkey)
        merged = kvobject.merge(current, obj, allow_mult=allow_mult)
        if merged is not None and not kvobject.equivalent(current, merged):
            self._store(bkey, current, merged)
        self.last_write_ms = now_ms

    # --- messages -----------------------------------------------------------------------------

    def handle(self, msg: Any, now_ms: int) -> list[Effect]:
        handler = _HANDLERS.get(type(msg))
        return [] if handler is None else handler(self, msg, now_ms)

    def _fetch(self, msg: Fetch, now_ms: int) -> list[Effect]:
        return [Send(msg.coordinator, self.fetch_reply(msg))]

    def fetch_reply(self, msg: Fetch) -> FetchReply:
        """The answer to `msg`; the service hands it straight to a coordinator on this node."""
        return FetchReply(msg.req_id, self.partition, self.node, self.read_replica(msg.bkey))

    def read_replica(self, bkey: BKey) -> KVObject | None:
        """A coordinator's read of this replica (counted in the vnode's stats)."""
        self.stats["gets"] += 1
        return self.read(bkey)

    def _on_coordinate_put(self, msg: CoordinatePut, now_ms: int) -> list[Effect]:
        self.last_write_ms = now_ms
        return self._coordinate_put(msg, now_ms)

    def _on_replicate(self, msg: Replicate, now_ms: int) -> list[Effect]:
        self.last_write_ms = now_ms
        return self._replicate(msg)

    def _on_coordinate_update(self, msg: CoordinateUpdate, now_ms: int) -> list[Effect]:
        self.last_write_ms = now_ms
        return self._coordinate_update(msg, now_ms)

    def _on_fold(self, msg: Fold, now_ms: int) -> list[Effect]:
        return [Send(msg.coordinator, self._fold(msg))]

    def _coordinate_put(self, msg: CoordinatePut, now_ms: int) -> list[Effect]:
        current = self.read(msg.bkey)
        try:
            kvobject.check_value_size(msg.value)
            new = kvobject.apply_write(
                current, msg.context, msg.value, msg.meta, self.actor, now_ms,
                allow_mult=msg.allow_mult, last_write_wins=msg.last_write_wins,
            )
        except SapwoodError as exc:
            return [Send(msg.coordinator, CoordinatePutReply(
                msg.req_id, self.partition, self.node, None, exc.message, exc.status))]
        self._store(msg.bkey, current, new)
        self.stats["puts"] += 1
        return self._coordinated(msg.req_id, msg.coordinator, new)

    def _coordinated(self, req_id: int, coordinator: str, new: KVObject) -> list[Effect]:
        if self.commit_is_durable:
            return [Send(coordinator, CoordinatePutReply(
                req_id, self.partition, self.node, new, durable=True))]
        return [
            Send(coordinator, CoordinatePutReply(req_id, self.partition, self.node, new)),
            Flush(coordinator, StoreAck(req_id, self.partition, self.node, durable=True)),
        ]

    def _coordinate_update(self, msg: CoordinateUpdate, now_ms: int) -> list[Effect]:
        current = self.read(msg.bkey)
        try:
            new = datatypes.apply_update(
                current, msg.bkey, msg.type_name, msg.op, msg.context, self.actor, now_ms,
                hll_precision=msg.hll_precision, cache=self.states, legacy=msg.legacy,
            )
            kvobject.check_value_size(new.siblings[-1].value)
        except SapwoodError as exc:
            return [Send(msg.coordinator, CoordinatePutReply(
                msg.req_id, self.partition, self.node, None, exc.message, exc.status))]
        self._store(msg.bkey, current, new)
        self.stats["puts"] += 1
        return self._coordinated(msg.req_id, msg.coordinator, new)

    def _replicate(self, msg: Replicate) -> list[Effect]:
        current = self.read(msg.bkey)
        merged = kvobject.merge(current, msg.obj, allow_mult=msg.allow_mult)
        assert merged is not None
        if not kvobject.equivalent(current, merged):
            self._store(msg.bkey, current, merged)
            self.stats["puts"] += 1
        if not msg.coordinator:
            return []  # read repair: nobody waits for an answer
        if self.commit_is_durable:
            return [Send(msg.coordinator, StoreAck(msg.req_id, self.partition, self.node, True))]
        return [
            Send(msg.coordinator, StoreAck(msg.req_id, self.partition, self.node, durable=False)),
            Flush(msg.coordinator, StoreAck(msg.req_id, self.partition, self.node, durable=True)),
        ]

    def _reap(self, msg: Reap, now_ms: int) -> list[Effect]:
        if msg.delay_ms > 0:
            clock = tuple(sorted(msg.clock.items()))
            return [SetTimer(("reap", self.partition, msg.bkey, clock), now_ms + msg.delay_ms)]
        current = self.read(msg.bkey)
        if current is not None and current.is_tombstone and dict(current.clock) == msg.clock:
            self.backend.delete(self.partition, encode_bkey(msg.bkey))
            self.stats["reaps"] += 1
            self._new_actor_epoch()
        return []

    def _new_actor_epoch(self) -> None:
        """After deleting an object this vnode may later hold an older copy of it, or none, and
        counting from that copy would mint a dot another write already has: so it mints its
        dots as a new actor from now on (sim seeds 3, 4, 8)."""
        self.epoch += 1
        self.actor = vnode_actor(self.node, self.partition, self.incarnation, self.epoch)

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        if key[0] == "reap":
            _, _, bkey, clock = key
            return self._reap(Reap(self.partition, bkey, dict(clock)), now_ms)
        return []

    # --- coverage folds -----------------------------------------------------------------------

    def _fold(self, msg: Fold) -> FoldReply:
        try:
            items = list(self.fold(msg.query, msg.first_partitions))
        except SapwoodError as exc:
            return FoldReply(msg.req_id, self.partition, self.node, [], f"{exc.status}:{exc.message}")
        return FoldReply(msg.req_id, self.partition, self.node, items)

    def fold(self, query: Any, firsts: frozenset[int]) -> Iterator[Any]:
        if isinstance(query, ListKeys):
            return self._live_keys(query.bucket_type, query.bucket, firsts)
        if isinstance(query, ListBuckets):
            return self._buckets(query.bucket_type)
        if isinstance(query, IndexQuery):
            return iter(self._index_query(query, firsts))
        raise ValueError(f"unknown fold {query!r}")

    def _owned(self, bkey: BKey, firsts: frozenset[int]) -> bool:
        return first_partition(key_hash(bkey), self.ring_size) in firsts

    def _live_keys(self, bucket_type: str, bucket: str, firsts: frozenset[int],
                   start: bytes = b"", end: bytes | None = None) -> Iterator[str]:
        prefix = encode_bucket_prefix(bucket_type, bucket)
        high = prefix + end if end is not None else prefix_end(prefix)
        for raw_key, raw in list(self.backend.fold_objects(self.partition, prefix + start)):
            if raw_key >= high:
                break
            bkey = decode_bkey(raw_key)
            if not self._owned(bkey, firsts):
                continue
            if not self.cache.decode_uncached(raw).is_tombstone:
                yield bkey.key

    def _buckets(self, bucket_type: str) -> Iterator[str]:
        prefix = encode_bucket_prefix(bucket_type)
        seen: set[str] = set()
        for raw_key in self.backend.fold_keys(self.partition, prefix, prefix_end(prefix)):
            bucket = decode_bkey(raw_key).bucket
            if bucket not in seen:
                seen.add(bucket)
                yield bucket

    def _index_query(self, q: IndexQuery, firsts: frozenset[int]) -> list[tuple[Term, str]]:
        if q.field == "$bucket":
            items: list[tuple[Term, str]] = [
                (k, k) for k in self._live_keys(q.bucket_type, q.bucket, firsts)]
        elif q.field == "$key":
            start = str(q.start).encode("utf-8", "surrogateescape")
            end = str(q.end).encode("utf-8", "surrogateescape") + b"\x00"
            items = [(k, k) for k in self._live_keys(q.bucket_type, q.bucket, firsts, start, end)]
        else:
            low, high = term_range(q.bucket_type, q.bucket, q.field, q.start, q.end)
            skip = len(field_prefix(q.bucket_type, q.bucket, q.field))
            items = []
            for entry in self.backend.index_range(self.partition, low, high):
                term, key = decode_term_and_key(q.field, entry[skip:])
                if self._owned(BKey(q.bucket_type, q.bucket, key), firsts):
                    items.append((term, key))
        if q.term_regex is not None:
            pattern = re.compile(q.term_regex)
            items = [(t, k) for t, k in items if pattern.search(str(t))]
        items = after_continuation(q, items)
        if q.max_results is not None:
            items.sort(key=lambda item: (item[0], item[1]))
            items = items[: q.max_results]
        return items


# Dispatch by message type: one dict lookup instead of a chain of isinstance checks per message.
_HANDLERS: dict[type, Callable[[Vnode, Any, int], list[Effect]]] = {
    Fetch: Vnode._fetch,
    CoordinatePut: Vnode._on_coordinate_put,
    Replicate: Vnode._on_replicate,
    CoordinateUpdate: Vnode._on_coordinate_update,
    Reap: Vnode._reap,
    Fold: Vnode._on_fold,
}


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])


_NO_ENTRIES: frozenset[bytes] = frozenset()


def _index_entries(bkey: BKey, obj: KVObject | None) -> frozenset[bytes] | set[bytes]:
    if obj is None:
        return _NO_ENTRIES
    for sibling in obj.siblings:
        if sibling.meta.indexes:
            break
    else:
        return _NO_ENTRIES  # most objects have no index terms: no set to build
    return {
        entry_key(bkey.type, bkey.bucket, field, term, bkey.key)
        for sibling in obj.live_siblings
        for field, term in sibling.meta.indexes
    }
