"""The durable state of the consistent-group members a node hosts, kept in the node's backend.

Everything lives under one reserved backend partition (never a ring partition: ring sizes stop
at 1024), keyed by group and member:

    raft\\0<group>\\0<member>\\0f              the member's founding voter set (() for a joiner)
    raft\\0<group>\\0<member>\\0h              hard state: term, vote
    raft\\0<group>\\0<member>\\0s              the latest snapshot
    raft\\0<group>\\0<member>\\0e<index:8>     one log entry
    kept\\0<group>\\0<member>                the hard state of a member no longer hosted

A member that is dropped (removed from its group, or holding no log) leaves its hard state behind
under `kept`: a member created again under the same id starts from that term and vote, so it
can never vote twice in one term (see `ensembles`). A restart takes the later of a member's own
hard state and its kept one. Kept records are as many as the member ids a node ever hosted, so
they are bounded like the members themselves (ring partitions x n_vals in use).

A partition rather than the metadata namespace because the log must shrink: entries are deleted
on truncation and after a snapshot, and the backend deletes only partition keys. `Persist`
effects are applied here synchronously, inside the event's backend batch; the host then asks
for a flush, and only its completion tells the replica the write is durable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from sapwood.core.backend import Backend
from sapwood.core.consensus import (
    ABSENT,
    Delete,
    DurableState,
    Entry,
    Get,
    HardState,
    NoOp,
    Persist,
    Put,
    Reconfigure,
    Snapshot,
    SnapshotMeta,
    Version,
)
from sapwood.core.consensus.messages import EntryCommand

# Outside every ring (MAX_RING_SIZE is 1024); not 0xFFFF, whose successor does not fit the
# backends' 2-byte partition prefix.
CONSENSUS_PARTITION = 0xFFFE
KEY_ROOT = b"raft"
KEPT_ROOT = b"kept"
SEP = b"\x00"
FOUNDING = b"f"
HARD_STATE = b"h"
SNAPSHOT = b"s"
ENTRY = b"e"
INDEX_BYTES = 8
# The shared packer of `pack_small` keeps the buffer its largest value grew; one grown past this
# is replaced, so a large value does not pin its size in memory.
MAX_KEPT_PACK_BUFFER_BYTES = 1024 * 1024


class StorageError(ValueError):
    """Stored consensus state that cannot be read back (a bug or a damaged store)."""


def member_prefix(group: str, member: str) -> bytes:
    for name in (group, member):
        if "\x00" in name:
            raise ValueError(f"consistent group or member name {name!r} contains NUL")
    return KEY_ROOT + SEP + group.encode() + SEP + member.encode() + SEP


def kept_key(group: str, member: str) -> bytes:
    return KEPT_ROOT + member_prefix(group, member)[len(KEY_ROOT):-1]


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)


_packer = _new_packer()


def pack_small(value: Any) -> bytes:
    """msgpack bytes of `value`, like packb, by one reused packer instead of one built per call
    (which cost as much as the packing): for the values every write encodes (log entries,
    register values)."""
    global _packer
    packed: bytes = _packer.pack(value)
    if len(packed) > MAX_KEPT_PACK_BUFFER_BYTES:
        _packer = _new_packer()
    return packed


# --- encodings ---------------------------------------------------------------------------------


def _expected_to_wire(expected: Version | str | None) -> Any:
    if isinstance(expected, Version):
        return [expected.term, expected.index]
    return expected


def _expected_from_wire(value: Any) -> Version | str | None:
    if value is None or value == ABSENT:
        return value
    term, index = value
    return Version(int(term), int(index))


def encode_command(command: EntryCommand) -> list[Any]:
    if type(command) is Put:  # nearly every entry
        return ["p", command.key, command.value, _expected_to_wire(command.expected)]
    if isinstance(command, NoOp):
        return ["n"]
    if isinstance(command, Reconfigure):
        return ["r", list(command.members)]
    if isinstance(command, Put):
        return ["p", command.key, command.value, _expected_to_wire(command.expected)]
    if isinstance(command, Delete):
        return ["d", command.key, _expected_to_wire(command.expected)]
    return ["g", command.key]


def decode_command(wire: list[Any]) -> EntryCommand:
    kind = wire[0]
    if kind == "n":
        return NoOp()
    if kind == "r":
        return Reconfigure(tuple(wire[1]))
    if kind == "p":
        expected = _expected_from_wire(wire[3])
        return Put(bytes(wire[1]), bytes(wire[2]), expected)  # type: ignore[arg-type]
    if kind == "d":
        version = _expected_from_wire(wire[2])
        return Delete(bytes(wire[1]), version if isinstance(version, Version) else None)
    if kind == "g":
        return Get(bytes(wire[1]))
    raise StorageError(f"unknown stored command kind {kind!r}")


def encode_entry(entry: Entry) -> bytes:
    return pack_small([entry.term, entry.index, encode_command(entry.command)])


def decode_entry(data: bytes) -> Entry:
    term, index, command = msgpack.unpackb(data, raw=False)
    return Entry(int(term), int(index), decode_command(command))


def encode_snapshot(snapshot: Snapshot) -> bytes:
    meta = snapshot.meta
    return _pack([meta.index, meta.term, list(meta.members), snapshot.data])


def decode_snapshot(data: bytes) -> Snapshot:
    index, term, members, payload = msgpack.unpackb(data, raw=False)
    return Snapshot(SnapshotMeta(int(index), int(term), tuple(members)), bytes(payload))


# --- one member's stored state -----------------------------------------------------------------


class MemberStorage:
    """Applies a member's `Persist` effects to the backend, exactly as MemoryRaftStorage does.

    Stored entries are contiguous, `low`..`high` (empty when high < low), so deleting a range
    needs no scan.
    """

    __slots__ = ("_backend", "_entry_prefix", "_kept_key", "_prefix", "high", "low", "wrote")

    def __init__(self, backend: Backend, group: str, member: str, low: int = 1,
                 high: int = 0, wrote: bool = False) -> None:
        self._backend = backend
        self._prefix = member_prefix(group, member)
        self._entry_prefix = self._prefix + ENTRY
        self._kept_key = kept_key(group, member)
        self.low = low
        self.high = high
        # Whether anything Raft asked for was ever written (a member that wrote nothing never
        # voted or acknowledged anything, so dropping it is harmless).
        self.wrote = wrote

    def _entry_key(self, index: int) -> bytes:
        return self._entry_prefix + index.to_bytes(INDEX_BYTES, "big")

    def _put(self, kind: bytes, value: bytes) -> None:
        self._backend.put(CONSENSUS_PARTITION, self._prefix + kind, value)

    def found(self, peers: tuple[str, ...]) -> None:
        """Record the voter set this member starts from, so a restart starts from it again."""
        self._put(FOUNDING, _pack(list(peers)))

    def apply(self, persist: Persist) -> None:
        """In the order `Persist` prescribes: truncate, append, snapshot, hard state."""
        self.wrote = True
        if persist.truncate_from is not None:
            self._drop_from(persist.truncate_from)
        if persist.entries:
            first = persist.entries[0].index
            if first <= self.high:  # not a plain append: what it replaces goes first
                self._drop_from(first)
            put, prefix = self._backend.put, self._entry_prefix
            for entry in persist.entries:
                put(CONSENSUS_PARTITION, prefix + entry.index.to_bytes(INDEX_BYTES, "big"),
                    encode_entry(entry))
            if self.high < self.low:
                self.low = persist.entries[0].index
            self.high = persist.entries[-1].index
        if persist.snapshot is not None:
            self._put(SNAPSHOT, encode_snapshot(persist.snapshot))
            self._drop_through(persist.snapshot.meta.index)
        if persist.hard_state is not None:
            hard = persist.hard_state
            self._put(HARD_STATE, _pack([hard.term, hard.voted_for]))

    def _drop_from(self, index: int) -> None:
        for i in range(max(index, self.low), self.high + 1):
            self._backend.delete(CONSENSUS_PARTITION, self._entry_key(i))
        self.high = min(self.high, index - 1)

    def _drop_through(self, index: int) -> None:
        for i in range(self.low, min(self.high, index) + 1):
            self._backend.delete(CONSENSUS_PARTITION, self._entry_key(i))
        if self.low <= index:
            self.low = index + 1
            self.high = max(self.high, index)

    @property
    def holds_log(self) -> bool:
        """Whether the member stores log entries or a snapshot. One that does not holds no
        committed entry (those are never truncated, only compacted into a snapshot), so no
        commit ever counted on what it stores: only its hard state (its vote) still matters."""
        return self.high > 0

    def retire(self, hard: HardState) -> None:
        """Forget the member but keep its hard state, for a member created again later."""
        if hard.term > 0 or hard.voted_for is not None:
            self._backend.put(CONSENSUS_PARTITION, self._kept_key,
                              _pack([hard.term, hard.voted_for]))
        self.destroy()

    def destroy(self) -> None:
        """Forget the member entirely (it was removed from its group)."""
        keys = list(self._backend.fold_keys(CONSENSUS_PARTITION, self._prefix,
                                            self._prefix[:-1] + b"\x01"))
        for key in keys:
            self._backend.delete(CONSENSUS_PARTITION, key)
        self.low, self.high, self.wrote = 1, 0, False


@dataclass(frozen=True, slots=True)
class StoredMember:
    """What a restart finds for one member."""

    group: str
    member: str
    peers: tuple[str, ...]
    durable: DurableState
    storage: MemberStorage


def later_hard_state(a: HardState, b: HardState) -> HardState:
    """The later of two hard states of one member: the higher term; in one term, the one that
    voted (a member votes at most once per term, so two votes in one term are the same)."""
    if a.term != b.term:
        return a if a.term > b.term else b
    return a if a.voted_for is not None else b


def load_kept(backend: Backend) -> dict[tuple[str, str], HardState]:
    """The kept hard states of members no longer hosted, by (group, member)."""
    kept: dict[tuple[str, str], HardState] = {}
    start = KEPT_ROOT + SEP
    for key in backend.fold_keys(CONSENSUS_PARTITION, start, KEPT_ROOT + b"\x01"):
        parts = key.split(SEP, 2)
        if len(parts) != 3:
            raise StorageError(f"unexpected key {key!r} in the consensus partition")
        value = backend.get(CONSENSUS_PARTITION, key)
        if value is not None:
            term, voted_for = msgpack.unpackb(value, raw=False)
            kept[(parts[1].decode(), parts[2].decode())] = HardState(int(term), voted_for)
    return kept


def load_members(backend: Backend) -> list[StoredMember]:
    """Every member with stored state, in key order (one scan of the reserved partition), its
    hard state the later of its own and any kept one."""
    kept = load_kept(backend)
    found: dict[tuple[str, str], dict[bytes, Any]] = {}
    for key, value in backend.fold_objects(CONSENSUS_PARTITION, KEY_ROOT + SEP):
        parts = key.split(SEP, 3)
        if len(parts) != 4 or parts[0] != KEY_ROOT or not parts[3]:
            raise StorageError(f"unexpected key {key!r} in the consensus partition")
        record = found.setdefault((parts[1].decode(), parts[2].decode()), {ENTRY: []})
        kind = parts[3][:1]
        if kind == ENTRY:
            record[ENTRY].append(decode_entry(value))
        else:
            record[kind] = value
    return [_stored(backend, group, member, record, kept.get((group, member), HardState()))
            for (group, member), record in found.items()]


def _stored(backend: Backend, group: str, member: str, record: dict[bytes, Any],
            kept: HardState) -> StoredMember:
    founding = record.get(FOUNDING)
    peers = tuple(msgpack.unpackb(founding, raw=False)) if founding is not None else ()
    hard = HardState()
    if HARD_STATE in record:
        term, voted_for = msgpack.unpackb(record[HARD_STATE], raw=False)
        hard = HardState(int(term), voted_for)
    hard = later_hard_state(hard, kept)
    snapshot = decode_snapshot(record[SNAPSHOT]) if SNAPSHOT in record else None
    entries = _contiguous(record[ENTRY])
    low = entries[0].index if entries else (snapshot.meta.index + 1 if snapshot else 1)
    high = entries[-1].index if entries else low - 1
    wrote = bool(entries) or snapshot is not None or HARD_STATE in record
    storage = MemberStorage(backend, group, member, low, high, wrote)
    return StoredMember(group, member, peers, DurableState(hard, snapshot, tuple(entries)), storage)


def _contiguous(entries: Iterable[Entry]) -> list[Entry]:
    """The stored entries in order; they are always written as one contiguous run."""
    ordered = sorted(entries, key=lambda e: e.index)
    for before, after in itertools.pairwise(ordered):
        if after.index != before.index + 1:
            raise StorageError(f"stored log has a gap between {before.index} and {after.index}")
    return ordered
