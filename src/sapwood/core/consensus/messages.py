"""The consensus vocabulary: client commands, log entries and the messages replicas exchange.

Every message names its group so one connection between two nodes can carry many groups. The
sender is not in the message: the driver passes it to `on_message(from_id, ...)` from the
authenticated connection it arrived on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from sapwood.core.records import fast_init

ABSENT: Final = "absent"
"""Expected-version marker: the write succeeds only if the key does not exist."""

# Fixed per-entry overhead counted against byte limits (term, index, framing).
ENTRY_OVERHEAD_BYTES: Final = 32


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """Identity of a write: the (term, index) of the log entry that made it. Never reused."""

    term: int
    index: int


# --- Commands a client may propose -------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Put:
    """Write `value` under `key` if the stored version is `expected` (None/ABSENT: key absent)."""

    key: bytes
    value: bytes
    expected: Version | Literal["absent"] | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `key`; unconditional when `expected` is None, compare-and-delete otherwise."""

    key: bytes
    expected: Version | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Get:
    """Read `key` through the log (a read that is also ordered with the writes)."""

    key: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class AddMember:
    member: str


@fast_init
@dataclass(frozen=True, slots=True)
class RemoveMember:
    member: str


ClientCommand = Put | Delete | Get | AddMember | RemoveMember


# --- What log entries carry ----------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class NoOp:
    """Appended by every new leader so it can commit (and so learn the commit index) in its term."""


@fast_init
@dataclass(frozen=True, slots=True)
class Reconfigure:
    """The complete voter set from this entry on (effective once appended, as in the Raft thesis)."""

    members: tuple[str, ...]


EntryCommand = Put | Delete | Get | NoOp | Reconfigure


@fast_init
@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    command: EntryCommand


def command_size(command: EntryCommand | ClientCommand) -> int:
    """Bytes an entry with this command counts against the byte limits."""
    if isinstance(command, Put):
        return ENTRY_OVERHEAD_BYTES + len(command.key) + len(command.value)
    if isinstance(command, Delete | Get):
        return ENTRY_OVERHEAD_BYTES + len(command.key)
    if isinstance(command, Reconfigure):
        return ENTRY_OVERHEAD_BYTES + sum(len(m) for m in command.members)
    if isinstance(command, AddMember | RemoveMember):
        return ENTRY_OVERHEAD_BYTES + len(command.member)
    return ENTRY_OVERHEAD_BYTES


def entry_size(entry: Entry) -> int:
    return command_size(entry.command)


@fast_init
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot ends and which voters were configured at that point."""

    index: int
    term: int
    members: tuple[str, ...]


# --- Replica-to-replica messages ----------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class VoteRequest:
    """Ask for a vote (or, with `pre_vote`, ask whether a vote would be granted at `term`)."""

    group_id: str
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool


@fast_init
@dataclass(frozen=True, slots=True)
class VoteResponse:
    group_id: str
    term: int
    granted: bool
    pre_vote: bool


@fast_init
@dataclass(frozen=True, slots=True)
class AppendEntries:
    group_id: str
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@fast_init
@dataclass(frozen=True, slots=True)
class AppendResponse:
    """`match_index` on success; on rejection `rejected_index` echoes the probe and
    `hint_index` says where the leader should probe next."""

    group_id: str
    term: int
    success: bool
    match_index: int
    rejected_index: int = 0
    hint_index: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leadership assertion of one numbered round; the rounds drive ReadIndex and the lease.

    `commit` is min(leader commit, what the leader knows this follower holds), so it is safe for
    the follower to adopt without a log check.
    """

    group_id: str
    term: int
    commit: int
    round: int


@fast_init
@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    group_id: str
    term: int
    round: int


@fast_init
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of the leader's snapshot, starting at byte `offset`."""

    group_id: str
    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@fast_init
@dataclass(frozen=True, slots=True)
class SnapshotResponse:
    """`next_offset` is the byte the follower wants next; `done` once it has installed it."""

    group_id: str
    term: int
    snapshot_index: int
    next_offset: int
    done: bool


RaftMessage = (
    VoteRequest
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | SnapshotResponse
)


def answer_to_stale(msg: RaftMessage, term: int) -> RaftMessage | None:
    """The refusal that tells the sender of `msg`, from an older term, about `term`."""
    gid = msg.group_id
    if isinstance(msg, AppendEntries):
        return AppendResponse(gid, term, False, 0, msg.prev_index, 0)
    if isinstance(msg, Heartbeat):
        return HeartbeatResponse(gid, term, msg.round)
    if isinstance(msg, InstallSnapshot):
        return SnapshotResponse(gid, term, msg.meta.index, 0, False)
    if isinstance(msg, VoteRequest):
        return VoteResponse(gid, term, False, msg.pre_vote)
    return None
