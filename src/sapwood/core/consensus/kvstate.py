"""The replicated state of a group: key -> (version, value) registers with compare-and-set.

Every replica applies the same committed commands in the same order, so `apply` must be a
deterministic function of the state and the command (including the size limit check).

Deleting removes the key outright: no tombstones, so a read of a never-written key leaves no
trace. Versions are the (term, index) of the write, unique for the group's lifetime, so a key
deleted and written again never reuses an old version (no ABA).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgpack

from sapwood.core.consensus.messages import ABSENT, Delete, Get, Put, Version
from sapwood.core.consensus.results import Absent, Ok, Precondition, TooLarge

# Fixed per-key overhead counted against the state's byte limit.
KEY_OVERHEAD_BYTES = 32

KvResult = Ok | Absent | Precondition | TooLarge


class SnapshotDecodeError(ValueError):
    """Snapshot bytes that are not a key/value state."""


def _footprint(key: bytes, value: bytes) -> int:
    return KEY_OVERHEAD_BYTES + len(key) + len(value)


class KvState:
    """The register map; `max_bytes` bounds its total footprint (and so any snapshot of it)."""

    __slots__ = ("_bytes", "_data", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._data: dict[bytes, tuple[Version, bytes]] = {}
        self._bytes = 0
        self._max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def items(self) -> Iterator[tuple[bytes, Version, bytes]]:
        for key, (version, value) in self._data.items():
            yield key, version, value

    def get(self, key: bytes) -> Ok | Absent:
        found = self._data.get(key)
        if found is None:
            return Absent(key)
        return Ok(found[0], found[1])

    def apply(self, command: Put | Delete | Get, version: Version) -> KvResult:
        """Apply a committed command written at `version`; the result goes to its client."""
        if isinstance(command, Put):
            return self._put(command, version)
        if isinstance(command, Delete):
            return self._delete(command, version)
        return self.get(command.key)

    def _put(self, command: Put, version: Version) -> KvResult:
        current = self._data.get(command.key)
        refusal = _put_refusal(command, current)
        if refusal is not None:
            return Precondition(refusal)
        old = _footprint(command.key, current[1]) if current else 0
        new_total = self._bytes - old + _footprint(command.key, command.value)
        if new_total > self._max_bytes:
            return TooLarge(
                f"the group's state would grow to {new_total} bytes "
                f"(limit max_group_bytes={self._max_bytes})"
            )
        self._data[command.key] = (version, command.value)
        self._bytes = new_total
        return Ok(version, command.value)

    def _delete(self, command: Delete, version: Version) -> KvResult:
        current = self._data.get(command.key)
        if command.expected is not None and (current is None or current[0] != command.expected):
            found = "absent" if current is None else f"at version {_show(current[0])}"
            return Precondition(
                f"compare-and-delete expected version {_show(command.expected)} but the key is "
                f"{found}"
            )
        if current is None:
            return Absent(command.key)
        del self._data[command.key]
        self._bytes -= _footprint(command.key, current[1])
        return Ok(version, None)

    def encode(self) -> bytes:
        """Deterministic snapshot bytes (sorted by key)."""
        rows = [
            [key, version.term, version.index, value]
            for key, (version, value) in sorted(self._data.items())
        ]
        packed: bytes = msgpack.packb(rows, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, data: bytes, max_bytes: int) -> KvState:
        try:
            rows = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            raise SnapshotDecodeError(f"bad snapshot bytes: {exc}") from exc
        state = cls(max_bytes)
        if not isinstance(rows, list):
            raise SnapshotDecodeError("bad snapshot bytes: not a list of rows")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 4):
                raise SnapshotDecodeError("bad snapshot bytes: a row is not [key, term, index, value]")
            key, term, index, value = row
            state._data[bytes(key)] = (Version(int(term), int(index)), bytes(value))
            state._bytes += _footprint(key, value)
        return state


def _put_refusal(command: Put, current: tuple[Version, bytes] | None) -> str | None:
    """Why a put's precondition fails, or None when it holds."""
    expected = command.expected
    if expected is None or (type(expected) is not Version and expected == ABSENT):
        if current is None:
            return None
        return (
            f"the key exists at version {_show(current[0])}; a write without a version "
            "requires the key to be absent"
        )
    if current is None:
        return f"expected version {_show(expected)} but the key is absent"
    if current[0] != expected:
        return f"expected version {_show(expected)} but the key is at {_show(current[0])}"
    return None


def _show(version: Version | str) -> str:
    if isinstance(version, Version):
        return f"{version.term}.{version.index}"
    return version
