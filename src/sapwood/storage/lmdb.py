"""The durable default backend: one LMDB environment per node.

Three named databases: objects and index entries, both keyed by a 2-byte partition prefix (so a
partition is one contiguous range to fold or drop), and node metadata. Every put commits its own
write transaction without fsync: once a put returns, the write survives the process being killed
(the pages are in the OS page cache). `sync()` fsyncs, and the node calls it in batches before it
acknowledges durable (`dw`) writes; that is what survives losing the machine.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import lmdb

from sapwood.core.ring import MAX_RING_SIZE

DEFAULT_MAP_SIZE = 64 * 1024**3
MAX_DBS = 8
LOCK_FILE = "sapwood.lock"


class _Batch:
    """The context of LmdbBackend.batch (a class: it runs on every event, twice)."""

    __slots__ = ("backend", "outer")

    def __init__(self, backend: LmdbBackend) -> None:
        self.backend = backend
        self.outer = False

    def __enter__(self) -> None:
        self.outer = not self.backend._batching
        self.backend._batching = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.outer:
            return
        backend = self.backend
        backend._end_reads()
        txn, backend._txn, backend._batching = backend._txn, None, False
        if txn is not None:
            if exc_type is None:
                txn.commit()
            else:
                txn.abort()


def _pkey(partition: int, key: bytes) -> bytes:
    if partition < len(_PREFIXES):
        return _PREFIXES[partition] + key
    return partition.to_bytes(2, "big") + key


# Every read and write prefixes its key with its partition: build the prefixes once (one more
# than the largest ring, for the end of a fold's range).
_PREFIXES = tuple(p.to_bytes(2, "big") for p in range(MAX_RING_SIZE + 1))


class DataDirInUse(RuntimeError):
    """Another process (or store in this process) has the data directory open."""


def _lock_data_dir(path: Path) -> int:
    """One process at a time per data directory: two would mint dots under one actor."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(
            f"data directory {path} is in use by another Sapwood process or store (pid {holder})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class LmdbBackend:
    def __init__(self, path: str | Path, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._lock_fd = _lock_data_dir(self.path)
        self.env = lmdb.open(
            str(path), map_size=map_size, max_dbs=MAX_DBS, sync=False, metasync=False,
            readahead=False, writemap=False, max_readers=256,
        )
        self._txn: Any = None  # the write transaction of an open batch, once it has written
        # The read transaction of an open batch that has read but not written: a GET's N
        # replica reads share one snapshot instead of opening a transaction each.
        self._reader: Any = None
        self._batching = False
        self._objects = self.env.open_db(b"objects")
        self._index = self.env.open_db(b"index")
        self._meta = self.env.open_db(b"meta")

    def batch(self) -> AbstractContextManager[None]:
        """One write transaction for every write inside: one commit instead of one per write.

        The transaction opens at the first write, so a batch that only reads costs nothing.
        """
        return _Batch(self)

    @contextmanager
    def _write(self) -> Iterator[Any]:
        txn = self._batch_writer()
        if txn is not None:
            yield txn
        else:
            with self.env.begin(write=True) as txn:
                yield txn

    def _batch_writer(self) -> Any:
        """The open batch's write transaction (opened now if need be); None outside a batch."""
        if self._txn is None and self._batching:
            self._end_reads()  # its snapshot would miss this batch's writes
            self._txn = self.env.begin(write=True)
        return self._txn

    def _end_reads(self) -> None:
        if self._reader is not None:
            self._reader.abort()
            self._reader = None

    def get(self, partition: int, key: bytes) -> bytes | None:
        txn = self._txn or self._reader
        if txn is None:
            if self._batching:
                txn = self._reader = self.env.begin(db=self._objects)
            else:
                with self.env.begin(db=self._objects) as txn:
                    return txn.get(_pkey(partition, key))
        elif txn is self._txn:
            return txn.get(_pkey(partition, key), db=self._objects)
        return txn.get(_pkey(partition, key))

    def put(
        self,
        partition: int,
        key: bytes,
        value: bytes,
        add_index: Sequence[bytes] = (),
        remove_index: Sequence[bytes] = (),
    ) -> None:
        # Written out rather than through `_write`: a generator context manager per put costs
        # more than the LMDB put itself.
        txn = self._txn or self._batch_writer()
        if txn is None:
            with self.env.begin(write=True) as txn:
                self._put(txn, partition, key, value, add_index, remove_index)
        else:
            self._put(txn, partition, key, value, add_index, remove_index)

    def _put(self, txn: Any, partition: int, key: bytes, value: bytes,
             add_index: Sequence[bytes], remove_index: Sequence[bytes]) -> None:
        txn.put(_pkey(partition, key), value, db=self._objects)
        for entry in remove_index:
            txn.delete(_pkey(partition, entry), db=self._index)
        for entry in add_index:
            txn.put(_pkey(partition, entry), b"", db=self._index)

    def delete(self, partition: int, key: bytes, remove_index: Sequence[bytes] = ()) -> None:
        with self._write() as txn:
            txn.delete(_pkey(partition, key), db=self._objects)
            for entry in remove_index:
                txn.delete(_pkey(partition, entry), db=self._index)

    def _scan(self, db: Any, partition: int, start: bytes, end: bytes | None,
              values: bool) -> Iterator[tuple[bytes, bytes]]:
        low = _pkey(partition, start)
        high = _pkey(partition, end) if end is not None else _pkey(partition + 1, b"")
        with self._read(db) as txn:
            cursor = txn.cursor(db=db)
            if not cursor.set_range(low):
                return
            for k, v in cursor:
                if k >= high:
                    break
                yield bytes(k[2:]), (bytes(v) if values else b"")

    def fold_keys(self, partition: int, start: bytes, end: bytes | None) -> Iterator[bytes]:
        for k, _ in self._scan(self._objects, partition, start, end, values=False):
            yield k

    def fold_objects(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._scan(self._objects, partition, start, None, values=True)

    def index_range(self, partition: int, start: bytes, end: bytes) -> Iterator[bytes]:
        for k, _ in self._scan(self._index, partition, start, end, values=False):
            yield k

    @contextmanager
    def _read(self, db: Any) -> Iterator[Any]:
        if self._txn is not None:
            yield self._txn  # inside a batch, reads must see its uncommitted writes
        else:
            with self.env.begin(db=db) as txn:
                yield txn

    def partitions(self) -> list[int]:
        found: list[int] = []
        with self.env.begin(db=self._objects) as txn:
            cursor = txn.cursor()
            probe = 0
            while cursor.set_range(probe.to_bytes(2, "big")):
                found.append(int.from_bytes(cursor.key()[:2], "big"))
                probe = found[-1] + 1
                if probe >= 1 << 16:
                    break
        return found

    def is_empty(self, partition: int) -> bool:
        return next(self.fold_keys(partition, b"", None), None) is None

    def drop_partition(self, partition: int) -> None:
        for db in (self._objects, self._index):
            with self._write() as txn:
                cursor = txn.cursor(db=db)
                low, high = _pkey(partition, b""), _pkey(partition + 1, b"")
                if cursor.set_range(low):
                    while cursor.key() and cursor.key() < high:
                        if not cursor.delete():
                            break

    def meta_get(self, key: bytes) -> bytes | None:
        with self._read(self._meta) as txn:
            value = txn.get(key, db=self._meta)
        return None if value is None else bytes(value)

    def meta_put(self, key: bytes, value: bytes) -> None:
        with self._write() as txn:
            txn.put(key, value, db=self._meta)

    def meta_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self.env.begin(db=self._meta) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return iter([])
            items = []
            for k, v in cursor:
                if not bytes(k).startswith(prefix):
                    break
                items.append((bytes(k), bytes(v)))
        return iter(items)

    def checkpoint(self) -> None:
        self._end_reads()
        if self._txn is not None:
            self._txn.commit()
            self._txn = None  # the batch goes on; its next write opens a new transaction
        self.env.sync(True)

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
