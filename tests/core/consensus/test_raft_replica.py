"""One replica driven by hand: the durability rule, voting rules and request admission."""

from __future__ import annotations

import random
from typing import Any

from sapwood.core.consensus import (
    AddMember,
    AppendEntries,
    AppendResponse,
    DurableState,
    Entry,
    Get,
    HardState,
    Heartbeat,
    Invalid,
    NoOp,
    NotLeader,
    Ok,
    Persist,
    Put,
    RaftConfig,
    RaftReplica,
    RaftTimer,
    RemoveMember,
    Role,
    TimerKind,
    TooLarge,
    Unavailable,
    Version,
    VoteRequest,
    VoteResponse,
)
from sapwood.core.effects import Reply, Send, SetTimer

CFG = RaftConfig(election_timeout_min_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=30)
LATER = 10_000  # well past every replica's initial no-vote window


def of_type(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def sent(effects: list[Any], kind: type) -> list[Any]:
    return [e.msg for e in of_type(effects, Send) if isinstance(e.msg, kind)]


def persist_of(effects: list[Any]) -> Persist:
    (persist,) = of_type(effects, Persist)
    return persist


def follower(name: str = "b", cfg: RaftConfig = CFG) -> RaftReplica:
    replica = RaftReplica("g", name, ["a", "b", "c"], random.Random(1), cfg)
    replica.start(0)
    return replica


def single(cfg: RaftConfig = CFG) -> tuple[RaftReplica, list[Any]]:
    """A group of one, already leading; returns it and its start effects."""
    replica = RaftReplica("g", "a", ["a"], random.Random(1), cfg)
    effects = replica.start(0)
    assert replica.role is Role.LEADER
    return replica, effects


def settle(replica: RaftReplica, effects: list[Any], now: int) -> list[Any]:
    """Complete every Persist in `effects` (and those it causes); return all effects seen."""
    seen = list(effects)
    pending = of_type(effects, Persist)
    while pending:
        more = replica.on_persisted(pending.pop(0).token, now)
        seen += more
        pending += of_type(more, Persist)
    return seen


# --- Durability rule --------------------------------------------------------------------------


def test_vote_is_sent_only_after_the_vote_is_durable() -> None:
    replica = follower()
    effects = replica.on_message("a", VoteRequest("g", 1, 0, 0, False), LATER)
    assert persist_of(effects).hard_state == HardState(1, "a")
    assert sent(effects, VoteResponse) == []
    released = replica.on_persisted(persist_of(effects).token, LATER)
    assert sent(released, VoteResponse) == [VoteResponse("g", 1, True, False)]


def test_append_is_acknowledged_only_after_the_entries_are_durable() -> None:
    replica = follower()
    entry = Entry(1, 1, Put(b"k", b"v"))
    effects = replica.on_message("a", AppendEntries("g", 1, 0, 0, (entry,), 0), LATER)
    persist = persist_of(effects)
    assert persist.entries == (entry,) and persist.hard_state == HardState(1, None)
    assert sent(effects, AppendResponse) == []
    # A later heartbeat does not leak an acknowledgement past the pending write either.
    beat = replica.on_message("a", AppendEntries("g", 1, 1, 1, (), 0), LATER + 1)
    assert sent(beat, AppendResponse) == []
    released = replica.on_persisted(persist.token, LATER + 2)
    assert [m.match_index for m in sent(released, AppendResponse)] == [1, 1]


def test_one_durability_callback_can_cover_several_writes() -> None:
    replica = follower()
    first = replica.on_message("a", AppendEntries("g", 1, 0, 0, (Entry(1, 1, NoOp()),), 0), LATER)
    second = replica.on_message("a", AppendEntries("g", 1, 1, 1, (Entry(1, 2, NoOp()),), 0), LATER)
    assert persist_of(second).token > persist_of(first).token
    assert replica.on_persisted(persist_of(first).token - 1, LATER) == []  # unknown token
    released = replica.on_persisted(persist_of(second).token, LATER)  # group commit
    assert [m.match_index for m in sent(released, AppendResponse)] == [1, 2]
    assert replica.on_persisted(persist_of(first).token, LATER) == []  # already covered


def test_a_rejection_needs_no_durability() -> None:
    replica = follower()
    replica.on_message("a", AppendEntries("g", 1, 0, 0, (), 0), LATER)
    effects = replica.on_message("a", AppendEntries("g", 1, 5, 1, (), 0), LATER)
    (reply,) = sent(effects, AppendResponse)
    assert not reply.success and reply.hint_index == 0 and reply.rejected_index == 5


def test_candidacy_is_announced_only_after_term_and_self_vote_are_durable() -> None:
    replica = follower("a")
    pre = replica.on_timer(RaftTimer("g", TimerKind.ELECTION), LATER)
    assert replica.role is Role.PRE_CANDIDATE
    assert of_type(pre, Persist) == []  # pre-vote changes nothing durable
    assert {m.pre_vote for m in sent(pre, VoteRequest)} == {True}
    effects = replica.on_message("b", VoteResponse("g", 1, True, True), LATER + 1)
    assert replica.role is Role.CANDIDATE and replica.term == 1
    assert persist_of(effects).hard_state == HardState(1, "a")
    assert sent(effects, VoteRequest) == []
    released = replica.on_persisted(persist_of(effects).token, LATER + 2)
    assert len(sent(released, VoteRequest)) == 2


def test_leader_counts_its_own_entries_only_once_durable() -> None:
    replica, start = single()
    assert replica.commit_index == 0
    settle(replica, start, 1)
    assert replica.commit_index == 1  # its no-op
    effects = replica.propose(7, Put(b"k", b"v"), 2)
    assert of_type(effects, Reply) == []
    done = settle(replica, effects, 3)
    assert of_type(done, Reply) == [Reply(7, Ok(replica.kv.get(b"k").version, b"v"))]


def test_a_crash_before_the_write_completes_forgets_the_unacknowledged_entry() -> None:
    replica = follower()
    effects = replica.on_message("a", AppendEntries("g", 1, 0, 0, (Entry(1, 1, NoOp()),), 0), LATER)
    # The driver crashed before finishing this Persist: restart from what was durable (nothing).
    restarted = RaftReplica("g", "b", ["a", "b", "c"], random.Random(2), CFG)
    restarted.start(LATER + 5)
    assert restarted.log.last_index == 0 and restarted.term == 0
    assert sent(effects, AppendResponse) == []  # and nobody was told it had it


def test_leader_commits_only_by_counting_entries_of_its_own_term() -> None:
    """Raft's Figure 8: an old-term entry on a majority is not committed until an entry of the
    current term is."""
    old = (Entry(1, 1, Put(b"k", b"1")), Entry(2, 2, Put(b"k", b"2", Version(1, 1))))
    durable = DurableState(HardState(3, None), None, old)
    replica = RaftReplica("g", "a", ["a", "b", "c"], random.Random(1), CFG, durable)
    replica.start(0)
    replica.on_timer(RaftTimer("g", TimerKind.ELECTION), LATER)
    settle(replica, replica.on_message("b", VoteResponse("g", 4, True, True), LATER), LATER)
    settle(replica, replica.on_message("b", VoteResponse("g", 4, True, False), LATER), LATER)
    assert replica.role is Role.LEADER and replica.term == 4 and replica.log.last_index == 3
    replica.on_message("b", AppendResponse("g", 4, True, 2), LATER + 1)
    assert replica.commit_index == 0  # index 2 (term 2) is on a majority, yet not committed
    replica.on_message("b", AppendResponse("g", 4, True, 3), LATER + 2)
    assert replica.commit_index == 3
    assert replica.kv.get(b"k") == Ok(Version(2, 2), b"2")


# --- Voting rules -----------------------------------------------------------------------------


def test_restarted_replica_refuses_votes_for_a_minimum_election_timeout() -> None:
    replica = RaftReplica("g", "b", ["a", "b", "c"], random.Random(1), CFG)
    replica.start(5_000)
    early = replica.on_message("a", VoteRequest("g", 1, 0, 0, False), 5_100)
    assert sent(early, VoteResponse) == [VoteResponse("g", 0, False, False)]
    assert replica.term == 0  # not even the term is adopted
    late = replica.on_message("a", VoteRequest("g", 1, 0, 0, False), 5_150)
    assert persist_of(late).hard_state == HardState(1, "a")


def test_follower_hearing_its_leader_refuses_votes_and_keeps_its_term() -> None:
    replica = follower()
    replica.on_message("a", Heartbeat("g", 1, 0, 1), LATER)
    for pre_vote in (True, False):
        effects = replica.on_message("c", VoteRequest("g", 2, 9, 1, pre_vote), LATER + 100)
        assert sent(effects, VoteResponse) == [VoteResponse("g", 1, False, pre_vote)]
    assert replica.term == 1 and replica.leader_id == "a"


def test_pre_vote_is_granted_without_changing_term_or_vote() -> None:
    replica = follower()
    effects = replica.on_message("c", VoteRequest("g", 1, 0, 0, True), LATER)
    assert sent(effects, VoteResponse) == [VoteResponse("g", 1, True, True)]
    assert of_type(effects, Persist) == []
    assert (replica.term, replica.voted_for) == (0, None)


def test_vote_refused_to_a_candidate_with_an_older_log() -> None:
    replica = follower()
    settle(replica, replica.on_message(
        "a", AppendEntries("g", 2, 0, 0, (Entry(2, 1, NoOp()),), 0), LATER), LATER)
    effects = replica.on_message("c", VoteRequest("g", 3, 5, 1, False), LATER + 1_000)
    assert sent(effects, VoteResponse) == [VoteResponse("g", 3, False, False)]
    assert replica.voted_for is None


def test_one_vote_per_term() -> None:
    replica = follower()
    settle(replica, replica.on_message("a", VoteRequest("g", 1, 0, 0, False), LATER), LATER)
    effects = replica.on_message("c", VoteRequest("g", 1, 0, 0, False), LATER + 1)
    assert sent(effects, VoteResponse) == [VoteResponse("g", 1, False, False)]


# --- Timers -----------------------------------------------------------------------------------


def test_election_timeout_is_drawn_from_the_configured_range() -> None:
    for seed in range(20):
        replica = RaftReplica("g", "b", ["a", "b", "c"], random.Random(seed), CFG)
        (timer,) = of_type(replica.start(1_000), SetTimer)
        assert timer.key == RaftTimer("g", TimerKind.ELECTION)
        assert 1_150 <= timer.at_ms < 1_300


def test_a_heard_leader_postpones_the_election_without_timer_churn() -> None:
    replica = follower()
    (armed,) = of_type(replica.on_message("a", Heartbeat("g", 1, 0, 1), 50), SetTimer)
    assert of_type(replica.on_message("a", Heartbeat("g", 1, 0, 2), 100), SetTimer) == []
    late = replica.on_timer(RaftTimer("g", TimerKind.ELECTION), armed.at_ms)
    assert replica.role is Role.FOLLOWER
    (rearmed,) = of_type(late, SetTimer)
    assert rearmed.at_ms == armed.at_ms + 50


# --- Admission of requests --------------------------------------------------------------------


def test_followers_redirect_to_the_leader() -> None:
    replica = follower()
    replica.on_message("a", Heartbeat("g", 1, 0, 1), LATER)
    assert of_type(replica.propose(1, Put(b"k", b"v"), LATER), Reply) == [
        Reply(1, NotLeader("a"))
    ]
    assert of_type(replica.read(2, b"k", LATER), Reply) == [Reply(2, NotLeader("a"))]


def test_proposal_queue_limit() -> None:
    replica, start = single(RaftConfig(**{**_timing(), "max_pending_proposals": 2}))
    settle(replica, start, 1)
    replies = []
    for req in range(3):
        replies += of_type(replica.propose(req, Put(b"k%d" % req, b"v"), 2), Reply)
    assert len(replies) == 1 and replies[0].req_id == 2
    assert isinstance(replies[0].result, Unavailable)
    assert "max_pending_proposals" in replies[0].result.message


def test_entry_size_limit() -> None:
    replica, start = single(RaftConfig(**{**_timing(), "max_entry_bytes": 100}))
    settle(replica, start, 1)
    (reply,) = of_type(replica.propose(1, Put(b"k", b"x" * 200), 2), Reply)
    assert isinstance(reply.result, TooLarge) and "max_entry_bytes" in reply.result.message


def test_read_queue_limit() -> None:
    replica = RaftReplica("g", "a", ["a", "b", "c"], random.Random(1),
                          RaftConfig(**{**_timing(), "max_pending_reads": 1}))
    replica.start(0)
    replica.on_timer(RaftTimer("g", TimerKind.ELECTION), LATER)
    replica.on_message("b", VoteResponse("g", 1, True, True), LATER)
    settle(replica, replica.on_message("b", VoteResponse("g", 1, True, False), LATER), LATER)
    assert replica.role is Role.LEADER
    assert of_type(replica.read(1, b"k", LATER), Reply) == []  # waits for confirmation
    (reply,) = of_type(replica.read(2, b"k", LATER), Reply)
    assert isinstance(reply.result, Unavailable) and "max_pending_reads" in reply.result.message


def test_malformed_requests_are_invalid_not_exceptions() -> None:
    replica, start = single()
    settle(replica, start, 1)
    bad_key = of_type(replica.propose(1, Put("k", b"v"), 2), Reply)  # type: ignore[arg-type]
    bad_expected = of_type(replica.propose(2, Put(b"k", b"v", "nope"), 2), Reply)  # type: ignore[arg-type]
    not_a_command = of_type(replica.propose(3, "get k", 2), Reply)  # type: ignore[arg-type]
    bad_read = of_type(replica.read(4, "k", 2), Reply)  # type: ignore[arg-type]
    for (reply,) in (bad_key, bad_expected, not_a_command, bad_read):
        assert isinstance(reply.result, Invalid)


def test_membership_requests_are_checked() -> None:
    replica, start = single()
    settle(replica, start, 1)
    (dup,) = of_type(replica.propose(1, AddMember("a"), 2), Reply)
    (last,) = of_type(replica.propose(2, RemoveMember("a"), 2), Reply)
    (unknown,) = of_type(replica.propose(3, RemoveMember("z"), 2), Reply)
    assert all(isinstance(r.result, Invalid) for r in (dup, last, unknown))
    replica.propose(4, AddMember("b"), 2)
    (busy,) = of_type(replica.propose(5, AddMember("c"), 2), Reply)
    assert isinstance(busy.result, Unavailable) and "in progress" in busy.result.message


def test_group_size_limit() -> None:
    replica, start = single(RaftConfig(**{**_timing(), "max_members": 1}))
    settle(replica, start, 1)
    (reply,) = of_type(replica.propose(1, AddMember("b"), 2), Reply)
    assert isinstance(reply.result, Invalid) and "max_members" in reply.result.message


def test_single_member_group_serves_reads_and_log_gets() -> None:
    replica, start = single()
    settle(replica, start, 1)
    settle(replica, replica.propose(1, Put(b"k", b"v"), 2), 2)
    (read,) = of_type(replica.read(2, b"k", 3), Reply)
    assert isinstance(read.result, Ok) and read.result.value == b"v"
    (get,) = of_type(settle(replica, replica.propose(3, Get(b"k"), 4), 4), Reply)
    assert get.result == read.result
    assert replica.stats.commits == 3


def test_messages_of_other_groups_are_ignored() -> None:
    replica = follower()
    assert replica.on_message("a", VoteRequest("other", 5, 0, 0, False), LATER) == []
    assert replica.term == 0


def _timing() -> dict[str, Any]:
    return {"election_timeout_min_ms": 150, "election_timeout_max_ms": 300,
            "heartbeat_interval_ms": 30}
