"""The election half of `RaftReplica`: terms, votes, candidacy and the changes of role.

A follower whose election timer runs out without hearing a leader first asks for pre-votes (would
a majority vote for it at the next term?) and only then campaigns, so that a member cut off from
the group does not disturb it with ever higher terms when it comes back. A replica refuses every
vote while it leads or heard a leader within the minimum election timeout: that refusal is what
makes the leader's read lease safe. A vote and a candidacy are sent only once they are durable.

A mixin: `RaftReplica` owns the state declared here and the effects plumbing it calls.
"""

from __future__ import annotations

import random

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.interface import Role, TimerKind
from sapwood.core.consensus.leader import LeaderFeed
from sapwood.core.consensus.log import RaftLog
from sapwood.core.consensus.membership import majority
from sapwood.core.consensus.messages import (
    AppendEntries,
    Entry,
    EntryCommand,
    Heartbeat,
    InstallSnapshot,
    NoOp,
    RaftMessage,
    Reconfigure,
    VoteRequest,
    VoteResponse,
    answer_to_stale,
)
from sapwood.core.consensus.results import NotLeader, Result
from sapwood.core.consensus.stats import RaftStats
from sapwood.core.consensus.store import ReplicaStore


class Elections:
    """Terms and elections of `RaftReplica` (a mixin: the replica owns the state used here)."""

    group_id: str
    self_id: str
    config: RaftConfig
    stats: RaftStats
    _rng: random.Random
    _store: ReplicaStore
    _term: int
    _voted_for: str | None
    _hard_dirty: bool
    _role: Role
    _leader_id: str | None
    _votes: dict[str, bool]
    _feed: LeaderFeed | None
    _election_base: int
    _election_timeout: int
    _no_vote_until: int

    # --- Provided by the replica ----------------------------------------------------------------

    @property
    def log(self) -> RaftLog:
        raise NotImplementedError

    @property
    def members(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def is_voter(self) -> bool:
        raise NotImplementedError

    def _send(self, to: str, msg: RaftMessage) -> None:
        raise NotImplementedError

    def _send_when_durable(self, to: str, msg: RaftMessage) -> None:
        raise NotImplementedError

    def _reply(self, req_id: int, result: Result) -> None:
        raise NotImplementedError

    def _append_local(self, entries: tuple[Entry, ...]) -> None:
        raise NotImplementedError

    def _arm(self, kind: TimerKind, at_ms: int) -> None:
        raise NotImplementedError

    def _disarm(self, kind: TimerKind) -> None:
        raise NotImplementedError

    def _heartbeat_tick(self, now_ms: int) -> None:
        raise NotImplementedError

    def _maybe_commit(self, now_ms: int) -> None:
        raise NotImplementedError

    def _expire_proposals(self, now_ms: int) -> None:
        raise NotImplementedError

    # --- The election timer ---------------------------------------------------------------------

    def _reset_election_timer(self, now_ms: int) -> None:
        self._election_base = now_ms
        cfg = self.config
        self._election_timeout = self._rng.randrange(
            cfg.election_timeout_min_ms, cfg.election_timeout_max_ms
        )
        self._arm(TimerKind.ELECTION, now_ms + self._election_timeout)

    def _heard_from_leader(self, leader: str, now_ms: int) -> None:
        # The election timer is re-armed lazily when it fires, not on every message.
        self._leader_id = leader
        self._election_base = now_ms
        self._no_vote_until = max(self._no_vote_until, now_ms + self.config.election_timeout_min_ms)

    def _in_lease(self, now_ms: int) -> bool:
        """Whether we refuse to vote: we lead, or a leader was heard within the minimum election
        timeout (this is also what makes the leader's read lease safe)."""
        return self._role is Role.LEADER or now_ms < self._no_vote_until

    def _on_election_timer(self, now_ms: int) -> None:
        self._expire_proposals(now_ms)
        if self._role is Role.LEADER:
            return
        due = self._election_base + self._election_timeout
        if now_ms < due:
            self._arm(TimerKind.ELECTION, due)
        elif not self._may_campaign():
            self._reset_election_timer(now_ms)
        else:
            self._start_pre_vote(now_ms)

    def _may_campaign(self) -> bool:
        """A voter may; so may a member removed by a change not known to be committed: it may be
        its only holder (a leader that removed itself, then restarted). It steps down on commit."""
        membership, change = self._store.membership, self._store.membership.latest_change_index
        return self.is_voter or (change > self._store.commit
                                 and self.self_id in membership.at(change - 1))

    # --- Terms and votes ------------------------------------------------------------------------

    def _accept_term(self, from_id: str, msg: RaftMessage, now_ms: int) -> bool:
        """Apply the term rules; False when the message must not be processed further."""
        if msg.term > self._term:
            if isinstance(msg, VoteRequest):
                if self._in_lease(now_ms):
                    self._send(from_id, VoteResponse(self.group_id, self._term, False, msg.pre_vote))
                    return False
                if not msg.pre_vote:
                    self._become_follower(msg.term, None, now_ms)
                return True
            if isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                return True  # a granted pre-vote carries the term we asked about
            from_leader = isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot)
            self._become_follower(msg.term, from_id if from_leader else None, now_ms)
            return True
        if msg.term < self._term:
            # Tell a stale leader or candidate about our term so that it yields.
            answer = answer_to_stale(msg, self._term)
            if answer is not None:
                self._send(from_id, answer)
            return False
        return True

    def _on_vote_request(self, from_id: str, msg: VoteRequest, now_ms: int) -> None:
        gid = self.group_id
        if self._in_lease(now_ms):
            self._send(from_id, VoteResponse(gid, self._term, False, msg.pre_vote))
            return
        up_to_date = self.log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        if msg.pre_vote:
            grant = msg.term > self._term and up_to_date
            self._send(from_id, VoteResponse(gid, msg.term if grant else self._term, grant, True))
            return
        free = self._voted_for == from_id or (self._voted_for is None and self._leader_id is None)
        if not (free and up_to_date):
            self._send(from_id, VoteResponse(gid, self._term, False, False))
            return
        if self._role is not Role.FOLLOWER:
            self._become_follower(self._term, None, now_ms)
        self._voted_for = from_id
        self._hard_dirty = True
        self._election_base = now_ms
        self._send_when_durable(from_id, VoteResponse(gid, self._term, True, False))

    def _on_vote_response(self, from_id: str, msg: VoteResponse, now_ms: int) -> None:
        if from_id not in self.members:
            return
        if msg.pre_vote:
            if self._role is Role.PRE_CANDIDATE and msg.term == self._term + 1:
                self._votes[from_id] = msg.granted
                if self._won_votes():
                    self._campaign(now_ms)
        elif self._role is Role.CANDIDATE and msg.term == self._term:
            self._votes[from_id] = msg.granted
            if self._won_votes():
                self._become_leader(now_ms)

    def _won_votes(self) -> bool:
        members = self.members
        granted = sum(1 for m in members if self._votes.get(m))
        return granted >= majority(len(members))

    def _start_pre_vote(self, now_ms: int) -> None:
        """Ask whether we could win before disturbing anyone with a new term."""
        self._role = Role.PRE_CANDIDATE
        self._leader_id = None
        self._votes = {self.self_id: True}
        self.stats.pre_votes_started += 1
        self._reset_election_timer(now_ms)
        if self._won_votes():
            self._campaign(now_ms)
            return
        ask = VoteRequest(self.group_id, self._term + 1, self.log.last_index, self.log.last_term, True)
        for peer in self._others():
            self._send(peer, ask)

    def _campaign(self, now_ms: int) -> None:
        self._term += 1
        self._voted_for = self.self_id
        self._hard_dirty = True
        self._role = Role.CANDIDATE
        self._leader_id = None
        self._votes = {self.self_id: True}
        self.stats.elections_started += 1
        self._reset_election_timer(now_ms)
        if self._won_votes():
            self._become_leader(now_ms)
            return
        ask = VoteRequest(self.group_id, self._term, self.log.last_index, self.log.last_term, False)
        for peer in self._others():
            self._send_when_durable(peer, ask)

    def _become_leader(self, now_ms: int) -> None:
        self._role = Role.LEADER
        self._leader_id = self.self_id
        self._votes = {}
        self.stats.elections_won += 1
        self._disarm(TimerKind.ELECTION)
        self._feed = LeaderFeed(
            self.group_id, self.self_id, self._term, self.config, self.log, self.stats
        )
        self._feed.sync_members(self.members, self.log.last_index)
        # Committing an entry of our own term is how we learn the commit index (and may serve
        # reads): until then ReadIndex waits.
        self._append_local((Entry(self._term, self.log.last_index + 1, self._first_command()),))
        self._arm(TimerKind.CHECK_QUORUM, now_ms + self.config.election_timeout_min_ms)
        self._heartbeat_tick(now_ms)
        self._maybe_commit(now_ms)

    def _first_command(self) -> EntryCommand:
        """The founding voter set (in no entry or snapshot yet) goes into the log, so that members
        that joined empty learn they vote."""
        founding = self._store.membership.latest_change_index == 0 == self.log.snapshot_index
        return Reconfigure(self.members) if founding else NoOp()

    def _become_follower(self, term: int, leader: str | None, now_ms: int) -> None:
        if term > self._term:
            self._term = term
            self._voted_for = None
            self._hard_dirty = True
        was_leading = self._feed is not None
        self._role = Role.FOLLOWER
        self._leader_id = leader
        self._votes = {}
        if was_leading:
            self._stop_leading(leader)
        self._reset_election_timer(now_ms)

    def _follow(self, leader: str, now_ms: int) -> None:
        """A leader of our term spoke: recognise it."""
        if self._role is not Role.FOLLOWER:
            self._become_follower(self._term, leader, now_ms)
        self._heard_from_leader(leader, now_ms)

    def _stop_leading(self, leader: str | None) -> None:
        assert self._feed is not None
        self.stats.step_downs += 1
        for read in self._feed.reads.drain():
            self._reply(read.req_id, NotLeader(leader))
        self._feed = None
        self._disarm(TimerKind.HEARTBEAT)
        self._disarm(TimerKind.CHECK_QUORUM)

    def _others(self) -> list[str]:
        return [m for m in self.members if m != self.self_id]
