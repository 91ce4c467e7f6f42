"""What a replica asks to be made durable, and a reference in-memory store of it.

A driver receiving `Persist` must apply it atomically (one transaction), in the order the
replica emitted them, make it durable, and only then call `on_persisted(token)`. Replicas hold
back every vote and every acknowledgement of log contents until the state they depend on is
durable, so a crash can only lose what nobody was told about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sapwood.core.consensus.messages import Entry, SnapshotMeta


@dataclass(frozen=True, slots=True)
class HardState:
    """The state Raft needs across crashes besides the log."""

    term: int = 0
    voted_for: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class Persist:
    """Effect: write this durably, then call `on_persisted(token)` of the replica.

    Apply in this order, all or nothing:
      1. `truncate_from`: delete stored entries with index >= it;
      2. `entries`: delete stored entries with index >= entries[0].index, then append them;
      3. `snapshot`: store it and delete stored entries with index <= its index;
      4. `hard_state`: store it.
    """

    group_id: str
    token: int
    hard_state: HardState | None
    truncate_from: int | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None


@dataclass(frozen=True, slots=True)
class DurableState:
    """What survives a crash; pass it to a new `RaftReplica` to restart it."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


@dataclass(slots=True)
class MemoryRaftStorage:
    """Durable state kept in memory, applied exactly as `Persist` prescribes.

    Used by tests and the simulator; a disk-backed store must give the same results.
    """

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def apply(self, persist: Persist) -> None:
        if persist.truncate_from is not None:
            self._drop_from(persist.truncate_from)
        if persist.entries:
            self._drop_from(persist.entries[0].index)
            self.entries.extend(persist.entries)
        if persist.snapshot is not None:
            self.snapshot = persist.snapshot
            cut = persist.snapshot.meta.index
            self.entries = [e for e in self.entries if e.index > cut]
        if persist.hard_state is not None:
            self.hard_state = persist.hard_state

    def _drop_from(self, index: int) -> None:
        # Stored entries are contiguous, so the cut is an offset from the first.
        if self.entries:
            del self.entries[max(0, index - self.entries[0].index) :]

    def state(self) -> DurableState:
        return DurableState(self.hard_state, self.snapshot, tuple(self.entries))
