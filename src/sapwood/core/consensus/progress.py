"""The leader's view of each follower (etcd's Progress): how much of the log it holds and how
the leader is currently feeding it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sapwood.core.consensus.persist import Snapshot


class FeedMode(Enum):
    PROBE = "probe"  # one append at a time until we learn where the logs match
    REPLICATE = "replicate"  # logs match at `match`; stream entries, bounded by the in-flight limit
    SNAPSHOT = "snapshot"  # the entries it needs are compacted: send the snapshot in chunks


@dataclass(slots=True)
class Progress:
    next_index: int
    match_index: int = 0
    mode: FeedMode = FeedMode.PROBE
    # In PROBE: an append is outstanding; wait for its answer or the next heartbeat tick.
    probe_sent: bool = False
    # Answered anything since the last check-quorum tick.
    recent_active: bool = False
    # Highest heartbeat round it acknowledged in this term.
    acked_round: int = 0
    # Sent new entries as they are appended (else only at heartbeat ticks; see lazy_followers).
    eager: bool = True
    # Sent an append since the previous heartbeat tick (which then needs no heartbeat).
    fed: bool = False
    # Replication stall detection: `match_index` at the previous heartbeat tick.
    match_at_tick: int = 0
    # In SNAPSHOT: the snapshot being sent (kept even if the leader takes a newer one, so a
    # transfer always completes) and the byte the follower asked for next.
    snapshot: Snapshot | None = None
    snapshot_offset: int = 0
    snapshot_progressed: bool = False

    def inflight(self) -> int:
        """Entries sent but not yet acknowledged."""
        return max(0, self.next_index - self.match_index - 1)

    def acknowledge(self, match_index: int) -> bool:
        """Record that the follower holds our log up to `match_index`; True if that is news."""
        if match_index <= self.match_index:
            return False
        self.match_index = match_index
        self.next_index = max(self.next_index, match_index + 1)
        return True

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    def become_probe(self, next_index: int) -> None:
        self.mode = FeedMode.PROBE
        self.next_index = max(self.match_index + 1, next_index)
        self.probe_sent = False
        self.snapshot = None

    def become_replicate(self) -> None:
        self.mode = FeedMode.REPLICATE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.snapshot = None

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self.mode = FeedMode.SNAPSHOT
        self.snapshot = snapshot
        self.snapshot_offset = 0
        self.snapshot_progressed = True
