"""What a driver deals with besides the replica's methods: roles, timer keys, the effects a
replica returns, and the observer hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sapwood.core.consensus.messages import Entry
from sapwood.core.consensus.persist import Persist, Snapshot
from sapwood.core.effects import CancelTimer, Reply, Send, SetTimer


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class TimerKind(Enum):
    ELECTION = "election"
    HEARTBEAT = "heartbeat"
    CHECK_QUORUM = "check-quorum"


@dataclass(frozen=True, slots=True)
class RaftTimer:
    """The key of every timer a replica sets; hand it back to `on_timer`."""

    group_id: str
    kind: TimerKind


RaftEffect = Send | Reply | SetTimer | CancelTimer | Persist

# Called with (replica id, applied entry or installed snapshot): a seam for checkers.
ApplyObserver = Callable[[str, Entry | Snapshot], None]
