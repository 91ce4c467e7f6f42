"""A replica's replicated state and its durability: the log, the voter history, the key/value
state, commit and apply, snapshots, and which writes are not yet on disk.

Nothing here knows about roles or terms of office; `RaftReplica` decides, `ReplicaStore` keeps
the books. Changes accumulate during one event and leave as a single `Persist` effect.
Acknowledgements that vouch for this state are held until a `Persist` covering it is durable.
"""

from __future__ import annotations

from collections import deque

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.kvstate import KvState, SnapshotDecodeError
from sapwood.core.consensus.log import RaftLog
from sapwood.core.consensus.membership import MembershipHistory
from sapwood.core.consensus.messages import Entry, NoOp, Reconfigure, SnapshotMeta, Version
from sapwood.core.consensus.persist import DurableState, HardState, Persist, Snapshot
from sapwood.core.consensus.results import ConfigApplied, Result
from sapwood.core.effects import Send


class ReplicaStore:
    __slots__ = (
        "_config",
        "_durable_marks",
        "_gate_now",
        "_gated",
        "_group_id",
        "_last_token",
        "_persisted_token",
        "_snapshot_to_persist",
        "_truncate_from",
        "_unstable",
        "applied",
        "commit",
        "durable_index",
        "kv",
        "log",
        "membership",
        "snapshot",
    )

    def __init__(
        self,
        group_id: str,
        initial_members: tuple[str, ...],
        config: RaftConfig,
        durable: DurableState,
    ) -> None:
        self._group_id = group_id
        self._config = config
        snap = durable.snapshot
        self.snapshot: Snapshot | None = snap
        if snap is None:
            self.log = RaftLog(0, 0, durable.entries)
            self.membership = MembershipHistory(initial_members)
            self.kv = KvState(config.max_group_bytes)
        else:
            self.log = RaftLog(snap.meta.index, snap.meta.term, durable.entries)
            self.membership = MembershipHistory(snap.meta.members)
            self.kv = KvState.decode(snap.data, config.max_group_bytes)
        self._record_memberships_in_log()
        self.commit = self.applied = self.log.snapshot_index
        # Tokens of `Persist` effects issued and confirmed; the log index each token makes
        # durable; acknowledgements waiting for a token.
        self._last_token = 0
        self._persisted_token = 0
        self.durable_index = self.log.last_index
        self._durable_marks: deque[tuple[int, int]] = deque()
        self._gated: deque[tuple[int, Send]] = deque()
        # Changes of the current event, not yet handed out as a `Persist`.
        self._gate_now: list[Send] = []
        self._unstable: list[Entry] = []
        self._truncate_from: int | None = None
        self._snapshot_to_persist: Snapshot | None = None

    def _record_memberships_in_log(self) -> None:
        for index in range(self.log.first_index, self.log.last_index + 1):
            command = self.log.entry(index).command
            if isinstance(command, Reconfigure):
                self.membership.record(index, command.members)

    # --- Log changes ----------------------------------------------------------------------------

    def append(self, entries: tuple[Entry, ...]) -> bool:
        """Append after the last entry; True when this changed the voter set."""
        changed = False
        for entry in entries:
            self.log.append(entry)
            self._unstable.append(entry)
            if isinstance(entry.command, Reconfigure):
                self.membership.record(entry.index, entry.command.members)
                changed = True
        return changed

    def accept(self, entries: tuple[Entry, ...]) -> None:
        """Follower: take the leader's entries, replacing a conflicting tail (never committed)."""
        for i, entry in enumerate(entries):
            existing = self.log.term_at(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                self._truncate(entry.index)
            self.append(entries[i:])
            return

    def _truncate(self, index: int) -> None:
        if index <= self.commit:
            raise AssertionError(f"raft: truncating committed entry {index} (commit {self.commit})")
        self.log.truncate_from(index)
        self._forget_unpersisted_from(index)
        self.membership.truncate_from(index)

    def _forget_unpersisted_from(self, index: int) -> None:
        """Entries from `index` on are gone: neither write them nor count them as durable."""
        self._unstable = [e for e in self._unstable if e.index < index]
        if self._truncate_from is None or index < self._truncate_from:
            self._truncate_from = index
        self.durable_index = min(self.durable_index, index - 1)
        self._durable_marks = deque((t, min(i, index - 1)) for t, i in self._durable_marks)

    def install(self, snapshot: Snapshot) -> bool:
        """Follower: replace state with the leader's snapshot; False if it cannot be decoded."""
        meta = snapshot.meta
        try:
            kv = KvState.decode(snapshot.data, self._config.max_group_bytes)
        except SnapshotDecodeError:
            return False
        if self.log.term_at(meta.index) == meta.term:
            # Our log agrees at the snapshot point: keep what follows.
            self.log.compact_to(meta.index, meta.term)
            self._unstable = [e for e in self._unstable if e.index > meta.index]
        else:
            self._forget_unpersisted_from(meta.index + 1)
            self.log.reset(meta.index, meta.term)
        self.membership.reset(meta.members)
        self._record_memberships_in_log()
        self.kv = kv
        self.commit = self.applied = meta.index
        self.snapshot = self._snapshot_to_persist = snapshot
        return True

    # --- Commit and apply -----------------------------------------------------------------------

    def commit_to(self, index: int) -> list[tuple[Entry, Result | None]]:
        """Advance the commit index and apply; returns each applied entry with its result."""
        if index <= self.commit:
            return []
        self.commit = index
        applied: list[tuple[Entry, Result | None]] = []
        while self.applied < self.commit:
            entry = self.log.entry(self.applied + 1)
            applied.append((entry, self._apply(entry)))
            self.applied = entry.index
        return applied

    def _apply(self, entry: Entry) -> Result | None:
        command = entry.command
        version = Version(entry.term, entry.index)
        if isinstance(command, NoOp):
            return None
        if isinstance(command, Reconfigure):
            return ConfigApplied(command.members, version)
        return self.kv.apply(command, version)

    def snapshot_if_due(self) -> bool:
        """Compact the log into a snapshot after enough applied entries; True if taken."""
        last = self.snapshot.meta.index if self.snapshot is not None else 0
        if self.applied - last < self._config.snapshot_interval_entries:
            return False
        index = self.applied
        meta = SnapshotMeta(index, self.log.term_at(index) or 0, self.membership.at(index))
        self.snapshot = self._snapshot_to_persist = Snapshot(meta, self.kv.encode())
        # In memory the log keeps a tail behind the snapshot; the durable copy may drop it.
        cut = index - self._config.snapshot_trailing_entries
        if cut > self.log.snapshot_index:
            self.log.compact_to(cut, self.log.term_at(cut) or 0)
            self.membership.compact_to(cut)
        return True

    # --- Durability -----------------------------------------------------------------------------

    def hold(self, send: Send) -> None:
        """Send this only once everything written so far is durable."""
        self._gate_now.append(send)

    def take_persist(self, hard_state: HardState | None) -> tuple[Persist | None, list[Send]]:
        """End of an event: the `Persist` to issue (if anything changed) and the held
        messages that may go now."""
        persist = None
        if (
            hard_state is not None
            or self._unstable
            or self._truncate_from is not None
            or self._snapshot_to_persist is not None
        ):
            self._last_token += 1
            persist = Persist(
                self._group_id,
                self._last_token,
                hard_state,
                self._truncate_from,
                tuple(self._unstable),
                self._snapshot_to_persist,
            )
            self._durable_marks.append((self._last_token, self.log.last_index))
            if len(self._durable_marks) > self._config.max_unconfirmed_writes:
                # Forgetting the oldest mark only delays what counts as durable: safe.
                self._durable_marks.popleft()
            self._unstable = []
            self._truncate_from = None
            self._snapshot_to_persist = None
        ready: list[Send] = []
        if self._gate_now:
            if self._last_token > self._persisted_token:
                self._gated.extend((self._last_token, send) for send in self._gate_now)
                while len(self._gated) > self._config.max_gated_messages:
                    self._gated.popleft()  # a lost message, which Raft tolerates
            else:
                ready = self._gate_now
            self._gate_now = []
        return persist, ready

    def persisted(self, token: int) -> list[Send] | None:
        """A `Persist` is durable: the held messages it releases (None for an unknown token)."""
        if not self._persisted_token < token <= self._last_token:
            return None
        self._persisted_token = token
        while self._durable_marks and self._durable_marks[0][0] <= token:
            self.durable_index = self._durable_marks.popleft()[1]
        released: list[Send] = []
        while self._gated and self._gated[0][0] <= token:
            released.append(self._gated.popleft()[1])
        return released
