"""Both backends honour the same contract: partitions, ranges, index entries, batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sapwood.storage.lmdb import DataDirInUse, LmdbBackend
from sapwood.storage.memory import MemoryBackend


@pytest.fixture(params=["memory", "lmdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryBackend | LmdbBackend]:
    store = MemoryBackend() if request.param == "memory" else LmdbBackend(tmp_path / "db")
    yield store
    store.close()


def test_objects_are_kept_per_partition(backend: MemoryBackend | LmdbBackend) -> None:
    backend.put(1, b"a", b"v1")
    backend.put(2, b"a", b"v2")
    assert backend.get(1, b"a") == b"v1" and backend.get(2, b"a") == b"v2"
    assert backend.get(3, b"a") is None
    assert backend.partitions() == [1, 2]
    backend.delete(1, b"a")
    assert backend.get(1, b"a") is None and backend.is_empty(1) and not backend.is_empty(2)


def test_folds_are_ordered_ranges(backend: MemoryBackend | LmdbBackend) -> None:
    for key in (b"c", b"a", b"b", b"d"):
        backend.put(5, key, key.upper())
    backend.put(6, b"a", b"other partition")
    assert list(backend.fold_keys(5, b"b", b"d")) == [b"b", b"c"]
    assert list(backend.fold_keys(5, b"", None)) == [b"a", b"b", b"c", b"d"]
    assert list(backend.fold_objects(5, b"c")) == [(b"c", b"C"), (b"d", b"D")]


def test_index_entries_change_with_the_object(backend: MemoryBackend | LmdbBackend) -> None:
    backend.put(0, b"k", b"v", add_index=[b"i1", b"i2"])
    assert list(backend.index_range(0, b"i", b"j")) == [b"i1", b"i2"]
    backend.put(0, b"k", b"v2", add_index=[b"i3"], remove_index=[b"i1"])
    assert list(backend.index_range(0, b"i", b"j")) == [b"i2", b"i3"]
    backend.delete(0, b"k", remove_index=[b"i2", b"i3"])
    assert list(backend.index_range(0, b"i", b"j")) == []


def test_drop_partition_removes_objects_and_index(backend: MemoryBackend | LmdbBackend) -> None:
    backend.put(3, b"k", b"v", add_index=[b"i"])
    backend.put(4, b"k", b"v", add_index=[b"i"])
    backend.drop_partition(3)
    assert backend.is_empty(3) and list(backend.index_range(3, b"", b"\xff")) == []
    assert backend.get(4, b"k") == b"v"


def test_batch_reads_its_own_writes_and_commits_once(backend: MemoryBackend | LmdbBackend) -> None:
    with backend.batch():
        backend.put(1, b"k", b"v")
        assert backend.get(1, b"k") == b"v"
        with backend.batch():
            backend.put(1, b"k2", b"v2")
    assert backend.get(1, b"k2") == b"v2"


def test_batch_reads_see_writes_made_before_and_within_it(
        backend: MemoryBackend | LmdbBackend) -> None:
    backend.put(1, b"a", b"old")
    with backend.batch():
        assert backend.get(1, b"a") == b"old" and backend.get(1, b"b") is None
        backend.put(1, b"a", b"new")  # after the batch's first reads
        assert backend.get(1, b"a") == b"new"
        backend.checkpoint()
        assert backend.get(1, b"a") == b"new"
        backend.put(1, b"b", b"b1")
        assert backend.get(1, b"b") == b"b1"
    with backend.batch():
        assert backend.get(1, b"a") == b"new"  # a read-only batch
    backend.put(1, b"a", b"newest")  # outside any batch: the last batch's snapshot is gone
    assert backend.get(1, b"a") == b"newest"


def test_lmdb_batch_that_fails_writes_nothing(tmp_path: Path) -> None:
    store = LmdbBackend(tmp_path / "db")
    with pytest.raises(RuntimeError), store.batch():
        store.put(1, b"k", b"v")
        raise RuntimeError("boom")
    assert store.get(1, b"k") is None
    store.close()


def test_meta_items_by_prefix(backend: MemoryBackend | LmdbBackend) -> None:
    backend.meta_put(b"type/a", b"1")
    backend.meta_put(b"type/b", b"2")
    backend.meta_put(b"other", b"3")
    assert list(backend.meta_items(b"type/")) == [(b"type/a", b"1"), (b"type/b", b"2")]
    assert backend.meta_get(b"other") == b"3"


def test_memory_crash_loses_only_unsynced_writes() -> None:
    store = MemoryBackend()
    store.put(1, b"synced", b"v")
    store.sync()
    store.put(1, b"synced", b"changed")
    store.put(1, b"lost", b"v")
    store.crash()
    assert store.get(1, b"synced") == b"v" and store.get(1, b"lost") is None


def test_lmdb_survives_reopen_and_locks_its_directory(tmp_path: Path) -> None:
    store = LmdbBackend(tmp_path / "db")
    store.put(7, b"k", b"v")
    with pytest.raises(DataDirInUse):
        LmdbBackend(tmp_path / "db")
    store.close()
    again = LmdbBackend(tmp_path / "db")
    assert again.get(7, b"k") == b"v"
    again.close()
