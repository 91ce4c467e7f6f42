"""Strongly consistent replica groups: a sans-I/O Raft (pre-vote, check-quorum, leader leases,
ReadIndex, snapshots, single-server membership changes) over a compare-and-set register map.

Driver contract (node, embedded store, simulator), one `RaftReplica` per group member:
  - Build it with the group's initial voters (or () to join an existing group later), an
    injected `random.Random` and the `DurableState` from its storage; call `start(now_ms)`.
  - Feed it events: `on_message(from_id, msg, now)`, `on_timer(key, now)`,
    `on_persisted(token, now)`, client `propose(req_id, command, now)` / `read(req_id, key, now)`.
    `now_ms` must come from a monotonic clock of bounded drift (see `config`).
  - Perform the effects it returns: `Send` (may be lost, duplicated or reordered), `Reply`,
    `SetTimer` (replaces the timer of the same key) / `CancelTimer`, and `Persist`: apply it
    atomically and in order, make it durable, then call `on_persisted(token)`. One call for the
    newest token declares all earlier ones durable, so writes can share an fsync.
  - After a crash, build a new replica from the durable state; anything not persisted is gone.
Every request is answered by exactly one `Reply` while the replica lives (see `results`).
"""

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.interface import (
    ApplyObserver,
    RaftEffect,
    RaftTimer,
    Role,
    TimerKind,
)
from sapwood.core.consensus.kvstate import KvState
from sapwood.core.consensus.log import RaftLog
from sapwood.core.consensus.messages import (
    ABSENT,
    AddMember,
    AppendEntries,
    AppendResponse,
    ClientCommand,
    Delete,
    Entry,
    Get,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    NoOp,
    Put,
    RaftMessage,
    Reconfigure,
    RemoveMember,
    SnapshotMeta,
    SnapshotResponse,
    Version,
    VoteRequest,
    VoteResponse,
)
from sapwood.core.consensus.persist import (
    DurableState,
    HardState,
    MemoryRaftStorage,
    Persist,
    Snapshot,
)
from sapwood.core.consensus.raft import RaftReplica
from sapwood.core.consensus.results import (
    Absent,
    ConfigApplied,
    Indeterminate,
    Invalid,
    NotLeader,
    Ok,
    Precondition,
    Result,
    TooLarge,
    Unavailable,
    as_error,
)
from sapwood.core.consensus.stats import RaftStats

__all__ = [
    "ABSENT",
    "Absent",
    "AddMember",
    "AppendEntries",
    "AppendResponse",
    "ApplyObserver",
    "ClientCommand",
    "ConfigApplied",
    "Delete",
    "DurableState",
    "Entry",
    "Get",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "Indeterminate",
    "InstallSnapshot",
    "Invalid",
    "KvState",
    "MemoryRaftStorage",
    "NoOp",
    "NotLeader",
    "Ok",
    "Persist",
    "Precondition",
    "Put",
    "RaftConfig",
    "RaftEffect",
    "RaftLog",
    "RaftMessage",
    "RaftReplica",
    "RaftStats",
    "RaftTimer",
    "Reconfigure",
    "RemoveMember",
    "Result",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotResponse",
    "TimerKind",
    "TooLarge",
    "Unavailable",
    "Version",
    "VoteRequest",
    "VoteResponse",
    "as_error",
]
