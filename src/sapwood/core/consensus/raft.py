"""One member of a consensus group: Raft with pre-vote, check-quorum, leases and ReadIndex.

Sans-I/O: every public method takes an event and returns the effects to perform (`Send`,
`Reply`, `SetTimer`, `CancelTimer`, `Persist`). Durability rule: a vote, a candidacy, or an
acknowledgement of log contents is only sent once everything the replica wrote before it is
durable (the driver calls `on_persisted(token)`), and the leader counts its own log towards a
commit only up to what is durable.

Roles and their transitions (Role):
  FOLLOWER -(election timeout)-> PRE_CANDIDATE -(majority would vote)-> CANDIDATE
  CANDIDATE -(majority voted)-> LEADER; any role -(higher term / current leader)-> FOLLOWER;
  LEADER -(no majority heard for an election timeout, or removed itself)-> FOLLOWER.
The term rules, votes and these transitions are in `sapwood.core.consensus.elections`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.elections import Elections
from sapwood.core.consensus.interface import (
    ApplyObserver,
    RaftEffect,
    RaftTimer,
    Role,
    TimerKind,
)
from sapwood.core.consensus.kvstate import KvState
from sapwood.core.consensus.leader import LeaderFeed
from sapwood.core.consensus.log import RaftLog
from sapwood.core.consensus.membership import quorum_value
from sapwood.core.consensus.messages import (
    AppendEntries,
    AppendResponse,
    ClientCommand,
    Entry,
    EntryCommand,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    RaftMessage,
    Reconfigure,
    SnapshotResponse,
    VoteRequest,
    VoteResponse,
)
from sapwood.core.consensus.persist import DurableState, HardState, Snapshot
from sapwood.core.consensus.proposals import PendingProposal, ProposalTracker
from sapwood.core.consensus.requests import admit, check_read
from sapwood.core.consensus.results import NotLeader, Result
from sapwood.core.consensus.snapshots import SnapshotReceiver
from sapwood.core.consensus.stats import RaftStats
from sapwood.core.consensus.store import ReplicaStore
from sapwood.core.effects import CancelTimer, Reply, Send, SetTimer


class RaftReplica(Elections):
    """A replica of group `group_id`. `peers` is the initial voter set (self is included even if
    absent); pass () for a replica joining an existing group (it waits to be added). After a
    crash, build it again with the `durable` state its `Persist` effects produced."""

    def __init__(
        self,
        group_id: str,
        self_id: str,
        peers: Iterable[str],
        rng: random.Random,
        config: RaftConfig | None = None,
        durable: DurableState | None = None,
        observer: ApplyObserver | None = None,
    ) -> None:
        self.group_id = group_id
        self.self_id = self_id
        self.config = config or RaftConfig()
        self._rng = rng
        self._observer = observer
        self.stats = RaftStats()
        durable = durable or DurableState()
        self._term = durable.hard_state.term
        self._voted_for = durable.hard_state.voted_for
        initial = tuple(set(peers) | {self_id}) if peers else ()
        self._store = ReplicaStore(group_id, initial, self.config, durable)
        self._role = Role.FOLLOWER
        self._leader_id: str | None = None
        self._votes: dict[str, bool] = {}
        self._feed: LeaderFeed | None = None
        self._proposals = ProposalTracker()
        self._receiver = SnapshotReceiver(self.config.max_group_bytes)
        self._election_base = 0
        self._election_timeout = self.config.election_timeout_min_ms
        self._no_vote_until = 0
        self._timer_due: dict[TimerKind, int] = {}
        self._out: list[RaftEffect] = []
        self._hard_dirty = False

    # --- Read-only views ------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def leader_id(self) -> str | None:
        return self._leader_id

    @property
    def log(self) -> RaftLog:
        return self._store.log

    @property
    def kv(self) -> KvState:
        """The applied key/value state (reads must go through `read` to be linearizable)."""
        return self._store.kv

    @property
    def commit_index(self) -> int:
        return self._store.commit

    @property
    def applied_index(self) -> int:
        return self._store.applied

    @property
    def members(self) -> tuple[str, ...]:
        return self._store.membership.current

    @property
    def is_voter(self) -> bool:
        return self.self_id in self.members

    @property
    def lease_expiry(self) -> int | None:
        """Until when (own clock) the leader may read alone; None without a lease."""
        if self._feed is None or not self._term_committed():
            return None
        return self._feed.reads.lease_expiry()

    # --- Events ---------------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[RaftEffect]:
        """Arm the timers. A single-member group elects itself at once."""
        # Acknowledgements given before a crash are covered by refusing votes for a full
        # election timeout from (re)start.
        self._no_vote_until = now_ms + self.config.election_timeout_min_ms
        if self.members == (self.self_id,):
            self._campaign(now_ms)
        else:
            self._reset_election_timer(now_ms)
        return self._finish()

    def on_message(self, from_id: str, msg: RaftMessage, now_ms: int) -> list[RaftEffect]:
        ours = msg.group_id == self.group_id and from_id != self.self_id
        if ours and self._accept_term(from_id, msg, now_ms):
            self._dispatch(from_id, msg, now_ms)
        return self._finish()

    def on_timer(self, key: RaftTimer, now_ms: int) -> list[RaftEffect]:
        due = self._timer_due.get(key.kind)
        if key.group_id != self.group_id or due is None:
            return self._finish()
        if now_ms < due:
            self._arm(key.kind, due)
            return self._finish()
        del self._timer_due[key.kind]
        if key.kind is TimerKind.ELECTION:
            self._on_election_timer(now_ms)
        elif key.kind is TimerKind.HEARTBEAT:
            self._heartbeat_tick(now_ms)
        else:
            self._check_quorum(now_ms)
        return self._finish()

    def on_persisted(self, token: int, now_ms: int) -> list[RaftEffect]:
        """Everything up to `Persist.token == token` is durable."""
        released = self._store.persisted(token)
        if released is not None:
            self._out.extend(released)
            self._maybe_commit(now_ms)
        return self._finish()

    def propose(self, req_id: int, command: ClientCommand, now_ms: int) -> list[RaftEffect]:
        """Replicate a client command; answered with a `Reply` once its outcome is known."""
        if self._feed is None:
            admitted: EntryCommand | Result = NotLeader(self._leader_id)
        else:
            locked = self._membership_locked()
            admitted = admit(command, len(self._proposals), self.members, locked, self.config)
        if not isinstance(admitted, EntryCommand):
            self.stats.proposals_refused += 1
            self._reply(req_id, admitted)
            return self._finish()
        entry = Entry(self._term, self.log.last_index + 1, admitted)
        self._append_local((entry,))
        deadline = now_ms + self.config.proposal_timeout_ms
        self._proposals.add(entry.index, PendingProposal(req_id, self._term, deadline))
        self._pump_all()
        if isinstance(admitted, Reconfigure):
            # A new voter set counts at once (a smaller one may commit now); any other entry
            # changes no match and nothing durable, so it cannot commit anything yet.
            self._maybe_commit(now_ms)
        return self._finish()

    def read(self, req_id: int, key: bytes, now_ms: int) -> list[RaftEffect]:
        """A linearizable read of `key`: from the lease if it holds, else after ReadIndex."""
        feed = self._feed
        refusal = check_read(key, len(feed.reads), self.config) if feed else None
        if feed is None:
            self._reply(req_id, NotLeader(self._leader_id))
        elif refusal is not None:
            self._reply(req_id, refusal)
        elif self._term_committed() and feed.reads.lease_valid(now_ms):
            self.stats.lease_reads += 1
            self._reply(req_id, self.kv.get(key))
        else:
            feed.reads.wait(req_id, key)
            self._settle_reads(now_ms)
        return self._finish()

    # --- Event framing: effects, persistence and the durability gate ---------------------------

    def _send(self, to: str, msg: RaftMessage) -> None:
        self._out.append(Send(to, msg))

    def _send_all(self, outbox: list[tuple[str, RaftMessage]]) -> None:
        self._out.extend(Send(to, msg) for to, msg in outbox)

    def _send_when_durable(self, to: str, msg: RaftMessage) -> None:
        self._store.hold(Send(to, msg))

    def _reply(self, req_id: int, result: Result) -> None:
        self._out.append(Reply(req_id, result))

    def _finish(self) -> list[RaftEffect]:
        hard = HardState(self._term, self._voted_for) if self._hard_dirty else None
        self._hard_dirty = False
        persist, ready = self._store.take_persist(hard)
        out: list[RaftEffect] = [persist] if persist is not None else []
        out.extend(self._out)
        out.extend(ready)
        self._out = []
        return out

    def _append_local(self, entries: tuple[Entry, ...]) -> None:
        if self._store.append(entries) and self._feed is not None:
            self._feed.sync_members(self.members, self.log.last_index)

    # --- Timers ---------------------------------------------------------------------------------

    def _arm(self, kind: TimerKind, at_ms: int) -> None:
        self._timer_due[kind] = at_ms
        self._out.append(SetTimer(RaftTimer(self.group_id, kind), at_ms))

    def _disarm(self, kind: TimerKind) -> None:
        if self._timer_due.pop(kind, None) is not None:
            self._out.append(CancelTimer(RaftTimer(self.group_id, kind)))

    # --- Messages (the term rules and elections: `Elections`) -----------------------------------

    def _dispatch(self, from_id: str, msg: RaftMessage, now_ms: int) -> None:
        if isinstance(msg, VoteRequest):
            self._on_vote_request(from_id, msg, now_ms)
        elif isinstance(msg, VoteResponse):
            self._on_vote_response(from_id, msg, now_ms)
        elif isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
            self._follow(from_id, now_ms)
            if isinstance(msg, AppendEntries):
                self._on_append(from_id, msg, now_ms)
            elif isinstance(msg, Heartbeat):
                self._advance_commit_to(min(msg.commit, self.log.last_index), now_ms)
                self._send(from_id, HeartbeatResponse(self.group_id, self._term, msg.round))
            else:
                self._on_install_snapshot(from_id, msg, now_ms)
        elif self._feed is not None:
            self._on_leader_response(from_id, msg, now_ms)

    # --- Leader: replication, heartbeats, check-quorum ------------------------------------------

    def _heartbeat_tick(self, now_ms: int) -> None:
        if self._feed is None:
            return
        self._expire_proposals(now_ms)
        fed = self._feed.take_all_fed()
        self._send_all(self._feed.retransmit(self._store.commit, self._store.snapshot,
                                             self.members))
        # Waiting reads always get a round: theirs may have been lost.
        if not fed or self._feed.reads:
            self._send_all(self._feed.start_round(now_ms, self._store.commit, for_reads=False))
        self._settle_reads(now_ms)
        self._arm(TimerKind.HEARTBEAT, now_ms + self.config.heartbeat_interval_ms)

    def _check_quorum(self, now_ms: int) -> None:
        if self._feed is None:
            return
        if not self._feed.quorum_active(self.members):
            self.stats.quorum_losses += 1
            self._become_follower(self._term, None, now_ms)
            return
        self._arm(TimerKind.CHECK_QUORUM, now_ms + self.config.election_timeout_min_ms)

    def _pump_all(self) -> None:
        if self._feed is not None:
            self._send_all(self._feed.pump_all(self._store.commit, self._store.snapshot))

    def _on_leader_response(self, from_id: str, msg: RaftMessage, now_ms: int) -> None:
        feed, commit, snapshot = self._feed, self._store.commit, self._store.snapshot
        assert feed is not None
        if isinstance(msg, HeartbeatResponse):
            if feed.heartbeat_acked(from_id, msg.round):
                self._settle_reads(now_ms)
            return
        if isinstance(msg, AppendResponse):
            progressed, sends = feed.append_answered(from_id, msg, commit, snapshot)
        elif isinstance(msg, SnapshotResponse):
            progressed, sends = feed.snapshot_answered(from_id, msg, commit, snapshot)
        else:
            return
        self._send_all(sends)
        if progressed:
            self._maybe_commit(now_ms)

    def _maybe_commit(self, now_ms: int) -> None:
        if self._feed is None:
            return
        members = self.members
        matches = self._feed.matches(members)
        if self.self_id in members:
            matches.append(self._store.durable_index)
        candidate = quorum_value(matches, len(members))
        # Only entries of our own term are committed by counting (Raft 5.4.2).
        if candidate > self._store.commit and self.log.term_at(candidate) == self._term:
            self._advance_commit_to(candidate, now_ms)

    def _membership_locked(self) -> str | None:
        """Why a membership change must wait, if it must."""
        if not self._term_committed():
            return "the leader has not committed an entry of its term yet; retry shortly"
        if self._store.membership.latest_change_index > self._store.commit:
            return "another membership change is still in progress; retry when it commits"
        return None

    def _expire_proposals(self, now_ms: int) -> None:
        for req_id, result in self._proposals.expire(now_ms):
            self._reply(req_id, result)

    # --- Leader: reads --------------------------------------------------------------------------

    def _term_committed(self) -> bool:
        return self._feed is not None and self._store.commit >= self._feed.term_start_index

    def _settle_reads(self, now_ms: int) -> None:
        """Answer the reads whose leadership confirmation arrived (and start a round for those
        still waiting for one)."""
        if self._feed is None:
            return
        beats, ready = self._feed.settle_reads(self.members, now_ms, self._store.commit)
        self._send_all(beats)
        for read in ready:
            self.stats.read_index_reads += 1
            self._reply(read.req_id, self.kv.get(read.key))

    # --- Follower: appends and snapshots --------------------------------------------------------

    def _on_append(self, from_id: str, msg: AppendEntries, now_ms: int) -> None:
        prev, prev_term, entries = msg.prev_index, msg.prev_term, msg.entries
        if prev < self._store.commit:
            # Everything up to our commit index is committed, hence identical to the leader's.
            entries = tuple(e for e in entries if e.index > self._store.commit)
            prev, prev_term = self._store.commit, self.log.term_at(self._store.commit) or 0
        if self.log.term_at(prev) != prev_term:
            hint = self.log.rejection_hint(prev, self._store.commit)
            self._send(from_id, AppendResponse(self.group_id, self._term, False, 0, prev, hint))
            return
        self._store.accept(entries)
        last_new = prev + len(entries)
        self._advance_commit_to(min(msg.commit, last_new), now_ms)
        self._send_when_durable(from_id, AppendResponse(self.group_id, self._term, True, last_new))

    def _on_install_snapshot(self, from_id: str, msg: InstallSnapshot, now_ms: int) -> None:
        gid, term, index = self.group_id, self._term, msg.meta.index
        if index <= self._store.commit:
            self._send_when_durable(from_id, SnapshotResponse(gid, term, index, 0, True))
            return
        next_offset, snapshot = self._receiver.receive(msg)
        if snapshot is None:
            self._send(from_id, SnapshotResponse(gid, term, index, next_offset, False))
        elif self._install_snapshot(snapshot):
            self._send_when_durable(from_id, SnapshotResponse(gid, term, index, next_offset, True))

    def _install_snapshot(self, snapshot: Snapshot) -> bool:
        if not self._store.install(snapshot):
            return False  # undecodable: nothing installed; the leader will resend
        self.stats.snapshots_installed += 1
        for req_id, result in self._proposals.drop_through(snapshot.meta.index):
            self._reply(req_id, result)
        if self._observer is not None:
            self._observer(self.self_id, snapshot)
        return True

    # --- Commit and apply -----------------------------------------------------------------------

    def _advance_commit_to(self, index: int, now_ms: int) -> None:
        for entry, result in self._store.commit_to(index):
            self.stats.commits += 1
            if self._observer is not None:
                self._observer(self.self_id, entry)
            for req_id, answer in self._proposals.settle(entry, result):
                self._reply(req_id, answer)
        if self._feed is not None:
            # A commit can only answer waiting reads (those wait for this leader's commit index
            # to be current); round acknowledgements are settled where they arrive.
            if self._feed.reads:
                self._settle_reads(now_ms)
            if not self.is_voter and self._store.membership.latest_change_index <= self._store.commit:
                # Our own removal is committed: hand over by going quiet (Raft thesis 4.2.2).
                self._become_follower(self._term, None, now_ms)
        if self._store.snapshot_if_due():
            self.stats.snapshots_taken += 1
