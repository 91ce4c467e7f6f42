"""One node's whole protocol: KV service, membership and gossip, failure detection, handoff.

The asyncio node and the simulator both drive a ClusterNode through the same four doors —
`start`, `submit`, `on_message`, `on_timer` — and execute the effects it returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sapwood.core import membership as ms
from sapwood.core.backend import Backend
from sapwood.core.consensus import RaftConfig
from sapwood.core.effects import Effect, Flush, Reply, Send, SetTimer
from sapwood.core.ensemble_groups import ENSEMBLE_RAFT_CONFIG, RingView
from sapwood.core.ensemble_messages import ENSEMBLE_MESSAGES, ENSEMBLE_TYPES, is_ensemble_timer
from sapwood.core.ensembles import EnsembleHost
from sapwood.core.errors import BadRequest, SapwoodError, Unavailable, error_from_status
from sapwood.core.failure import FailureDetector, Ping
from sapwood.core.handoff import HINTED_IDLE_MS as DEFAULT_HINTED_IDLE_MS
from sapwood.core.handoff import (
    HandoffAck,
    HandoffBatch,
    HandoffSender,
    Kind,
    TransferComplete,
)
from sapwood.core.kvobject import decode as decode_object
from sapwood.core.membership import ClusterState, Member, Status
from sapwood.core.messages import KV_MESSAGES
from sapwood.core.metadata import ClusterMetadata
from sapwood.core.records import fast_init
from sapwood.core.requests import DeleteRequest, GetRequest, PutRequest, Request
from sapwood.core.ring import Ring, decode_bkey
from sapwood.core.service import KVService, check_bkey

GOSSIP_INTERVAL_MS = 1_000
HANDOFF_TICK_MS = 1_000
STATE_KEY = b"cluster_state"
META_VERSION_PREFIX = b"mver/"
ADMIN_TIMEOUT_MS = 10_000


# --- messages ------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Gossip:
    sender: str
    state: list[Any]
    metadata: list[tuple[bytes, bytes, int, str]]  # (record key, value, ts, origin)


@fast_init
@dataclass(frozen=True, slots=True)
class AdminForward:
    """An admin operation sent to the claimant; the answer goes back to `origin`."""

    req_id: int
    origin: str
    op: str
    args: list[Any]


@fast_init
@dataclass(frozen=True, slots=True)
class AdminReply:
    req_id: int
    ok: bool
    result: Any  # the result, or [status, message]


@fast_init
@dataclass(frozen=True, slots=True)
class AdminRequest:
    """A client's cluster command: join, plan, commit, leave, force-remove, clear."""

    op: str
    args: tuple[Any, ...] = ()


CLAIMANT_OPS = ("stage-join", "plan", "commit", "leave", "force-remove", "clear")


@dataclass
class ClusterConfig:
    cluster_name: str = "sapwood"
    cluster_addr: str = ""
    http_url: str = ""
    ring_size: int = 64
    target_n_val: int = 4
    hinted_idle_ms: int = DEFAULT_HINTED_IDLE_MS
    # Timing of consistent groups: every node of a cluster must use the same values.
    raft: RaftConfig = ENSEMBLE_RAFT_CONFIG


class ClusterNode:
    def __init__(self, name: str, backend: Backend, incarnation: int, config: ClusterConfig,
                 rng: random.Random, state: ClusterState | None = None) -> None:
        self.name = name
        self.config = config
        self.rng = rng
        self.backend = backend
        me = Member(name, Status.VALID, config.cluster_addr, config.http_url)
        self.state = state or ClusterState.standalone(config.cluster_name, me, config.ring_size)
        self.detector = FailureDetector(name)
        self.metadata = ClusterMetadata()
        self.kv = KVService(name, Ring(self.state.owners), backend, incarnation, self.metadata,
                            self.detector.is_up)
        self.kv.load_metadata()
        self.kv.on_metadata_change = self._metadata_changed
        self.meta_versions: dict[bytes, tuple[int, str]] = self._load_meta_versions()
        self.handoff = HandoffSender(name, backend, self._delete_unchanged)
        self.ownership_done: set[tuple[int, str]] = set()
        self.addresses: dict[str, str] = {}
        self.pending_admin: dict[int, int] = {}  # req_id -> deadline
        self.ensembles = EnsembleHost(name, backend, rng, _ring_view(self.state),
                                      self.detector.is_up, config.raft, incarnation)
        self.ensembles.ring_confirmed = len(self.state.active_members) == 1
        self.now_ms = 0
        self._outbox: list[Effect] = []

    # --- doors --------------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        with self.backend.batch():
            restarted = self.ensembles.start(now_ms)
        return [*self.detector.start(now_ms), SetTimer(("gossip",), now_ms + GOSSIP_INTERVAL_MS),
                SetTimer(("handoff-tick",), now_ms + HANDOFF_TICK_MS), *restarted]

    def submit(self, req_id: int, request: Request | AdminRequest, now_ms: int) -> list[Effect]:
        with self.backend.batch():
            effects = self._submit(req_id, request, now_ms)
        return effects + self._drain() if self._outbox else effects

    def submit_all(self, requests: list[tuple[int, Request | AdminRequest]], now_ms: int
                   ) -> list[Effect]:
        """Several requests as one event: their writes share one backend batch (one commit),
        and every effect comes out after it, as submit's do."""
        effects: list[Effect] = []
        with self.backend.batch():
            for req_id, request in requests:
                effects += self._submit(req_id, request, now_ms)
        return effects + self._drain() if self._outbox else effects

    def drain(self) -> list[Effect]:
        """Effects of changes made outside the doors (bucket type and props changes)."""
        return self._drain()

    def _submit(self, req_id: int, request: Request | AdminRequest, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        if isinstance(request, AdminRequest):
            return self._admin(req_id, request, now_ms)
        if isinstance(request, (GetRequest, PutRequest, DeleteRequest)):  # a tuple: faster
            props = self._consistent_props(request)
            if props is not None:
                try:
                    check_bkey(request.bkey)
                except SapwoodError as exc:
                    return [Reply(req_id, exc)]
                self.kv.stats.count(type(request).__name__)
                return self.ensembles.submit(req_id, request, props, now_ms)
        return self.kv.submit(req_id, request, now_ms)

    def _consistent_props(self, request: GetRequest | PutRequest | DeleteRequest
                          ) -> dict[str, Any] | None:
        """The bucket's props when `request` is on a consistent bucket."""
        try:
            props = self.metadata.bucket_props(request.bkey.type, request.bkey.bucket)
        except SapwoodError:
            return None  # the KV path answers with the same error
        return props if props.get("consistent") else None

    def on_message(self, sender: str, msg: Any, now_ms: int) -> list[Effect]:
        with self.backend.batch():
            effects = self._on_message(sender, msg, now_ms)
        return effects + self._drain() if self._outbox else effects

    def on_messages(self, sender: str, msgs: list[Any], now_ms: int) -> list[Effect]:
        """Several messages from `sender`, in order, as one event: their writes share one
        backend batch (one commit), and every effect comes out after it, as on_message's do."""
        effects: list[Effect] = []
        with self.backend.batch():
            group: list[Any] = []  # consecutive consistent-group messages: one host event
            for msg in msgs:
                if type(msg) in ENSEMBLE_TYPES:
                    group.append(msg)
                    continue
                if group:
                    effects += self._on_ensemble_messages(sender, group, now_ms)
                    group = []
                effects += self._on_message(sender, msg, now_ms)
            if group:
                effects += self._on_ensemble_messages(sender, group, now_ms)
        return effects + self._drain() if self._outbox else effects

    def _on_ensemble_messages(self, sender: str, msgs: list[Any], now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        self.detector.heard(sender, now_ms)
        return self.ensembles.on_messages(sender, msgs, now_ms)

    def _on_message(self, sender: str, msg: Any, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        self.detector.heard(sender, now_ms)
        if type(msg) in KV_MESSAGES:  # most traffic: skip the checks for the rarer kinds
            return self.kv.on_message_in_batch(msg, now_ms)  # on_message holds the batch
        if isinstance(msg, Ping):
            # Members ping members; a node that is not in our peer set (one that has left and
            # still hands data off) hears from us only if we answer.
            return [] if sender in self.peers() else [Send(sender, Ping(self.name))]
        if isinstance(msg, Gossip):
            return self._on_gossip(msg, now_ms)
        if isinstance(msg, HandoffBatch):
            return self._on_handoff_batch(msg, now_ms)
        if isinstance(msg, HandoffAck):
            return self._on_handoff_ack(msg, now_ms)
        if isinstance(msg, TransferComplete):
            return self._on_transfer_complete(msg)
        if isinstance(msg, AdminForward):
            return self._on_admin_forward(msg)
        if isinstance(msg, AdminReply):
            return self._on_admin_reply(msg)
        if isinstance(msg, ENSEMBLE_MESSAGES):
            return self.ensembles.on_message(sender, msg, now_ms)
        return self.kv.on_message(msg, now_ms)

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        with self.backend.batch():
            effects = self._on_timer(key, now_ms)
        return effects + self._drain() if self._outbox else effects

    def _on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        kind = key[0]
        if kind == "heartbeat":
            self.detector.now_ms = max(self.detector.now_ms, now_ms)
            return self.detector.tick(self.peers(), now_ms)
        if kind == "gossip":
            return self._gossip_round(now_ms)
        if kind == "handoff-tick":
            return self._handoff_tick(now_ms)
        if kind == "handoff":
            self.handoff.on_timeout(key[1])
            return []
        if kind == "admin":
            if self.pending_admin.pop(key[1], None) is not None:
                return [Reply(key[1], Unavailable("the claimant did not answer in time"))]
            return []
        if is_ensemble_timer(key):
            return self.ensembles.on_timer(key, now_ms)
        return self.kv.on_timer(key, now_ms)

    def is_up(self, node: str) -> bool:
        return self.detector.is_up(node)

    def peers(self) -> list[str]:
        return [m for m in self.state.active_members if m != self.name]

    def address_of(self, node: str) -> str | None:
        member = self.state.member(node)
        if member is not None and member.cluster_addr:
            return member.cluster_addr
        return self.addresses.get(node)

    def _drain(self) -> list[Effect]:
        out, self._outbox = self._outbox, []
        return out

    # --- state changes ------------------------------------------------------------------------

    def _adopt(self, state: ClusterState) -> None:
        if state.owners != self.state.owners:
            self.ownership_done = {
                (p, t) for p, t in self.ownership_done if state.owners[p] == self.name
            }
            self.kv.ring = Ring(state.owners)
        self.state = state
        self.ensembles.set_ring(_ring_view(state))
        self.backend.meta_put(STATE_KEY, _pack(ms.state_to_wire(state)))
        # Durable before anyone acts on it: a claimant that forgot an epoch it had gossiped
        # could decide a different one under the same number (sim seeds 172, 174).
        self.backend.checkpoint()

    def _change(self, state: ClusterState) -> list[Effect]:
        """Adopt a state this node decided, and tell every member at once."""
        self._adopt(state)
        return self._broadcast()

    def _broadcast(self) -> list[Effect]:
        gossip = self._gossip_message()
        return [Send(peer, gossip) for peer in self.peers()]

    def _gossip_message(self) -> Gossip:
        records = []
        for key, (ts, origin) in self.meta_versions.items():
            value = self.backend.meta_get(key)
            if value is not None:
                records.append((key, value, ts, origin))
        return Gossip(self.name, ms.state_to_wire(self.state), records)

    def _gossip_round(self, now_ms: int) -> list[Effect]:
        effects: list[Effect] = [SetTimer(("gossip",), now_ms + GOSSIP_INTERVAL_MS)]
        peers = self.peers()
        if peers:
            effects.append(Send(self.rng.choice(peers), self._gossip_message()))
        return effects

    def _on_gossip(self, msg: Gossip, now_ms: int) -> list[Effect]:
        theirs = ms.state_from_wire(msg.state)
        if theirs.cluster_name != self.state.cluster_name:
            return []
        meta_changed = self._merge_metadata(msg.metadata)
        # A restarted node's ring may be old: its consistent groups found new members only once
        # a peer has told it the current one.
        self.ensembles.ring_confirmed = True
        if theirs.newer_than(self.state):
            self._adopt(theirs)
            return []
        if self.state.newer_than(theirs) or meta_changed:
            return [Send(msg.sender, self._gossip_message())]
        return []

    # --- metadata (bucket types and props) ----------------------------------------------------

    def _load_meta_versions(self) -> dict[bytes, tuple[int, str]]:
        versions = {}
        for key, value in self.backend.meta_items(META_VERSION_PREFIX):
            ts, origin = _unpack(value)
            versions[key[len(META_VERSION_PREFIX):]] = (ts, origin)
        return versions

    def _metadata_changed(self, record: tuple[bytes, bytes]) -> None:
        key = record[0]
        version = (self.now_ms, self.name)
        old = self.meta_versions.get(key)
        if old is not None and old >= version:
            version = (old[0] + 1, self.name)
        self.meta_versions[key] = version
        self.backend.meta_put(META_VERSION_PREFIX + key, _pack(list(version)))
        self._outbox += self._broadcast()

    def _merge_metadata(self, records: list[tuple[bytes, bytes, int, str]]) -> bool:
        """Last writer wins per record. Returns whether this node holds something newer."""
        newer_here = False
        theirs = set()
        for key, value, ts, origin in records:
            theirs.add(key)
            mine = self.meta_versions.get(key)
            if mine is None or (ts, origin) > mine:
                self.meta_versions[key] = (ts, origin)
                self.backend.meta_put(key, value)
                self.backend.meta_put(META_VERSION_PREFIX + key, _pack([ts, origin]))
                self.metadata.load([(key, value)])
            elif mine > (ts, origin):
                newer_here = True
        return newer_here or bool(set(self.meta_versions) - theirs)

    # --- admin --------------------------------------------------------------------------------

    def _admin(self, req_id: int, request: AdminRequest, now_ms: int) -> list[Effect]:
        if request.op == "join":
            return self._join(req_id, request.args, now_ms)
        if request.op not in CLAIMANT_OPS:
            return [Reply(req_id, BadRequest(f"unknown cluster operation {request.op!r}"))]
        if self.state.claimant == self.name:
            try:
                result, effects = self._claimant_op(request.op, list(request.args))
            except SapwoodError as exc:
                return [Reply(req_id, exc)]
            return [*effects, Reply(req_id, result)]
        self.pending_admin[req_id] = now_ms + ADMIN_TIMEOUT_MS
        return [Send(self.state.claimant, AdminForward(req_id, self.name, request.op,
                                                       list(request.args))),
                SetTimer(("admin", req_id), now_ms + ADMIN_TIMEOUT_MS)]

    def _join(self, req_id: int, args: tuple[Any, ...], now_ms: int) -> list[Effect]:
        target, address = args
        if target == self.name:
            return [Reply(req_id, BadRequest("a node cannot join itself"))]
        if self.ensembles.has_state():
            # Its consistent groups would clash with the cluster's groups of the same names.
            return [Reply(req_id, BadRequest(
                f"{self.name} holds data of consistent bucket types; only a node without "
                "consistent data can join a cluster"))]
        if len(self.state.active_members) > 1:
            return [Reply(req_id, BadRequest(
                f"{self.name} is already in a cluster of {len(self.state.active_members)} "
                "members; leave it first"))]
        self.addresses[target] = address
        me = Member(self.name, Status.JOINING, self.config.cluster_addr, self.config.http_url)
        self.pending_admin[req_id] = now_ms + ADMIN_TIMEOUT_MS
        wire = [me.name, me.status.value, me.cluster_addr, me.http_url]
        return [Send(target, AdminForward(req_id, self.name, "stage-join", [wire])),
                SetTimer(("admin", req_id), now_ms + ADMIN_TIMEOUT_MS)]

    def _on_admin_forward(self, msg: AdminForward) -> list[Effect]:
        if self.state.claimant != self.name:
            # Not (or no longer) the claimant: pass it on, the answer still goes to the origin.
            return [Send(self.state.claimant, msg)]
        if msg.op == "stage-join":
            name, _, addr, _ = msg.args[0]
            self.addresses[name] = addr
        try:
            result, effects = self._claimant_op(msg.op, msg.args)
        except SapwoodError as exc:
            return [Send(msg.origin, AdminReply(msg.req_id, False, [exc.status, exc.message]))]
        return [*effects, Send(msg.origin, AdminReply(msg.req_id, True, result))]

    def _on_admin_reply(self, msg: AdminReply) -> list[Effect]:
        if self.pending_admin.pop(msg.req_id, None) is None:
            return []
        if not msg.ok:
            status, message = msg.result
            return [Reply(msg.req_id, error_from_status(status, message))]
        if isinstance(msg.result, dict) and "state" in msg.result:
            # The answer to our join: the cluster's state replaces our standalone one.
            self._adopt(ms.state_from_wire(msg.result.pop("state")))
            return [Reply(msg.req_id, msg.result), *self._broadcast()]
        return [Reply(msg.req_id, msg.result)]

    def _claimant_op(self, op: str, args: list[Any]) -> tuple[Any, list[Effect]]:
        state = self.state
        if op == "stage-join":
            name, _, addr, http = args[0]
            new = ms.stage_join(state, Member(name, Status.JOINING, addr, http))
            effects = self._change(new)
            return {"staged": _staged(new), "state": ms.state_to_wire(new)}, effects
        if op == "plan":
            owners, moves = ms.plan(state, self.config.target_n_val)
            return self._plan_summary(owners, moves), []
        if op == "commit":
            owners, moves = ms.plan(state, self.config.target_n_val)
            summary = self._plan_summary(owners, moves)
            return summary, self._change(ms.commit(state, self.config.target_n_val))
        if op == "leave":
            node = args[0] if args else self.name
            new = ms.stage_leave(state, node)
            return {"staged": _staged(new)}, self._change(new)
        if op == "force-remove":
            new = ms.stage_force_remove(state, args[0])
            return {"staged": _staged(new)}, self._change(new)
        new = ms.clear_staged(state)
        return {"staged": []}, self._change(new)

    def _plan_summary(self, owners: tuple[str, ...], moves: list[Any]) -> dict[str, Any]:
        size = len(owners)
        share = {m: round(100 * owners.count(m) / size, 2) for m in sorted(set(owners))}
        return {"staged": _staged(self.state), "transfers": len(moves),
                "moves": [list(m) for m in moves], "ownership_after": share}

    # --- handoff ------------------------------------------------------------------------------

    def _delete_unchanged(self, partition: int, key: bytes, value: bytes) -> None:
        self.kv.vnode(partition).delete_if_unchanged(key, value)

    def handoff_candidates(self) -> list[tuple[int, str, Kind]]:
        """Partitions that are to move to another owner, or whose data here belongs elsewhere."""
        owners = self.state.owners
        future = self.state.next_owners or owners
        out = [
            (p, future[p], Kind.OWNERSHIP) for p, owner in enumerate(owners)
            if owner == self.name and future[p] != self.name
            and (p, future[p]) not in self.ownership_done
        ]
        for partition in self.backend.partitions():
            if partition >= len(owners):
                continue  # not a ring partition (consistent groups keep their state there)
            if owners[partition] != self.name and future[partition] != self.name:
                out.append((partition, owners[partition], Kind.HINTED))
        return out

    def _handoff_tick(self, now_ms: int) -> list[Effect]:
        return [SetTimer(("handoff-tick",), now_ms + HANDOFF_TICK_MS),
                *self._unconfirmed_transfers(), *self._start_handoffs(now_ms)]

    def _unconfirmed_transfers(self) -> list[Effect]:
        """TransferComplete again for finished transfers the ring does not show yet: the first
        one may have been lost, and the plan would never finish (sim seed 19)."""
        future = self.state.next_owners
        if not future:
            return []
        return [Send(self.state.claimant, TransferComplete(partition, self.name, target))
                for partition, target in sorted(self.ownership_done)
                if self.state.owners[partition] == self.name and future[partition] == target]

    def _start_handoffs(self, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        for partition, target, kind in self.handoff_candidates():
            if not self.handoff.can_start():
                break
            if self.handoff.busy(partition) or not self.is_up(target):
                continue
            if kind is Kind.OWNERSHIP and self.ensembles.holds(partition):
                continue  # its consistent groups must replace this node's member first
            if kind is Kind.HINTED and self._recently_written(partition, now_ms):
                continue
            effects += self.handoff.start(partition, target, kind, now_ms)
        return effects

    def _recently_written(self, partition: int, now_ms: int) -> bool:
        vnode = self.kv.vnodes.get(partition)
        return vnode is not None and now_ms - vnode.last_write_ms < self.config.hinted_idle_ms

    def _on_handoff_batch(self, msg: HandoffBatch, now_ms: int) -> list[Effect]:
        ack = HandoffAck(msg.transfer_id, msg.partition, msg.seq, self.name)
        try:
            vnode = self.kv.vnode(msg.partition)
            for raw_key, raw_obj in msg.items:
                bkey = decode_bkey(raw_key)
                props = self.metadata.bucket_props(bkey.type, bkey.bucket)
                vnode.merge_handoff(raw_key, decode_object(raw_obj), props["allow_mult"], now_ms)
        except SapwoodError as exc:
            return [Send(msg.sender, HandoffAck(msg.transfer_id, msg.partition, msg.seq,
                                                self.name, exc.message))]
        return [Flush(msg.sender, ack)]

    def _on_handoff_ack(self, msg: HandoffAck, now_ms: int) -> list[Effect]:
        effects, finished = self.handoff.on_ack(msg, now_ms)
        if finished is None:
            return effects
        if finished.kind is Kind.OWNERSHIP:
            self.ownership_done.add((finished.partition, finished.target))
            done = TransferComplete(finished.partition, self.name, finished.target)
            effects.append(Send(self.state.claimant, done))
        # A transfer slot is free: use it now rather than at the next tick.
        return effects + self._start_handoffs(now_ms)

    def _on_transfer_complete(self, msg: TransferComplete) -> list[Effect]:
        if self.state.claimant != self.name:
            return [Send(self.state.claimant, msg)]
        new = ms.complete_transfer(self.state, msg.partition, msg.source, msg.target)
        if new is self.state:
            return []
        return self._change(new)

    # --- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.state
        size = len(state.owners)
        members = []
        for m in state.members:
            members.append({
                "name": m.name, "status": m.status.value, "up": self.is_up(m.name),
                "ownership": round(100 * state.owners.count(m.name) / size, 2),
                "pending_ownership": round(
                    100 * (state.next_owners or state.owners).count(m.name) / size, 2),
                "http": m.http_url, "cluster": m.cluster_addr,
            })
        return {
            "cluster_name": state.cluster_name, "claimant": state.claimant, "epoch": state.epoch,
            "ring_size": size, "members": members, "staged": _staged(state),
            "transfers_pending": len(state.transfers_pending),
            "handoffs": {
                "active": [t.describe() for t in self.handoff.active()],
                "waiting": [[p, t, k.value] for p, t, k in self.handoff_candidates()],
                "completed_recently": self.handoff.completed[-10:],
            },
        }


def _ring_view(state: ClusterState) -> RingView:
    return RingView(state.owners, state.next_owners)


def _staged(state: ClusterState) -> list[list[str]]:
    return [[s.action, s.node] for s in state.staged]


def _pack(value: Any) -> bytes:
    import msgpack

    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, raw=False)


def load_state(backend: Backend) -> ClusterState | None:
    raw = backend.meta_get(STATE_KEY)
    return None if raw is None else ms.state_from_wire(_unpack(raw))
