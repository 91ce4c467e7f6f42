"""Consistent bucket types in the embedded store: the same semantics as a server, no waiting
(the embedded driver runs the group's elections on its own clock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sapwood
from sapwood import BadRequest, PreconditionFailed, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with sapwood.open(tmp_path / "db", ring_size=8) as opened:
        make_types(opened)
        yield opened


def make_types(store: Store) -> None:
    consistent = store.bucket_type("sc")
    consistent.create({"consistent": True})
    consistent.activate()
    available = store.bucket_type("av")
    available.create({})
    available.activate()


def test_create_compare_and_set_and_stale_writes(store: Store) -> None:
    bucket = store.bucket_type("sc").bucket("b")
    created = bucket.new("k", {"n": 1}).store()
    assert created.context is not None
    with pytest.raises(PreconditionFailed):
        bucket.new("k", {"n": 99}).store()

    current = bucket.get("k")
    assert current.data == {"n": 1} and not current.has_siblings
    current.data = {"n": 2}
    current.store()
    created.data = {"n": 3}
    with pytest.raises(PreconditionFailed):
        created.store()  # its context is stale now
    assert bucket.get("k").data == {"n": 2}


def test_compare_and_delete_and_unconditional_delete(store: Store) -> None:
    bucket = store.bucket_type("sc").bucket("b")
    stale = bucket.new("k", b"v1").store()
    fresh = bucket.get("k")
    fresh.value = b"v2"
    fresh.store()
    with pytest.raises(PreconditionFailed):
        bucket.delete(stale)
    assert bucket.delete(fresh) is True
    assert bucket.get("k").exists is False
    assert bucket.delete("k") is False
    bucket.new("k", b"v3").store()
    assert bucket.delete("k") is True


def test_refusals_are_bad_requests(store: Store) -> None:
    bucket = store.bucket_type("sc").bucket("b")
    with pytest.raises(BadRequest, match="secondary indexes"):
        bucket.new("k", b"v", indexes=[("f_bin", "x")]).store()
    with pytest.raises(BadRequest, match="not supported"):
        bucket.keys()
    with pytest.raises(BadRequest):
        store.bucket_type("bad").create({"consistent": True, "datatype": "map"})
    other = store.bucket_type("av").bucket("b").new("k", b"x").store()
    mixed = bucket.new("k", b"v")
    mixed.context = other.context
    with pytest.raises(BadRequest, match="eventually consistent"):
        mixed.store()


def test_writes_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sapwood.open(path, ring_size=8) as first:
        make_types(first)
        bucket = first.bucket_type("sc").bucket("b")
        contexts = {f"k{i}": bucket.new(f"k{i}", f"v{i}").store().context for i in range(20)}
    with sapwood.open(path) as second:
        bucket = second.bucket_type("sc").bucket("b")
        for key, context in contexts.items():
            obj = bucket.get(key)
            assert obj.data == f"v{key[1:]}" and obj.context == context
        obj = bucket.get("k0")
        obj.data = "changed"
        obj.store()
        assert bucket.get("k0").data == "changed"
        ensembles = second.stats()["ensembles"]
        assert ensembles["elections"] >= 1 and ensembles["commits"] >= 1
