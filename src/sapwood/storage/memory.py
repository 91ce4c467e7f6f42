"""An in-memory backend for tests and the simulator.

It can forget what was never synced: `crash()` undoes every change since the last `sync()`, the
way a machine that loses power loses writes still in the page cache.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext


class _SortedKeys:
    """A sorted dict of bytes keys; range scans by bisect."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []

    def set(self, key: bytes, value: bytes) -> bytes | None:
        old = self.data.get(key)
        if old is None:
            bisect.insort(self.keys, key)
        self.data[key] = value
        return old

    def remove(self, key: bytes) -> bytes | None:
        old = self.data.pop(key, None)
        if old is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]
        return old

    def range(self, start: bytes, end: bytes | None) -> list[bytes]:
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end is None else bisect.bisect_left(self.keys, end)
        return self.keys[lo:hi]


class MemoryBackend:
    def __init__(self) -> None:
        self._objects: dict[int, _SortedKeys] = {}
        self._index: dict[int, _SortedKeys] = {}
        self._meta = _SortedKeys()
        self._undo: list[Callable[[], object]] = []
        self.syncs = 0

    def _table(self, tables: dict[int, _SortedKeys], partition: int) -> _SortedKeys:
        table = tables.get(partition)
        if table is None:
            table = tables[partition] = _SortedKeys()
        return table

    def _set(self, table: _SortedKeys, key: bytes, value: bytes) -> None:
        old = table.set(key, value)
        self._undo.append(lambda: table.remove(key) if old is None else table.set(key, old))

    def _remove(self, table: _SortedKeys, key: bytes) -> None:
        old = table.remove(key)
        if old is not None:
            self._undo.append(lambda: table.set(key, old))

    def get(self, partition: int, key: bytes) -> bytes | None:
        table = self._objects.get(partition)
        return None if table is None else table.data.get(key)

    def put(
        self,
        partition: int,
        key: bytes,
        value: bytes,
        add_index: Sequence[bytes] = (),
        remove_index: Sequence[bytes] = (),
    ) -> None:
        self._set(self._table(self._objects, partition), key, value)
        index = self._table(self._index, partition)
        for entry in remove_index:
            self._remove(index, entry)
        for entry in add_index:
            self._set(index, entry, b"")

    def delete(self, partition: int, key: bytes, remove_index: Sequence[bytes] = ()) -> None:
        self._remove(self._table(self._objects, partition), key)
        index = self._table(self._index, partition)
        for entry in remove_index:
            self._remove(index, entry)

    def fold_keys(self, partition: int, start: bytes, end: bytes | None) -> Iterator[bytes]:
        table = self._objects.get(partition)
        return iter(table.range(start, end) if table else [])

    def fold_objects(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        table = self._objects.get(partition)
        if table is None:
            return iter([])
        return iter([(k, table.data[k]) for k in table.range(start, None)])

    def index_range(self, partition: int, start: bytes, end: bytes) -> Iterator[bytes]:
        table = self._index.get(partition)
        return iter(table.range(start, end) if table else [])

    def partitions(self) -> list[int]:
        return sorted(p for p, t in self._objects.items() if t.data)

    def is_empty(self, partition: int) -> bool:
        table = self._objects.get(partition)
        return table is None or not table.data

    def drop_partition(self, partition: int) -> None:
        for tables in (self._objects, self._index):
            table = tables.get(partition)
            if table is not None:
                for key in list(table.keys):
                    self._remove(table, key)

    def meta_get(self, key: bytes) -> bytes | None:
        return self._meta.data.get(key)

    def meta_put(self, key: bytes, value: bytes) -> None:
        self._set(self._meta, key, value)

    def meta_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, self._meta.data[k]) for k in self._meta.range(prefix, prefix + b"\xff")])

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()

    def checkpoint(self) -> None:
        self.sync()

    def sync(self) -> None:
        self._undo.clear()
        self.syncs += 1

    def crash(self) -> None:
        """Lose every change not yet synced."""
        while self._undo:
            self._undo.pop()()

    def close(self) -> None:
        pass
