"""The leader's heartbeat rounds, its read lease, and reads waiting for leadership confirmation.

A round is one broadcast of numbered heartbeats. When a majority has acknowledged round r (the
leader acknowledges its own rounds at once), then:
  - every read that arrived before round r was sent may be answered (ReadIndex): at r's send time
    no other leader could have committed anything yet, and this leader's commit index covers all
    writes acknowledged before the read arrived;
  - the lease runs from r's send time on the leader's clock for `RaftConfig.lease_ms`.
Rounds sent before the last membership change never count, so a lease or a confirmation is
always about the current voter set.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PendingRead:
    req_id: int
    key: bytes
    # The first round sent after the read arrived; its acknowledgement confirms the read.
    min_round: int


class ReadTracker:
    """Rounds and reads of one leadership term (a new leader starts a fresh tracker)."""

    __slots__ = (
        "_lease_ms",
        "_lease_start",
        "_max_rounds",
        "_pending",
        "_sent_at",
        "confirmed_round",
        "floor",
        "read_round",
        "round",
    )

    def __init__(self, lease_ms: int, max_rounds: int) -> None:
        self._lease_ms = lease_ms
        self._max_rounds = max_rounds
        self._sent_at: dict[int, int] = {}
        self._pending: deque[PendingRead] = deque()
        self._lease_start: int | None = None
        self.round = 0
        self.confirmed_round = 0
        # Rounds up to `floor` were sent under an older membership and never count.
        self.floor = 0
        # The round a waiting read is counting on, while one is outstanding.
        self.read_round: int | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def start_round(self, now_ms: int) -> int:
        self.round += 1
        self._sent_at[self.round] = now_ms
        if len(self._sent_at) > self._max_rounds:
            # The oldest unacknowledged round can no longer extend the lease; forget it.
            del self._sent_at[min(self._sent_at)]
        return self.round

    def confirm(self, quorum_round: int) -> bool:
        """A majority acknowledged rounds up to `quorum_round`; True when that is news."""
        if quorum_round <= max(self.confirmed_round, self.floor):
            return False
        self.confirmed_round = quorum_round
        sent = self._sent_at.get(quorum_round)
        if sent is not None:
            self._lease_start = sent
        for old in [r for r in self._sent_at if r <= quorum_round]:
            del self._sent_at[old]
        if self.read_round is not None and self.read_round <= quorum_round:
            self.read_round = None
        return True

    def lease_valid(self, now_ms: int) -> bool:
        # A clock reading before the lease began has stepped back: the lease proves nothing then
        # (and without leases, lease_ms 0, a step back must not open one).
        start = self._lease_start
        return self._lease_ms > 0 and start is not None and start <= now_ms < start + self._lease_ms

    def lease_expiry(self) -> int | None:
        return None if self._lease_start is None else self._lease_start + self._lease_ms

    def membership_changed(self) -> None:
        """Acknowledgements so far were counted against another voter set: start over."""
        self.floor = self.round
        self._lease_start = None
        self.read_round = None
        self._sent_at.clear()

    def wait(self, req_id: int, key: bytes) -> None:
        self._pending.append(PendingRead(req_id, key, self.round + 1))

    def needs_round(self) -> bool:
        """Some read waits for a round that has not been sent and none is outstanding for reads."""
        if self.read_round is not None or not self._pending:
            return False
        return max(self._pending[-1].min_round, self.floor + 1) > self.round

    def take_confirmed(self) -> list[PendingRead]:
        done: list[PendingRead] = []
        while self._pending and self._pending[0].min_round <= self.confirmed_round:
            done.append(self._pending.popleft())
        return done

    def drain(self) -> list[PendingRead]:
        """Every waiting read (leadership is over)."""
        reads = list(self._pending)
        self._pending.clear()
        return reads
