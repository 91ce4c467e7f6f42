"""Which replicas vote, as of each log index.

A configuration takes effect as soon as its entry is appended (Raft thesis, 4.1), so the
current configuration is the latest one in the log, committed or not, and truncating the log can
bring an older one back.
"""

from __future__ import annotations


def majority(voters: int) -> int:
    return voters // 2 + 1


def quorum_value(values: list[int], voters: int) -> int:
    """The largest v such that a majority of `voters` reported at least v (missing count as 0)."""
    need = majority(voters)
    if len(values) < need:
        return 0
    return sorted(values, reverse=True)[need - 1]


class MembershipHistory:
    """The voter set in force at the snapshot point, plus every change recorded in the log."""

    __slots__ = ("_base", "_changes")

    def __init__(self, base: tuple[str, ...]) -> None:
        self._base = tuple(sorted(base))
        self._changes: list[tuple[int, tuple[str, ...]]] = []

    @property
    def current(self) -> tuple[str, ...]:
        return self._changes[-1][1] if self._changes else self._base

    @property
    def latest_change_index(self) -> int:
        """Index of the newest change entry still in the log (0 if none)."""
        return self._changes[-1][0] if self._changes else 0

    def at(self, index: int) -> tuple[str, ...]:
        members = self._base
        for change_index, change in self._changes:
            if change_index > index:
                break
            members = change
        return members

    def record(self, index: int, members: tuple[str, ...]) -> None:
        self._changes.append((index, tuple(sorted(members))))

    def truncate_from(self, index: int) -> bool:
        """Forget changes at `index` and after; True when the current set changed."""
        before = self.current
        self._changes = [c for c in self._changes if c[0] < index]
        return before != self.current

    def compact_to(self, index: int) -> None:
        """Fold changes up to `index` into the base (the log before it is now a snapshot)."""
        self._base = self.at(index)
        self._changes = [c for c in self._changes if c[0] > index]

    def reset(self, base: tuple[str, ...]) -> None:
        self._base = tuple(sorted(base))
        self._changes = []
