"""The in-memory Raft log: entries after the latest snapshot, indexed from 1."""

from __future__ import annotations

from collections.abc import Iterable

from sapwood.core.consensus.messages import Entry, entry_size


class RaftLog:
    """Entries `snapshot_index + 1 .. last_index`; everything up to `snapshot_index` is compacted
    into a snapshot whose last entry had `snapshot_term`."""

    __slots__ = ("_entries", "_snapshot_index", "_snapshot_term")

    def __init__(
        self, snapshot_index: int = 0, snapshot_term: int = 0, entries: Iterable[Entry] = ()
    ) -> None:
        self._snapshot_index = snapshot_index
        self._snapshot_term = snapshot_term
        self._entries: list[Entry] = []
        for entry in entries:
            if entry.index > snapshot_index:
                self.append(entry)

    @property
    def snapshot_index(self) -> int:
        return self._snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self._snapshot_term

    @property
    def first_index(self) -> int:
        """The first index still held as an entry."""
        return self._snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`; None when compacted away or beyond the end."""
        if index == self._snapshot_index:
            return self._snapshot_term
        if index < self._snapshot_index or index > self.last_index:
            return None
        return self._entries[index - self._snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        if not self._snapshot_index < index <= self.last_index:
            raise IndexError(
                f"log index {index} outside {self.first_index}..{self.last_index}"
            )
        return self._entries[index - self._snapshot_index - 1]

    def entries_from(self, start: int, max_count: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries from `start` on, at most `max_count` and `max_bytes` (but at least one)."""
        offset = start - self._snapshot_index - 1
        if offset < 0:
            raise IndexError(f"log index {start} is compacted (snapshot at {self.snapshot_index})")
        chosen: list[Entry] = []
        total = 0
        for entry in self._entries[offset : offset + max_count]:
            total += entry_size(entry)
            if chosen and total > max_bytes:
                break
            chosen.append(entry)
        return tuple(chosen)

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"appending index {entry.index} after {self.last_index}")
        self._entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop the entries at `index` and after."""
        if index <= self._snapshot_index:
            raise ValueError(f"cannot truncate at {index}: compacted up to {self._snapshot_index}")
        del self._entries[index - self._snapshot_index - 1 :]

    def compact_to(self, index: int, term: int) -> None:
        """Forget entries up to `index` (now covered by a snapshot ending there in `term`)."""
        if index <= self._snapshot_index:
            return
        del self._entries[: index - self._snapshot_index]
        self._snapshot_index = index
        self._snapshot_term = term

    def reset(self, index: int, term: int) -> None:
        """Drop every entry: the log now starts after a snapshot ending at (`index`, `term`)."""
        self._entries.clear()
        self._snapshot_index = index
        self._snapshot_term = term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as this."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def rejection_hint(self, prev_index: int, floor: int) -> int:
        """Where a leader should probe after (`prev_index`, term) did not match here.

        Behind: our last index. Conflicting: just before the first entry of the conflicting
        term, so a divergent tail is skipped a term at a time, never below `floor` (the commit).
        """
        if prev_index > self.last_index:
            return self.last_index
        conflict_term = self.term_at(prev_index)
        hint = prev_index - 1
        while hint > floor and self.term_at(hint) == conflict_term:
            hint -= 1
        return max(hint, floor)
