"""Timing and the named limits of a consensus group.

Every replica of a group must run with the same timing values: the lease argument below compares
one replica's lease with another replica's election timeout.

Clock assumption (the only one leases rely on): each replica's `now_ms` is monotonic and, over
any interval, advances at a rate within [1 - rho, 1 + rho] of real time, where
rho = `max_clock_drift_rate` (default 5%). Nothing depends on replicas' clocks agreeing on
absolute time, so skew (offsets) of any size is harmless. The driver must read `now_ms` when
it handles an event, never reuse a value read before the event arrived; a process pause after
the reading is harmless (the read is then linearized at the reading).

Why the lease is safe: a follower that answers a heartbeat (or any leader message) grants no vote
and starts no election for `election_timeout_min_ms` on its own clock, i.e. for at least
E / (1 + rho) real time after it received the message, which is after the leader sent it. A
leader whose round was acknowledged by a majority holds its lease for L ms on its own clock from
the round's send time, i.e. for at most L / (1 - rho) real time. Any new leader needs a vote from
that majority, so with L <= E * (1 - rho) / (1 + rho) no other leader can exist while the lease
holds. A restarted replica also grants no vote for E after it starts, which covers the
acknowledgements it gave before the crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

ELECTION_TIMEOUT_MIN_MS: Final = 1000
ELECTION_TIMEOUT_MAX_MS: Final = 2000
HEARTBEAT_INTERVAL_MS: Final = 100
MAX_CLOCK_DRIFT_RATE: Final = 0.05
# Integer milliseconds truncate both the send time and the follower's receipt time.
CLOCK_GRANULARITY_MARGIN_MS: Final = 2

SNAPSHOT_INTERVAL_ENTRIES: Final = 1000
SNAPSHOT_TRAILING_ENTRIES: Final = 500
MAX_INFLIGHT_ENTRIES: Final = 256
MAX_ENTRIES_PER_APPEND: Final = 64
MAX_APPEND_BYTES: Final = 4 * 1024 * 1024
MAX_ENTRY_BYTES: Final = 1024 * 1024
MAX_PENDING_PROPOSALS: Final = 1024
MAX_PENDING_READS: Final = 1024
MAX_SNAPSHOT_CHUNK_BYTES: Final = 256 * 1024
MAX_GROUP_BYTES: Final = 1024 * 1024 * 1024
MAX_GATED_MESSAGES: Final = 4096
MAX_UNCONFIRMED_WRITES: Final = 4096
MAX_GROUP_MEMBERS: Final = 16
MAX_TRACKED_ROUNDS: Final = 256
PROPOSAL_TIMEOUT_MS: Final = 30_000


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timing and limits of one group; see the module docstring for the clock assumption."""

    election_timeout_min_ms: int = ELECTION_TIMEOUT_MIN_MS
    election_timeout_max_ms: int = ELECTION_TIMEOUT_MAX_MS
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    max_clock_drift_rate: float = MAX_CLOCK_DRIFT_RATE
    leases_enabled: bool = True
    # Take a snapshot and compact the log after this many applied entries.
    snapshot_interval_entries: int = SNAPSHOT_INTERVAL_ENTRIES
    # Entries kept in the log behind a snapshot, so a follower lagging a little catches up
    # from the log rather than by a (possibly never-ending) chase of ever newer snapshots.
    snapshot_trailing_entries: int = SNAPSHOT_TRAILING_ENTRIES
    # Entries sent to one follower but not yet acknowledged.
    max_inflight_entries: int = MAX_INFLIGHT_ENTRIES
    # True: new entries go at once only to the followers a commit needs (a majority with the
    # leader, the most up to date that are not stalled); the others get them in one append per
    # heartbeat tick. Fewer messages per write; when an eager follower stalls, commits wait for
    # the next tick, which also picks other followers.
    lazy_followers: bool = False
    max_entries_per_append: int = MAX_ENTRIES_PER_APPEND
    max_append_bytes: int = MAX_APPEND_BYTES
    max_entry_bytes: int = MAX_ENTRY_BYTES
    # Proposals appended but not yet answered; more are refused as Unavailable.
    max_pending_proposals: int = MAX_PENDING_PROPOSALS
    max_pending_reads: int = MAX_PENDING_READS
    max_snapshot_chunk_bytes: int = MAX_SNAPSHOT_CHUNK_BYTES
    # Bound on the replicated key/value state (and so on a snapshot being received).
    max_group_bytes: int = MAX_GROUP_BYTES
    # Acknowledgements waiting for a disk write; beyond this the oldest are dropped (Raft
    # tolerates lost messages).
    max_gated_messages: int = MAX_GATED_MESSAGES
    # `Persist` effects whose completion is still awaited that are tracked individually; beyond
    # this, older ones are merged (the leader then counts its log as durable a little later).
    max_unconfirmed_writes: int = MAX_UNCONFIRMED_WRITES
    max_members: int = MAX_GROUP_MEMBERS
    # Heartbeat rounds remembered for the lease; older unacknowledged rounds are forgotten.
    max_tracked_rounds: int = MAX_TRACKED_ROUNDS
    # A proposal whose outcome is still unknown after this long is answered Indeterminate.
    proposal_timeout_ms: int = PROPOSAL_TIMEOUT_MS

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid RaftConfig: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not 0 < self.heartbeat_interval_ms < self.election_timeout_min_ms:
            problems.append("need 0 < heartbeat_interval_ms < election_timeout_min_ms")
        if self.election_timeout_max_ms <= self.election_timeout_min_ms:
            problems.append("need election_timeout_max_ms > election_timeout_min_ms")
        if not 0.0 <= self.max_clock_drift_rate < 0.5:
            problems.append("need 0 <= max_clock_drift_rate < 0.5")
        positive = {
            "snapshot_interval_entries": self.snapshot_interval_entries,
            "max_inflight_entries": self.max_inflight_entries,
            "max_entries_per_append": self.max_entries_per_append,
            "max_entry_bytes": self.max_entry_bytes,
            "max_pending_proposals": self.max_pending_proposals,
            "max_pending_reads": self.max_pending_reads,
            "max_snapshot_chunk_bytes": self.max_snapshot_chunk_bytes,
            "max_group_bytes": self.max_group_bytes,
            "max_gated_messages": self.max_gated_messages,
            "max_unconfirmed_writes": self.max_unconfirmed_writes,
            "max_members": self.max_members,
            "max_tracked_rounds": self.max_tracked_rounds,
            "proposal_timeout_ms": self.proposal_timeout_ms,
        }
        problems.extend(f"{name} must be positive" for name, v in positive.items() if v <= 0)
        if self.snapshot_trailing_entries < 0:
            problems.append("snapshot_trailing_entries must not be negative")
        if self.max_append_bytes < self.max_entry_bytes:
            problems.append("max_append_bytes must be >= max_entry_bytes")
        return problems

    @property
    def lease_ms(self) -> int:
        """How long a confirmed heartbeat round lets the leader read alone (0: never)."""
        if not self.leases_enabled:
            return 0
        rho = self.max_clock_drift_rate
        bound = math.floor(self.election_timeout_min_ms * (1.0 - rho) / (1.0 + rho))
        return max(0, bound - CLOCK_GRANULARITY_MARGIN_MS)
