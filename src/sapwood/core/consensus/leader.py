"""What only a leader keeps: per-follower progress, what to send each follower, heartbeat rounds.

`LeaderFeed` decides the messages; the replica sends them. It reads the replica's log (the same
object, never modified here) and is discarded when leadership ends.
"""

from __future__ import annotations

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.log import RaftLog
from sapwood.core.consensus.membership import majority, quorum_value
from sapwood.core.consensus.messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    Heartbeat,
    RaftMessage,
    SnapshotResponse,
)
from sapwood.core.consensus.persist import Snapshot
from sapwood.core.consensus.progress import FeedMode, Progress
from sapwood.core.consensus.reads import PendingRead, ReadTracker
from sapwood.core.consensus.snapshots import snapshot_chunk
from sapwood.core.consensus.stats import RaftStats

Outbox = list[tuple[str, RaftMessage]]


class LeaderFeed:
    __slots__ = ("_config", "_group_id", "_log", "_self_id", "_stats", "_term", "progress",
                 "reads", "term_start_index")

    def __init__(
        self,
        group_id: str,
        self_id: str,
        term: int,
        config: RaftConfig,
        log: RaftLog,
        stats: RaftStats,
    ) -> None:
        self._group_id = group_id
        self._self_id = self_id
        self._term = term
        self._config = config
        self._log = log
        self._stats = stats
        self.progress: dict[str, Progress] = {}
        self.reads = ReadTracker(config.lease_ms, config.max_tracked_rounds)
        # Index of this leader's first entry; committing it makes the commit index current.
        self.term_start_index = log.last_index + 1

    # --- Membership and quorums -----------------------------------------------------------------

    def sync_members(self, members: tuple[str, ...], last_index: int) -> None:
        for peer in members:
            if peer != self._self_id and peer not in self.progress:
                self.progress[peer] = Progress(next_index=last_index + 1)
        for peer in [p for p in self.progress if p not in members]:
            del self.progress[peer]
        self.reads.membership_changed()

    def matches(self, members: tuple[str, ...]) -> list[int]:
        """Match indexes of the voting followers (the leader adds its own durable index)."""
        return [self.progress[p].match_index for p in members if p in self.progress]

    def quorum_active(self, members: tuple[str, ...]) -> bool:
        """Whether a majority answered since the last check; starts a new check period."""
        active = sum(1 for p in members if p in self.progress and self.progress[p].recent_active)
        if self._self_id in members:
            active += 1
        for pr in self.progress.values():
            pr.recent_active = False
        return active >= majority(len(members))

    # --- Heartbeat rounds -----------------------------------------------------------------------

    def start_round(self, now_ms: int, commit: int, for_reads: bool) -> Outbox:
        number = self.reads.start_round(now_ms)
        if for_reads:
            self.reads.read_round = number
        return [
            (peer, Heartbeat(self._group_id, self._term, min(pr.match_index, commit), number))
            for peer, pr in self.progress.items()
        ]

    def take_all_fed(self) -> bool:
        """Whether every follower was sent an append since the last call (the previous heartbeat
        tick); starts a new period. An append tells a follower all a heartbeat would (the leader
        lives, the commit index), so a tick finding them all fed sends no round: under load that
        saves a heartbeat and its answer per follower per interval. Reads then start their own
        rounds (`settle_reads`), and the lease, renewed only by rounds, may lapse meanwhile."""
        fed = bool(self.progress) and all(pr.fed for pr in self.progress.values())
        for pr in self.progress.values():
            pr.fed = False
        return fed

    def heartbeat_acked(self, peer: str, number: int) -> bool:
        pr = self.progress.get(peer)
        if pr is None:
            return False
        pr.recent_active = True
        if number <= pr.acked_round:
            return False
        pr.acked_round = number
        return True

    def _confirm_rounds(self, members: tuple[str, ...]) -> None:
        rounds = [self.progress[p].acked_round for p in members if p in self.progress]
        if self._self_id in members:
            rounds.append(self.reads.round)
        self.reads.confirm(quorum_value(rounds, len(members)))

    def settle_reads(
        self, members: tuple[str, ...], now_ms: int, commit: int
    ) -> tuple[Outbox, list[PendingRead]]:
        """Heartbeats to send for reads still needing a round, and the reads answerable now
        (confirmed, and this leader's commit index is current)."""
        self._confirm_rounds(members)
        out: Outbox = []
        if self.reads.needs_round():
            out = self.start_round(now_ms, commit, for_reads=True)
            self._confirm_rounds(members)  # a group of one confirms at once
        if commit < self.term_start_index:
            return out, []
        return out, self.reads.take_confirmed()

    # --- Feeding followers ----------------------------------------------------------------------

    def pump_all(self, commit: int, snapshot: Snapshot | None) -> Outbox:
        """New entries were appended: feed the eager followers."""
        out: Outbox = []
        for peer, pr in self.progress.items():
            if pr.eager:
                self._pump(peer, pr, commit, snapshot, out)
        return out

    def _choose_eager(self, members: tuple[str, ...]) -> None:
        """Heartbeat tick, with lazy followers: the followers a commit needs, the most up to
        date among those not stalled, are fed at once; the others at ticks."""
        voters = [p for p in self.progress if p in members]
        need = majority(len(members)) - (1 if self._self_id in members else 0)
        ranked = sorted(voters, key=lambda p: (self._stalled(self.progress[p]),
                                               -self.progress[p].match_index, p))
        eager = set(ranked[:need])
        for peer, pr in self.progress.items():
            pr.eager = peer in eager or peer not in members

    @staticmethod
    def _stalled(pr: Progress) -> bool:
        return pr.mode is not FeedMode.REPLICATE or (
            pr.inflight() > 0 and pr.match_index == pr.match_at_tick)

    def retransmit(
        self, commit: int, snapshot: Snapshot | None, members: tuple[str, ...]
    ) -> Outbox:
        """Heartbeat tick: resend what looks lost (a probe, a stalled stream, a snapshot chunk),
        and feed every follower (the lazy ones get their entries here)."""
        if self._config.lazy_followers:
            self._choose_eager(members)
        out: Outbox = []
        for peer, pr in self.progress.items():
            if pr.mode is FeedMode.PROBE:
                pr.probe_sent = False
            elif pr.mode is FeedMode.REPLICATE:
                if pr.inflight() > 0 and pr.match_index == pr.match_at_tick:
                    pr.next_index = pr.match_index + 1
            else:
                if not pr.snapshot_progressed:
                    pr.snapshot_offset = 0  # the follower answers with the offset it wants
                    self._send_chunk(peer, pr, out)
                pr.snapshot_progressed = False
            pr.match_at_tick = pr.match_index
            self._pump(peer, pr, commit, snapshot, out)
        return out

    def append_answered(
        self, peer: str, msg: AppendResponse, commit: int, snapshot: Snapshot | None
    ) -> tuple[bool, Outbox]:
        """Returns (whether the follower's match index advanced, messages to send)."""
        pr = self.progress.get(peer)
        if pr is None:
            return False, []
        pr.recent_active = True
        progressed = False
        if msg.success:
            progressed = pr.acknowledge(msg.match_index)
            if pr.mode is FeedMode.PROBE and pr.match_index >= pr.next_index - 1:
                pr.become_replicate()
            elif pr.mode is FeedMode.SNAPSHOT and pr.match_index >= pr.snapshot_index:
                pr.become_probe(pr.match_index + 1)
        elif self._rejection_is_current(pr, msg):
            pr.become_probe(min(msg.rejected_index, msg.hint_index + 1))
        else:
            return False, []
        out: Outbox = []
        if pr.eager or pr.mode is not FeedMode.REPLICATE:
            self._pump(peer, pr, commit, snapshot, out)
        return progressed, out

    @staticmethod
    def _rejection_is_current(pr: Progress, msg: AppendResponse) -> bool:
        # Duplicated or delayed rejections must not restart probing (that would multiply
        # messages); only the answer to the outstanding probe, or a gap in the stream, counts.
        if msg.rejected_index <= pr.match_index or pr.mode is FeedMode.SNAPSHOT:
            return False
        return pr.mode is FeedMode.REPLICATE or msg.rejected_index == pr.next_index - 1

    def snapshot_answered(
        self, peer: str, msg: SnapshotResponse, commit: int, snapshot: Snapshot | None
    ) -> tuple[bool, Outbox]:
        pr = self.progress.get(peer)
        if pr is None:
            return False, []
        pr.recent_active = True
        out: Outbox = []
        if msg.done:
            progressed = pr.acknowledge(msg.snapshot_index)
            if pr.mode is FeedMode.SNAPSHOT and pr.match_index >= pr.snapshot_index:
                pr.become_probe(pr.match_index + 1)
            self._pump(peer, pr, commit, snapshot, out)
            return progressed, out
        current = pr.mode is FeedMode.SNAPSHOT and msg.snapshot_index == pr.snapshot_index
        if current and msg.next_offset > pr.snapshot_offset:
            pr.snapshot_offset = msg.next_offset
            pr.snapshot_progressed = True
            self._send_chunk(peer, pr, out)
        return False, out

    def _pump(
        self, peer: str, pr: Progress, commit: int, snapshot: Snapshot | None, out: Outbox
    ) -> None:
        while self._send_append(peer, pr, commit, snapshot, out):
            pass

    def _send_append(
        self, peer: str, pr: Progress, commit: int, snapshot: Snapshot | None, out: Outbox
    ) -> bool:
        """Send the next append this follower may receive; True if another may follow."""
        cfg, log = self._config, self._log
        if pr.mode is FeedMode.SNAPSHOT or (pr.mode is FeedMode.PROBE and pr.probe_sent):
            return False
        inflight = pr.inflight()
        if pr.mode is FeedMode.REPLICATE and (
            inflight >= cfg.max_inflight_entries or pr.next_index > log.last_index
        ):
            return False
        prev = pr.next_index - 1
        prev_term = log.term_at(prev)
        if prev_term is None:
            # What it needs next is compacted away.
            if snapshot is not None:
                pr.become_snapshot(snapshot)
                self._stats.snapshots_sent += 1
                self._send_chunk(peer, pr, out)
            return False
        room = cfg.max_entries_per_append
        if pr.mode is FeedMode.REPLICATE:
            room = min(room, cfg.max_inflight_entries - inflight)
        entries: tuple[Entry, ...] = ()
        if pr.next_index <= log.last_index:
            entries = log.entries_from(pr.next_index, room, cfg.max_append_bytes)
        out.append(
            (peer, AppendEntries(self._group_id, self._term, prev, prev_term, entries, commit))
        )
        pr.fed = True
        if pr.mode is FeedMode.PROBE:
            pr.probe_sent = True
            return False
        pr.next_index += len(entries)
        return True

    def _send_chunk(self, peer: str, pr: Progress, out: Outbox) -> None:
        if pr.snapshot is not None:
            chunk = snapshot_chunk(
                self._group_id,
                self._term,
                pr.snapshot,
                pr.snapshot_offset,
                self._config.max_snapshot_chunk_bytes,
            )
            out.append((peer, chunk))
