"""The Backend protocol a vnode stores through. Implementations live in sapwood.storage.

Keys are opaque bytes grouped by partition, so one partition can be folded or dropped cheaply.
Calls are synchronous and fast; `sync` (fsync) is the one slow call and the runtime makes it off
the event loop, batched (group commit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol


class Backend(Protocol):
    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def put(
        self,
        partition: int,
        key: bytes,
        value: bytes,
        add_index: Sequence[bytes] = (),
        remove_index: Sequence[bytes] = (),
    ) -> None:
        """Store the object and change its index entries, atomically."""

    def delete(self, partition: int, key: bytes, remove_index: Sequence[bytes] = ()) -> None: ...

    def fold_keys(self, partition: int, start: bytes, end: bytes | None) -> Iterator[bytes]:
        """Object keys of a partition in [start, end) order; end=None means to the end."""

    def fold_objects(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def index_range(self, partition: int, start: bytes, end: bytes) -> Iterator[bytes]:
        """Index entry keys of a partition in [start, end)."""

    def partitions(self) -> list[int]: ...

    def is_empty(self, partition: int) -> bool: ...

    def drop_partition(self, partition: int) -> None: ...

    def meta_get(self, key: bytes) -> bytes | None: ...

    def meta_put(self, key: bytes, value: bytes) -> None: ...

    def meta_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def batch(self) -> AbstractContextManager[None]:
        """Group the writes made inside into one atomic commit (nested calls join the outer)."""

    def checkpoint(self) -> None:
        """Commit what the open batch wrote so far and make everything durable, now, on the
        calling (event loop) thread; for the rare writes that must be on disk before they are
        acted on."""

    def sync(self) -> None:
        """Make every write so far durable (fsync). May be called from another thread."""

    def close(self) -> None: ...
