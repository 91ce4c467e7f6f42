"""Heartbeat ticks under load: a tick sends no round when every follower was just sent an
append (which tells it everything a heartbeat would), but always one for reads that wait; with
lazy followers, new entries go at once only to the followers a commit needs, the others get
them at ticks."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from sapwood.core.consensus import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    Ok,
    Persist,
    Put,
    RaftConfig,
    RaftReplica,
    RaftTimer,
    Role,
    TimerKind,
    VoteResponse,
)
from sapwood.core.effects import Reply, Send

CFG = RaftConfig(election_timeout_min_ms=150, election_timeout_max_ms=300, heartbeat_interval_ms=30,
                 leases_enabled=False)
LATER = 10_000  # past the initial no-vote window
HEARTBEAT = RaftTimer("g", TimerKind.HEARTBEAT)


def settle(replica: RaftReplica, effects: list[Any], now: int) -> list[Any]:
    """Complete every Persist in `effects` (and those it causes); all effects seen."""
    seen = list(effects)
    pending = [e for e in effects if isinstance(e, Persist)]
    while pending:
        more = replica.on_persisted(pending.pop(0).token, now)
        seen += more
        pending += [e for e in more if isinstance(e, Persist)]
    return seen


def sent(effects: list[Any], kind: type) -> list[tuple[str, Any]]:
    return [(e.to, e.msg) for e in effects if isinstance(e, Send) and isinstance(e.msg, kind)]


def elected(cfg: RaftConfig = CFG) -> tuple[RaftReplica, int]:
    """Member "a" of a, b, c, leading with its first entry committed; returns it and `now`."""
    a = RaftReplica("g", "a", ["a", "b", "c"], random.Random(1), cfg)
    a.start(0)
    now = LATER
    settle(a, a.on_timer(RaftTimer("g", TimerKind.ELECTION), now), now)
    settle(a, a.on_message("b", VoteResponse("g", a.term + 1, True, True), now), now)
    settle(a, a.on_message("b", VoteResponse("g", a.term, True, False), now), now)
    assert a.role is Role.LEADER
    for peer in ("b", "c"):
        settle(a, a.on_message(peer, AppendResponse("g", a.term, True, a.log.last_index), now), now)
    assert a.commit_index == a.log.last_index
    return a, now


def tick(a: RaftReplica, now: int) -> list[Any]:
    return settle(a, a.on_timer(HEARTBEAT, now), now)


def ack_all(a: RaftReplica, now: int) -> None:
    for peer in ("b", "c"):
        a.on_message(peer, AppendResponse("g", a.term, True, a.log.last_index), now)


def test_a_tick_after_appends_to_every_follower_sends_no_round_and_the_next_idle_one_does() -> None:
    a, now = elected()
    tick(a, now + 30)  # the period of the election's own appends ends
    effects = settle(a, a.propose(1, Put(b"k", b"v", None), now + 40), now + 40)
    assert {to for to, _ in sent(effects, AppendEntries)} == {"b", "c"}
    ack_all(a, now + 41)

    assert sent(tick(a, now + 60), Heartbeat) == []
    assert {to for to, _ in sent(tick(a, now + 90), Heartbeat)} == {"b", "c"}


def test_a_stalled_follower_hears_from_the_retransmitted_append_instead() -> None:
    a, now = elected()
    tick(a, now + 30)
    settle(a, a.propose(1, Put(b"k", b"v", None), now + 40), now + 40)
    a.on_message("b", AppendResponse("g", a.term, True, a.log.last_index), now + 41)
    tick(a, now + 60)  # both were fed: no round
    effects = tick(a, now + 90)  # c never answered: its append goes again, b gets a heartbeat
    assert [to for to, _ in sent(effects, AppendEntries)] == ["c"]
    assert [to for to, _ in sent(effects, Heartbeat)] == ["b", "c"]


def test_a_waiting_read_gets_a_round_even_when_every_follower_was_fed() -> None:
    a, now = elected()
    tick(a, now + 30)
    first = sent(a.read(7, b"k", now + 35), Heartbeat)
    assert {to for to, _ in first} == {"b", "c"}  # the read's own round, lost
    settle(a, a.propose(1, Put(b"k", b"v", None), now + 40), now + 40)
    ack_all(a, now + 41)
    again = sent(tick(a, now + 60), Heartbeat)
    assert {to for to, _ in again} == {"b", "c"}
    answer = a.on_message("b", HeartbeatResponse("g", a.term, again[0][1].round), now + 61)
    replies = [e.result for e in answer if isinstance(e, Reply) and e.req_id == 7]
    assert len(replies) == 1 and isinstance(replies[0], Ok) and replies[0].value == b"v"


LAZY = replace(CFG, lazy_followers=True)


def appended_to(effects: list[Any]) -> list[str]:
    return sorted(to for to, msg in sent(effects, AppendEntries) if msg.entries)


def test_lazy_followers_get_new_entries_at_the_tick_and_a_commit_needs_only_the_eager_one(
        ) -> None:
    a, now = elected(LAZY)
    tick(a, now + 30)  # chooses the eager follower
    effects = settle(a, a.propose(1, Put(b"k", b"v", None), now + 40), now + 40)
    (eager,) = appended_to(effects)
    lazy = "c" if eager == "b" else "b"
    answer = a.on_message(eager, AppendResponse("g", a.term, True, a.log.last_index), now + 41)
    assert [e.req_id for e in answer if isinstance(e, Reply)] == [1]
    settle(a, a.propose(2, Put(b"k2", b"v", None), now + 42), now + 42)
    assert appended_to(tick(a, now + 60)) == [lazy]  # both entries, in one append
    a.on_message(lazy, AppendResponse("g", a.term, True, a.log.last_index), now + 61)


def test_a_stalled_eager_follower_is_replaced_at_the_next_tick() -> None:
    a, now = elected(LAZY)
    tick(a, now + 30)
    (eager,) = appended_to(settle(a, a.propose(1, Put(b"k", b"v", None), now + 40), now + 40))
    other = "c" if eager == "b" else "b"
    effects = tick(a, now + 60)  # the eager one has not answered: the other is fed too
    assert other in appended_to(effects)
    answer = a.on_message(other, AppendResponse("g", a.term, True, a.log.last_index), now + 61)
    assert [e.req_id for e in answer if isinstance(e, Reply)] == [1]
    tick(a, now + 90)  # the other answered, the first one still has not: they swap
    later = settle(a, a.propose(2, Put(b"k2", b"v", None), now + 95), now + 95)
    assert appended_to(later) == [other]
