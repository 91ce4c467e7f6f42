"""Moving a snapshot from leader to follower in bounded chunks."""

from __future__ import annotations

from sapwood.core.consensus.messages import InstallSnapshot, SnapshotMeta
from sapwood.core.consensus.persist import Snapshot

# The encoding adds at most a few bytes to the state's own footprint (see kvstate).
SNAPSHOT_ENCODING_SLACK_BYTES = 64


def snapshot_chunk(
    group_id: str, term: int, snapshot: Snapshot, offset: int, max_chunk: int
) -> InstallSnapshot:
    data = snapshot.data[offset : offset + max_chunk]
    done = offset + len(data) >= len(snapshot.data)
    return InstallSnapshot(group_id, term, snapshot.meta, offset, data, done)


class SnapshotReceiver:
    """Reassembles one snapshot; chunks must arrive in order (others are answered with the
    offset we want, and the leader resends from there)."""

    __slots__ = ("_max_bytes", "_meta", "_parts", "_size")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes + SNAPSHOT_ENCODING_SLACK_BYTES
        self._meta: SnapshotMeta | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def clear(self) -> None:
        self._meta = None
        self._parts = []
        self._size = 0

    def receive(self, chunk: InstallSnapshot) -> tuple[int, Snapshot | None]:
        """Take a chunk; returns (next offset wanted, the snapshot once complete)."""
        if chunk.meta != self._meta:
            if chunk.offset != 0:
                return 0, None
            self.clear()
            self._meta = chunk.meta
        if chunk.offset != self._size:
            return self._size, None
        if self._size + len(chunk.data) > self._max_bytes:
            # Larger than any state the group may hold: refuse rather than buffer without bound.
            self.clear()
            return 0, None
        self._parts.append(chunk.data)
        self._size += len(chunk.data)
        if not chunk.done:
            return self._size, None
        snapshot = Snapshot(chunk.meta, b"".join(self._parts))
        self.clear()
        return len(snapshot.data), snapshot
