"""The KV service of one node: turns client requests into coordinators and routes messages.

Messages between this node's own coordinators and vnodes are delivered here, synchronously, so a
driver only sees what must leave the node: remote sends, client replies, timers and flushes. The
asyncio node, the embedded store and the simulator all drive this same object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sapwood.core import limits
from sapwood.core.backend import Backend
from sapwood.core.bucket import resolve_quorum
from sapwood.core.coordinator import (
    DeleteCoordinator,
    GetCoordinator,
    PutCoordinator,
    Quorums,
    WriteMode,
    timer_key,
)
from sapwood.core.coverage import CoverageCoordinator, plan_coverage
from sapwood.core.datatypes import StateCache
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.ensemble_objects import refuse_consistent_context
from sapwood.core.errors import BadRequest, Conflict, SapwoodError
from sapwood.core.index import IndexQuery, check_index_count
from sapwood.core.kvobject import DecodeCache, KVObject, Metadata, check_value_size
from sapwood.core.messages import (
    CoordinatePutReply,
    CoordinateUpdate,
    Fetch,
    FetchReply,
    FoldReply,
    StoreAck,
)
from sapwood.core.metadata import ClusterMetadata
from sapwood.core.requests import (
    CoverageRequest,
    DeleteRequest,
    GetRequest,
    ListBuckets,
    ListKeys,
    PutRequest,
    Request,
    UpdateRequest,
)
from sapwood.core.ring import BKEY_CACHE_ENTRIES, BKey, PreflistEntry, Ring
from sapwood.core.vnode import Vnode

Coordinator = GetCoordinator | PutCoordinator | DeleteCoordinator | CoverageCoordinator
# Consistent buckets keep their objects in their groups' registers, which no coverage plan folds.
_CONSISTENT_COVERAGE: dict[type, str] = {
    ListKeys: "listing keys is not supported on consistent bucket types",
    ListBuckets: "listing buckets is not supported on consistent bucket types",
    IndexQuery: "secondary indexes are not supported on consistent bucket types",
}
_REPLIES = frozenset({FetchReply, CoordinatePutReply, StoreAck, FoldReply})
QUORUM_CACHE_ENTRIES = 1024  # (value, n_val, name, default) combinations resolved once


@dataclass(slots=True)
class ServiceStats:
    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, ok: bool = True) -> None:
        table = self.requests if ok else self.errors
        table[name] = table.get(name, 0) + 1


def check_bkey(bkey: BKey) -> None:
    problem = _bkey_problem(bkey)
    if problem:
        raise BadRequest(problem)


@lru_cache(maxsize=BKEY_CACHE_ENTRIES)
def _bkey_problem(bkey: BKey) -> str:
    """What is wrong with the names of `bkey` ("" when nothing): hot keys are checked once."""
    for part, limit, what in (
        (bkey.type, limits.MAX_TYPE_BYTES, "bucket type"),
        (bkey.bucket, limits.MAX_BUCKET_BYTES, "bucket"),
        (bkey.key, limits.MAX_KEY_BYTES, "key"),
    ):
        size = len(part.encode("utf-8", "surrogateescape"))
        if size == 0:
            return f"{what} name must not be empty"
        if size > limit:
            return f"{what} name is {size} bytes; the limit is {limit}"
    return ""


@lru_cache(maxsize=QUORUM_CACHE_ENTRIES)
def _quorum(value: Any, n_val: int, name: str, default: Any) -> int:
    """`resolve_quorum` of a request's value against a bucket's n_val and its default for `name`
    (a handful of combinations, resolved on every request)."""
    return resolve_quorum(value, {"n_val": n_val, name: default}, name)


@lru_cache(maxsize=QUORUM_CACHE_ENTRIES)
def _write_mode(allow_mult: bool, last_write_wins: bool, delete_mode: int | str) -> WriteMode:
    return WriteMode(allow_mult, last_write_wins, delete_mode)


# Quorums by their values: a frozen dataclass costs ~2 us to build (a setattr per field), and
# every request needs one of a handful.
@lru_cache(maxsize=QUORUM_CACHE_ENTRIES)
def _read_quorums(n: int, r: int, pr: int, notfound_ok: bool, basic_quorum: bool) -> Quorums:
    return Quorums(n=n, r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum)


@lru_cache(maxsize=QUORUM_CACHE_ENTRIES)
def _write_quorums(n: int, w: int, dw: int, pw: int) -> Quorums:
    return Quorums(n=n, w=w, dw=dw, pw=pw)


def _resolve(value: Any, props: dict[str, Any], name: str) -> int:
    value = value if value is not None else "default"
    try:
        return _quorum(value, props["n_val"], name, props.get(name))
    except TypeError:  # an unhashable value: resolve_quorum says what is wrong with it
        return resolve_quorum(value, props, name)


def _timeout(value: int | None) -> int:
    if value is None:
        return limits.DEFAULT_TIMEOUT_MS
    if not 1 <= value <= limits.MAX_TIMEOUT_MS:
        raise BadRequest(f"timeout must be from 1 to {limits.MAX_TIMEOUT_MS} ms")
    return value


class KVService:
    def __init__(
        self,
        node: str,
        ring: Ring,
        backend: Backend,
        incarnation: int,
        metadata: ClusterMetadata | None = None,
        is_up: Callable[[str], bool] | None = None,
    ) -> None:
        self.node = node
        self.ring = ring
        self.backend = backend
        self.incarnation = incarnation
        self.metadata = metadata or ClusterMetadata()
        self.is_up = is_up or (lambda _node: True)
        self.vnodes: dict[int, Vnode] = {}
        self.decode_cache = DecodeCache()
        self.state_cache = StateCache()
        self.coordinators: dict[int, Coordinator] = {}
        self._finished: list[int] = []
        self.commit_is_durable = False
        self.stats = ServiceStats()
        # Called with each changed metadata record, so a cluster can spread it.
        self.on_metadata_change: Callable[[tuple[bytes, bytes]], None] | None = None

    # --- vnodes -------------------------------------------------------------------------------

    def vnode(self, partition: int) -> Vnode:
        vnode = self.vnodes.get(partition)
        if vnode is None:
            vnode = self.vnodes[partition] = Vnode(
                self.node, partition, self.backend, self.incarnation, self.ring.size,
                self.decode_cache, self.state_cache)
            vnode.commit_is_durable = self.commit_is_durable
        return vnode

    def set_commit_durable(self, value: bool) -> None:
        """Tell vnodes whether a committed write is already durable (no separate flush)."""
        self.commit_is_durable = value
        for vnode in self.vnodes.values():
            vnode.commit_is_durable = value

    def preflist(self, bkey: BKey, n_val: int) -> list[PreflistEntry]:
        members = self.ring.members
        is_up = self.is_up
        for member in members:
            if not is_up(member):
                break
        else:
            return self.ring.preflist(bkey, n_val)  # all up: no set to build
        return self.ring.preflist(bkey, n_val, frozenset(m for m in members if is_up(m)))

    # --- client requests ----------------------------------------------------------------------

    def submit(self, req_id: int, request: Request, now_ms: int) -> list[Effect]:
        try:
            coordinator = self._coordinator(req_id, request)
        except SapwoodError as exc:
            self.stats.count(type(request).__name__, ok=False)
            return [Reply(req_id, exc)]
        self.stats.count(type(request).__name__)
        if type(coordinator) is GetCoordinator and self._all_local(coordinator.preflist):
            # Every replica is here (always, on one node): read them in this step rather than
            # message ourselves; the coordinator is done before this returns.
            with self.backend.batch():
                return self._settle(coordinator.read_locally(self._read_replica, now_ms), now_ms)
        self.coordinators[req_id] = coordinator
        return self._run(coordinator.start(now_ms), now_ms, req_id)

    def _all_local(self, preflist: list[PreflistEntry]) -> bool:
        node = self.node
        if self.ring.members == (node,):
            return True  # one node: no generator to run
        return all(entry.node == node for entry in preflist)

    def _read_replica(self, partition: int, bkey: BKey) -> KVObject | None:
        vnode = self.vnodes.get(partition)
        return (vnode or self.vnode(partition)).read_replica(bkey)

    def _coordinator(self, req_id: int, request: Request) -> Coordinator:
        if isinstance(request, CoverageRequest):
            return self._coverage(req_id, request)
        check_bkey(request.bkey)
        props = self.metadata.bucket_props(request.bkey.type, request.bkey.bucket)
        if props.get("consistent"):
            if isinstance(request, UpdateRequest):
                raise BadRequest(f"bucket type {request.bkey.type!r} is consistent: data types "
                                 "and counters are not supported on consistent bucket types")
            # ClusterNode routes these to its consistent groups; the KV path must never serve
            # them (it would answer without consensus).
            raise SapwoodError("consistent buckets are served by the node's consistent groups")
        n = props["n_val"]
        mode = _write_mode(props["allow_mult"], props["last_write_wins"], props["delete_mode"])
        preflist = self.preflist(request.bkey, n)
        timeout = _timeout(request.timeout_ms)
        if isinstance(request, GetRequest):
            return GetCoordinator(req_id, self.node, request.bkey, preflist,
                                  self._read_quorums(request, props), mode, timeout)
        if isinstance(request, UpdateRequest):
            return self._update(req_id, request, props, preflist, mode, timeout)
        refuse_consistent_context(request.context)
        if props.get("datatype") is not None and isinstance(request, PutRequest):
            raise BadRequest(
                f"bucket type {request.bkey.type!r} holds {props['datatype']} data types: "
                "write them through /types/T/buckets/B/datatypes/K, not /keys/")
        if isinstance(request, PutRequest):
            check_value_size(request.value)
            check_index_count(request.meta.indexes)
            return PutCoordinator(
                req_id, self.node, request.bkey, preflist, self._write_quorums(request, props),
                mode, timeout, request.value, request.meta, request.context, request.return_body,
            )
        return DeleteCoordinator(req_id, self.node, request.bkey, preflist,
                                 self._delete_quorums(request, props), mode, timeout,
                                 request.context)

    def _update(self, req_id: int, request: UpdateRequest, props: dict[str, Any],
                preflist: list[PreflistEntry], mode: WriteMode, timeout: int) -> PutCoordinator:
        if request.legacy:
            if not props["allow_mult"]:
                raise Conflict("counters require bucket property 'allow_mult=true'")
            if props.get("datatype") is not None:
                raise BadRequest("use the datatypes API on a datatype bucket type")
        elif props.get("datatype") is None:
            raise BadRequest(f"bucket type {request.bkey.type!r} has no datatype; create one with "
                             '{"props":{"datatype":"set"}} (or counter, gset, hll, map)')
        elif props["datatype"] != request.type_name:
            raise BadRequest(f"bucket type {request.bkey.type!r} holds {props['datatype']}s, "
                             f"not {request.type_name}s")
        update = CoordinateUpdate(
            req_id, self.node, -1, request.bkey, request.type_name, request.op, request.context,
            props.get("hll_precision", 14), request.legacy,
        )
        return PutCoordinator(
            req_id, self.node, request.bkey, preflist, self._write_quorums(request, props),
            mode, timeout, b"", Metadata(), {}, request.return_body, update=update,
        )

    @staticmethod
    def _read_quorums(request: GetRequest, props: dict[str, Any]) -> Quorums:
        return _read_quorums(
            props["n_val"],
            _resolve(request.r, props, "r"),
            _resolve(request.pr, props, "pr"),
            props["notfound_ok"] if request.notfound_ok is None else request.notfound_ok,
            props["basic_quorum"] if request.basic_quorum is None else request.basic_quorum,
        )

    @staticmethod
    def _write_quorums(
        request: PutRequest | UpdateRequest | DeleteRequest, props: dict[str, Any]
    ) -> Quorums:
        return _write_quorums(props["n_val"], _resolve(request.w, props, "w"),
                              _resolve(request.dw, props, "dw"), _resolve(request.pw, props, "pw"))

    def _delete_quorums(self, request: DeleteRequest, props: dict[str, Any]) -> Quorums:
        rw = _resolve(request.rw, props, "rw")
        writes = self._write_quorums(request, props)
        return Quorums(
            n=props["n_val"], r=_resolve(request.r, props, "r") if request.r is not None else rw,
            pr=_resolve(request.pr, props, "pr"), w=writes.w if request.w is not None else rw,
            dw=writes.dw, pw=writes.pw, notfound_ok=props["notfound_ok"],
            basic_quorum=props["basic_quorum"],
        )

    def _coverage(self, req_id: int, request: CoverageRequest) -> CoverageCoordinator:
        query = request.query
        if isinstance(query, ListBuckets):
            props = self.metadata.active_type(query.bucket_type)
        else:
            props = self.metadata.bucket_props(query.bucket_type, query.bucket)
        if props.get("consistent"):
            raise BadRequest(_CONSISTENT_COVERAGE.get(type(query), _CONSISTENT_COVERAGE[ListKeys]))
        n_val = props["n_val"]
        plan = plan_coverage(self.ring, n_val, self.is_up)
        return CoverageCoordinator(req_id, self.node, query, plan, _timeout(request.timeout_ms),
                                   request.stream and isinstance(query, ListKeys | ListBuckets))

    # --- bucket types and properties ---------------------------------------------------------

    def _persist(self, record: tuple[bytes, bytes]) -> None:
        self.backend.meta_put(*record)
        if self.on_metadata_change is not None:
            self.on_metadata_change(record)

    def create_type(self, name: str, body: Any) -> None:
        self._persist(self.metadata.create_type(name, body))

    def activate_type(self, name: str) -> None:
        self._persist(self.metadata.activate_type(name))

    def update_type(self, name: str, body: Any) -> None:
        self._persist(self.metadata.update_type(name, body))

    def set_bucket_props(self, bucket_type: str, bucket: str, body: Any) -> None:
        self._persist(self.metadata.set_bucket_props(bucket_type, bucket, body))

    def reset_bucket_props(self, bucket_type: str, bucket: str) -> None:
        self._persist(self.metadata.reset_bucket_props(bucket_type, bucket))

    def load_metadata(self) -> None:
        self.metadata.load(list(self.backend.meta_items(b"type/")))
        self.metadata.load(list(self.backend.meta_items(b"bucket/")))

    # --- events -------------------------------------------------------------------------------

    def on_message(self, msg: Any, now_ms: int) -> list[Effect]:
        with self.backend.batch():
            return self._settle(self._deliver(msg, now_ms), now_ms)

    def on_message_in_batch(self, msg: Any, now_ms: int) -> list[Effect]:
        """`on_message` for a caller that already holds a backend batch (the cluster node)."""
        return self._settle(self._deliver(msg, now_ms), now_ms)

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        if key[0] == "request":
            coordinator = self.coordinators.get(key[1])
            if coordinator is None:
                return []
            return self._run(coordinator.on_timer(key, now_ms), now_ms, key[1])
        if key[0] == "reap":
            return self._run(self.vnode(key[1]).on_timer(key, now_ms), now_ms)
        return []

    def _run(self, effects: list[Effect], now_ms: int, req_id: int | None = None) -> list[Effect]:
        """Deliver local messages until only effects for the outside world remain."""
        with self.backend.batch():
            return self._settle(effects, now_ms, req_id)

    def _settle(self, effects: list[Effect], now_ms: int, req_id: int | None = None
                ) -> list[Effect]:
        """`_run` inside a batch the caller holds."""
        node = self.node
        out = effects  # most often nothing is for this node: the effects go out as they are
        for effect in effects:
            if type(effect) is Send and effect.to == node:
                out = self._deliver_locally(effects, now_ms)
                break
        if req_id is not None:
            self._forget_if_done(req_id)
        if self._finished:
            out = self._disarm_finished(out)
        return out

    def _deliver_locally(self, effects: list[Effect], now_ms: int) -> list[Effect]:
        """Deliver this node's own messages, and theirs, until none is left; return the rest.

        Breadth first: each round's local deliveries are handled in order, their effects form
        the next round (the order a FIFO queue gives, without one).
        """
        node = self.node
        deliver = self._deliver
        out: list[Effect] = []
        pending: list[Any] = effects
        while pending:
            produced: list[Any] = []
            for effect in pending:
                kind = type(effect)
                if kind is Send and effect.to == node:
                    msg = effect.msg
                    if type(msg) is Fetch and msg.coordinator == node:
                        # A read of our own replica for our own coordinator (every read on one
                        # node): its reply goes in bare, and is delivered in the next round, just
                        # where its Send to ourselves would have been.
                        produced.append(self._local_fetch(msg))
                    else:
                        produced += deliver(msg, now_ms)
                elif kind is FetchReply:
                    produced += deliver(effect, now_ms)
                else:
                    out.append(effect)
            pending = produced
        return out

    def _local_fetch(self, msg: Fetch) -> FetchReply:
        vnode = self.vnodes.get(msg.partition)
        return (vnode or self.vnode(msg.partition)).fetch_reply(msg)

    def _disarm_finished(self, out: list[Effect]) -> list[Effect]:
        """Timeouts of finished requests need not stay armed (a timer per request adds up);
        one armed and finished in the same step is never armed at all."""
        if len(self._finished) == 1:  # the usual step: one request finished, no set to build
            key = timer_key(self._finished.pop())
            kept = [e for e in out if type(e) is not SetTimer or e.key != key]
            if len(kept) == len(out):
                kept.append(CancelTimer(key))
            return kept
        finished = {timer_key(done) for done in self._finished}
        self._finished.clear()
        armed_here = {e.key for e in out if type(e) is SetTimer and e.key in finished}
        if armed_here:
            out = [e for e in out if not (type(e) is SetTimer and e.key in armed_here)]
            finished -= armed_here
        return out + [CancelTimer(key) for key in finished]  # a new list: `out` may be shared

    def _deliver(self, msg: Any, now_ms: int) -> list[Effect]:
        if type(msg) in _REPLIES:
            coordinator = self.coordinators.get(msg.req_id)
            if coordinator is None:
                return []
            effects = coordinator.on_message(msg, now_ms)
            if coordinator.done:
                self.coordinators.pop(msg.req_id, None)
                self._finished.append(msg.req_id)
            return effects
        partition = getattr(msg, "partition", None)
        if partition is None:
            return []
        vnode = self.vnodes.get(partition)
        return (vnode or self.vnode(partition)).handle(msg, now_ms)

    def _forget_if_done(self, req_id: int) -> None:
        coordinator = self.coordinators.get(req_id)
        if coordinator is not None and coordinator.done:
            del self.coordinators[req_id]
            self._finished.append(req_id)


def flushes(effects: list[Effect]) -> list[Flush]:
    return [e for e in effects if isinstance(e, Flush)]


def replies(effects: list[Effect]) -> list[Reply]:
    return [e for e in effects if isinstance(e, Reply)]


def timers(effects: list[Effect]) -> list[SetTimer]:
    return [e for e in effects if isinstance(e, SetTimer)]
