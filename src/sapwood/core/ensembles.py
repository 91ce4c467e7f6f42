"""A node's share of the consistent groups: the Raft replicas it hosts and the client operations
it coordinates on consistent buckets. Owned by ClusterNode, driven through its doors.

Members. A node hosts member "{p}@{node}" of group g while it owns partition p and p is one of
g's primaries (after the running plan, if one runs). A member is created on first use (a client
operation or a message for it) and then lives, its state in the backend, until the group removes
it. A new member founds the group with the ring's primaries as voters when the ring is settled
and confirmed by a peer (not one read from disk at a restart); otherwise it joins empty and waits
to be added. Founding is safe because a member with an empty log gets no vote from a member
holding entries, and because a partition only changes owner once every group with state on it
has replaced that member (the partition's handoff waits, see `holds`): the members holding a
group's committed entries are a majority of voters that are all ring primaries, so fresh
founders cannot outvote them. (The one gap: two nodes founding a never-used group from ring
views that differ in two or more of its primaries, which gossip closes within seconds.) A
founder's voters may include members that joined empty; the group's first leader writes the
founding voter set into the log (`RaftReplica._first_command`), so that they learn they vote.

Dropping members. A member's node drops it (`ensemble_following`) once the group has committed
its removal; without waiting, if it stores no log (no entry, no snapshot) and waits for a group
the settled ring does not have, or the ring no longer wants it and no message of its group
reached it for ORPHAN_QUIET_MS. A member without a log holds no committed entry (committed
entries are never truncated, only compacted into a snapshot), so no commit counted on it and
the founding argument above, about the holders of committed entries, holds without it. What it
may have given is a vote: its hard state (term, vote) is kept under its own key when it is
dropped (any member, for any reason), and a member created again under the same id starts from
it, so no member ever votes twice in one term. (The liveness gap left: a leaving member with a
log that needs the vote of a leaving member without one, cut off from it for longer than
ORPHAN_QUIET_MS, waits for good once that one is dropped.)

The ring changes themselves are followed in `ensemble_following`.

Client operations are coordinated in `ensemble_coordinating`: they go to a local member of the
key's group if there is one (it knows the leader), else to the group's primaries; see
`ensemble_ops` for retries and timeouts. A write is asked again only after an answer saying it
was not applied; two answers could say so wrongly, and answer "indeterminate" instead: a member
dropped with the write open in its log, and a node restarted moments ago, whose call may be a
duplicate of one its previous process ran.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from sapwood.core.backend import Backend
from sapwood.core.consensus import (
    DurableState,
    Get,
    HardState,
    Indeterminate,
    NotLeader,
    Persist,
    RaftConfig,
    RaftReplica,
    RaftTimer,
    Result,
    TimerKind,
    Unavailable,
)
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.ensemble_coordinating import MAX_OPEN_CALLS, OpCoordinator
from sapwood.core.ensemble_following import RingFollower
from sapwood.core.ensemble_groups import (
    ENSEMBLE_RAFT_CONFIG,
    RingView,
    member_node,
    member_partition,
    members_under,
)
from sapwood.core.ensemble_members import (
    Call,
    CallKind,
    HostCounters,
    Hosted,
    RecentKeys,
    stats_view,
    status_row,
)
from sapwood.core.ensemble_messages import (
    OPS_TIMER,
    REPLICA_TIMER,
    TICK_TIMER,
    EnsembleAnswer,
    EnsembleCall,
    EnsembleEnvelope,
    EnsemblePersisted,
    EnsembleRetired,
    EnsembleRetireQuery,
    replica_timer,
)
from sapwood.core.ensemble_objects import ConsistentRequest
from sapwood.core.ensemble_ops import CALL_TIMEOUT_MS, ConsistentOp
from sapwood.core.ensemble_storage import MemberStorage, StoredMember, load_kept, load_members
from sapwood.core.ensemble_wakes import OpWakes
from sapwood.core.errors import BadRequest, SapwoodError
from sapwood.core.ring import Ring

TICK_MS = 500  # membership changes, retirement queries, suspicion expiry
MAX_HOSTED_MEMBERS = 16_384  # members one node hosts (ring partitions x n_vals in use)
REMEMBERED_CALLS = 4_096  # calls from other nodes remembered, so a duplicate is run only once
# After a restart, writes of other nodes are answered "indeterminate" for this long: a call may be
# a duplicate of one the previous process ran (its memory of calls is gone), and an answer to it
# would be taken as the outcome of the only run. Its coordinator stops listening to a call after
# CALL_TIMEOUT_MS (on its own clock: the margin covers clock rates); after that, no call sent
# before the restart is still waiting for an answer.
RESTART_WRITE_GRACE_MS = CALL_TIMEOUT_MS + CALL_TIMEOUT_MS // 4


class EnsembleHost(OpCoordinator, RingFollower):
    def __init__(self, node: str, backend: Backend, rng: random.Random, ring: RingView,
                 is_up: Callable[[str], bool], config: RaftConfig = ENSEMBLE_RAFT_CONFIG,
                 incarnation: int = 0) -> None:
        self.node = node
        self.backend = backend
        self.rng = rng
        self.config = config
        self.is_up = is_up
        self.ring = ring
        self._hash_ring = Ring(ring.owners)
        self.hosted: dict[tuple[str, str], Hosted] = {}
        self._by_group: dict[str, list[Hosted]] = {}  # the same members, by group
        # group -> (its members under the ring's owners, then those and the planned ones), for
        # the ring object `_members_ring`.
        self._members: dict[str, tuple[tuple[str, ...], list[str]]] = {}
        self._members_ring: RingView | None = None
        self.ops: dict[int, ConsistentOp] = {}
        self.calls: dict[int, Call] = {}
        self.leaders: dict[str, str] = {}  # group -> the member that last answered as leader
        self.suspects: dict[str, int] = {}  # node -> until when it is asked last
        self.reconfiguring: dict[str, int] = {}  # group -> call id of its change in flight
        self.counters = HostCounters()
        self.now_ms = 0
        # Call ids never repeat across restarts (incarnations), so the members of other nodes
        # can tell a duplicated call from a new one.
        self._call_ids = itertools.count((incarnation << 32) + 1)
        self._seen_calls = RecentKeys(REMEMBERED_CALLS)
        self._restarted = incarnation > 1
        self._writes_trusted_from_ms = 0  # see RESTART_WRITE_GRACE_MS
        self._generations = itertools.count(1)
        self._queue: deque[tuple[Hosted, list[Any]]] = deque()
        self._wakes = OpWakes()
        self._out: list[Effect] = []
        self._flushes: dict[tuple[str, str], EnsemblePersisted] = {}
        self._ticking = False
        self._started = False
        # Set by a driver whose backend batch commit is the durability it promises (see
        # `_finish`); never by the simulator, whose crashes lose unflushed writes.
        self.commit_is_durable = False
        # Whether the ring is known to be current (not one read from disk at a restart): only
        # then may new members be created, since a founder takes its voters from the ring.
        self.ring_confirmed = False
        # Hard states of members dropped earlier (ensemble_following), by (group, member).
        self._kept: dict[tuple[str, str], HardState] = load_kept(backend)
        for stored in load_members(backend):
            self._restore(stored)

    # --- doors (called by ClusterNode) --------------------------------------------------------

    def start(self, now_ms: int) -> list[Effect]:
        """Restart every member found in storage."""
        self.now_ms = now_ms
        self._start_restored()
        return self._finish()

    def _start_restored(self) -> None:
        # Also done by the first event, for drivers that deliver events before `start`.
        if self._started:
            return
        self._started = True
        if self._restarted:
            self._writes_trusted_from_ms = self.now_ms + RESTART_WRITE_GRACE_MS
        for hosted in list(self.hosted.values()):
            self._queue.append((hosted, hosted.replica.start(self.now_ms)))
        if self.hosted:
            self._arm_tick()

    def submit(self, req_id: int, request: ConsistentRequest, props: dict[str, Any],
               now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        self._start_restored()
        self.counters.count(type(request).__name__)
        try:
            op = self._new_op(req_id, request, props["n_val"])
        except SapwoodError as exc:
            self.counters.count("refused")
            return [Reply(req_id, exc)]
        refusal = self._quorum_refusal(op)
        if refusal is not None:
            self.counters.count("unavailable")
            return [Reply(req_id, refusal)]
        self.ops[req_id] = op
        self._attempt(op, None)
        return self._finish()

    def on_message(self, sender: str, msg: Any, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        self._start_restored()
        self._take(sender, msg)
        return self._finish()

    def on_messages(self, sender: str, msgs: list[Any], now_ms: int) -> list[Effect]:
        """Several messages from `sender`, in order, as one event: each one's replica effects
        run before the next is taken, and the flushes of all of them are asked for once."""
        self.now_ms = now_ms
        self._start_restored()
        for msg in msgs:
            self._take(sender, msg)
            self._run_queue()
        return self._finish()

    def _take(self, sender: str, msg: Any) -> None:
        if isinstance(msg, EnsembleEnvelope):
            self._deliver(msg.group, msg.from_member, msg.to_member, msg.msg)
        elif isinstance(msg, EnsemblePersisted):
            self._persisted(msg)
        elif isinstance(msg, EnsembleCall):
            self._on_call(msg)
        elif isinstance(msg, EnsembleAnswer):
            self._answered(msg.call_id, msg.result)
        elif isinstance(msg, EnsembleRetireQuery):
            self._on_retire_query(sender, msg)
        elif isinstance(msg, EnsembleRetired):
            self._on_retired(msg)

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        self._start_restored()
        if key[0] == REPLICA_TIMER:
            _, group, member, kind = key
            hosted = self.hosted.get((group, member))
            if hosted is not None:
                timer = RaftTimer(group, TimerKind(kind))
                self._queue.append((hosted, hosted.replica.on_timer(timer, now_ms)))
        elif key == OPS_TIMER:
            self._ops_due()
        elif key == TICK_TIMER:
            self._tick()
        return self._finish()

    def set_ring(self, ring: RingView) -> None:
        """The node adopted a new ring (membership changes follow at the next tick)."""
        if ring.owners != self.ring.owners:
            self._hash_ring = Ring(ring.owners)
        self.ring = ring

    # --- views --------------------------------------------------------------------------------

    def holds(self, partition: int) -> bool:
        """Whether a member on `partition` is still here: its group must replace it before the
        partition may change owner."""
        return any(member_partition(h.member) == partition for h in self.hosted.values())

    def has_state(self) -> bool:
        return any(h.storage.wrote for h in self.hosted.values())

    def status(self) -> list[dict[str, Any]]:
        return [status_row(h, self.ring, self.now_ms) for _, h in sorted(self.hosted.items())]

    def stats(self) -> dict[str, Any]:
        return stats_view(self.counters, list(self.hosted.values()), len(self.ops))

    # --- effects ------------------------------------------------------------------------------

    def _finish(self) -> list[Effect]:
        """Run every queued replica effect (local members talk here, synchronously), then ask
        for one flush per member that wrote.

        When the driver's batch commit is itself the durability the node promises
        (`commit_is_durable`, the node's "commit" sync mode), the writes are durable once this
        event's batch commits, which happens before any effect returned here is performed: the
        members are told at once, instead of one more event per write after a no-op flush.
        """
        while True:
            self._run_queue()
            if not (self.commit_is_durable and self._flushes):
                break
            durable, self._flushes = self._flushes, {}
            for persisted in durable.values():
                self._persisted(persisted)
        out = self._out
        self._out = []
        if self._flushes:
            out += [Flush(self.node, done) for done in self._flushes.values()]
            self._flushes = {}
        return out

    def _run_queue(self) -> None:
        while self._queue:
            hosted, effects = self._queue.popleft()
            key = (hosted.group, hosted.member)
            for effect in effects:
                if self.hosted.get(key) is not hosted:
                    break  # retired meanwhile: nothing of it may be written or sent
                self._perform(hosted, effect)

    def _perform(self, hosted: Hosted, effect: Any) -> None:
        if isinstance(effect, Send):
            self._send_raft(hosted, effect.to, effect.msg)
        elif isinstance(effect, Reply):
            self._answered(effect.req_id, effect.result)
        elif isinstance(effect, Persist):
            hosted.storage.apply(effect)
            self._flushes[(hosted.group, hosted.member)] = EnsemblePersisted(
                hosted.group, hosted.member, hosted.generation, effect.token)
        elif isinstance(effect, SetTimer):
            key = replica_timer(hosted.group, hosted.member, effect.key.kind)
            self._out.append(SetTimer(key, effect.at_ms))
        elif isinstance(effect, CancelTimer):
            self._out.append(CancelTimer(replica_timer(hosted.group, hosted.member,
                                                       effect.key.kind)))

    def _send_raft(self, hosted: Hosted, to: str, msg: Any) -> None:
        node = member_node(to)
        if node == self.node:
            self._deliver(hosted.group, hosted.member, to, msg)
        else:
            self._out.append(Send(node, EnsembleEnvelope(hosted.group, hosted.member, to, msg)))

    def _deliver(self, group: str, sender: str, to: str, msg: Any) -> None:
        hosted = self._ensure(group, to)
        if hosted is not None:
            hosted.heard_ms = self.now_ms
            self._queue.append((hosted, hosted.replica.on_message(sender, msg, self.now_ms)))

    def _persisted(self, msg: EnsemblePersisted) -> None:
        hosted = self.hosted.get((msg.group, msg.member))
        if hosted is not None and hosted.generation == msg.generation:
            self._queue.append((hosted, hosted.replica.on_persisted(msg.token, self.now_ms)))

    def _arm_tick(self) -> None:
        if not self._ticking:
            self._ticking = True
            self._out.append(SetTimer(TICK_TIMER, self.now_ms + TICK_MS))

    # --- members ------------------------------------------------------------------------------

    def _restore(self, stored: StoredMember) -> None:
        snapshot = stored.durable.snapshot
        committed = snapshot.meta.members if snapshot is not None else stored.peers
        self._host(stored.group, stored.member, stored.peers, stored.durable, stored.storage,
                   committed)

    def _host(self, group: str, member: str, peers: tuple[str, ...], durable: DurableState,
              storage: MemberStorage, committed: tuple[str, ...]) -> Hosted:
        hosted = Hosted(group, member, storage, next(self._generations), committed, self.now_ms)
        hosted.replica = RaftReplica(group, member, peers, random.Random(self.rng.getrandbits(64)),
                                     self.config, durable, hosted.observe)
        self.hosted[(group, member)] = hosted
        self._by_group.setdefault(group, []).append(hosted)
        return hosted

    def _ensure(self, group: str, member: str) -> Hosted | None:
        """The hosted member, created if this node should host it (None if it should not)."""
        hosted = self.hosted.get((group, member))
        if hosted is not None:
            return hosted
        if not self.ring_confirmed or member_node(member) != self.node:
            return None
        if len(self.hosted) >= MAX_HOSTED_MEMBERS:
            return None
        try:
            future = members_under(group, self.ring.future)
        except (BadRequest, IndexError):
            return None
        if member not in future:
            return None  # a member on its way out is never created anew
        peers = future if self.ring.settled else ()
        storage = MemberStorage(self.backend, group, member)
        storage.found(peers)
        durable = DurableState(self._kept.get((group, member), HardState()))
        hosted = self._host(group, member, peers, durable, storage, peers)
        self._queue.append((hosted, hosted.replica.start(self.now_ms)))
        self._arm_tick()
        return hosted

    # --- answers to calls ---------------------------------------------------------------------

    def _answered(self, call_id: int, result: Result) -> None:
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        if call.kind is CallKind.REMOTE:
            self._out.append(Send(call.origin, EnsembleAnswer(call.origin_call, result)))
        elif call.kind is CallKind.RECONFIG:
            self._reconfigured(call, result)
        else:
            op = self.ops.get(call.req_id)
            if op is not None and op.call_id == call_id:
                self._op_answered(op, call, result)

    # --- operations of other nodes ------------------------------------------------------------

    def _on_call(self, msg: EnsembleCall) -> None:
        if self._seen_calls.seen_before((msg.origin, msg.call_id)):
            return  # a duplicate: an unconditional delete must not run twice
        if not isinstance(msg.command, Get) and self.now_ms < self._writes_trusted_from_ms:
            # Maybe a duplicate the previous process ran: not run again, and no answer that
            # could be taken for a refusal (a retry would then fail on its own write).
            answer = Indeterminate(f"{self.node} restarted moments ago; the write may have been "
                                   "applied by its previous run")
            self._out.append(Send(msg.origin, EnsembleAnswer(msg.call_id, answer)))
            return
        hosted = self._ensure(msg.group, msg.member)
        if hosted is None or len(self.calls) >= MAX_OPEN_CALLS:
            refusal: Result = NotLeader(self.leaders.get(msg.group)) if hosted is None else \
                Unavailable(f"{self.node} has {len(self.calls)} requests waiting for members "
                            "(limit MAX_OPEN_CALLS)")
            self._out.append(Send(msg.origin, EnsembleAnswer(msg.call_id, refusal)))
            return
        call_id = next(self._call_ids)
        self.calls[call_id] = Call(CallKind.REMOTE, msg.group, msg.member, origin=msg.origin,
                                   origin_call=msg.call_id, started_ms=self.now_ms,
                                   write=not isinstance(msg.command, Get))
        self._call_replica(hosted, call_id, msg.command)
