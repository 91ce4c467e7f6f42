"""The simulated disk: a memory backend whose fsync covers only the writes made before it
started, and whose crash loses the rest."""

from __future__ import annotations

from contextlib import AbstractContextManager

from sapwood.storage.memory import MemoryBackend, _SortedKeys


class _NoBatch:
    """A memory backend's batch does nothing; this one does it cheaper than `nullcontext`."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_BATCH = _NoBatch()


class SimBackend(MemoryBackend):
    """A memory backend whose fsync covers only the writes made before it started.

    Group commit as a disk does it: a flush started at t0 makes the writes up to t0 durable when
    it completes; writes that arrive while it runs wait for the next one. A crash loses the rest.
    """

    def __init__(self) -> None:
        super().__init__()
        self._base = 0  # the position of the oldest unsynced change in the change history
        # The unsynced changes, oldest first, as (table, key, the value it replaced or None):
        # a tuple each rather than the base class's undo closure (cheaper to make and to keep).
        self._changes: list[tuple[_SortedKeys, bytes, bytes | None]] = []

    def _set(self, table: _SortedKeys, key: bytes, value: bytes) -> None:
        self._changes.append((table, key, table.set(key, value)))

    def _remove(self, table: _SortedKeys, key: bytes) -> None:
        old = table.remove(key)
        if old is not None:
            self._changes.append((table, key, old))

    def mark(self) -> int:
        """The position a flush starting now will make durable up to."""
        return self._base + len(self._changes)

    def sync_through(self, mark: int) -> None:
        count = mark - self._base
        if count > 0:
            del self._changes[:count]
            self._base = mark
            self.syncs += 1

    def sync(self) -> None:
        self._base += len(self._changes)
        self._changes.clear()
        super().sync()

    def crash(self) -> None:
        """Lose every change not yet synced, newest first."""
        changes = self._changes
        self._base += len(changes)  # marks taken before the crash must never match again
        while changes:
            table, key, old = changes.pop()
            if old is None:
                table.remove(key)
            else:
                table.set(key, old)
        super().crash()

    def batch(self) -> AbstractContextManager[None]:
        return _NO_BATCH  # one shared do-nothing context: the cores enter one on every event
