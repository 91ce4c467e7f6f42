"""The embedded API: `sapwood.open()` with buckets, types, siblings, 2i, props and persistence."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sapwood
from sapwood import (
    BadRequest,
    ClosedError,
    Conflict,
    NotFound,
    Sibling,
    SiblingsError,
    Store,
    last_write_wins,
)
from sapwood.core.limits import MAX_SIBLINGS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with sapwood.open(tmp_path / "db", sync="commit") as opened:
        yield opened


def make_type(store: Store, name: str = "multi", **props: object) -> sapwood.BucketType:
    bucket_type = store.bucket_type(name)
    bucket_type.create(props)
    bucket_type.activate()
    return bucket_type


# --- values ----------------------------------------------------------------------------------


def test_bytes_str_and_json_values_round_trip_with_their_content_types(store: Store) -> None:
    bucket = store.bucket("b")
    bucket.new("raw", b"\x00\xffbytes").store()
    bucket.new("text", "héllo").store()
    bucket.new("doc", {"a": [1, 2], "b": None}).store()

    raw, text, doc = bucket.get("raw"), bucket.get("text"), bucket.get("doc")
    assert (raw.data, raw.content_type) == (b"\x00\xffbytes", "application/octet-stream")
    assert (text.data, text.content_type, text.charset) == ("héllo", "text/plain", "utf-8")
    assert text.value == "héllo".encode()
    assert (doc.data, doc.content_type) == ({"a": [1, 2], "b": None}, "application/json")
    assert json.loads(doc.value or b"") == {"a": [1, 2], "b": None}


def test_an_explicit_content_type_and_encoded_data_are_kept(store: Store) -> None:
    bucket = store.bucket("b")
    bucket.new("j", "a string as JSON", content_type="application/json").store()
    bucket.new("x", encoded_data=b"<x/>", content_type="application/xml").store()
    assert bucket.get("j").value == b'"a string as JSON"'
    assert bucket.get("j").data == "a string as JSON"
    fetched = bucket.get("x")
    assert (fetched.data, fetched.content_type) == (b"<x/>", "application/xml")


def test_metadata_round_trips(store: Store) -> None:
    bucket = store.bucket("b")
    obj = bucket.new("k", "v", usermeta={"Colour": "green"}, links=[("b", "other", "friend")],
                     content_encoding="identity")
    obj.add_index("Age_INT", 42).add_index("name_bin", "ann")
    obj.store()

    fetched = bucket.get("k")
    assert fetched.exists
    assert fetched.usermeta == {"Colour": "green"}
    assert fetched.indexes == {("age_int", 42), ("name_bin", "ann")}
    assert fetched.links == [("b", "other", "friend")]
    assert fetched.content_encoding == "identity"
    assert fetched.last_modified is not None and fetched.vtag
    assert fetched.context == obj.context


def test_store_refreshes_the_object_so_a_second_store_does_not_make_siblings(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    obj = bucket.new("k", 1)
    obj.store()
    obj.data = 2
    obj.store()
    fetched = bucket.get("k")
    assert len(fetched.siblings) == 1 and fetched.data == 2


def test_missing_key_gives_an_object_that_does_not_exist(store: Store) -> None:
    obj = store.bucket("b").get("nope")
    assert not obj.exists
    assert obj.data is None and obj.value is None and obj.context is None
    obj.data = {"now": "here"}
    obj.store()
    assert store.bucket("b").get("nope").data == {"now": "here"}


def test_a_generated_key_is_assigned_on_store(store: Store) -> None:
    bucket = store.bucket("b")
    obj = bucket.new(data="v").store()
    assert obj.key and bucket.get(obj.key).data == "v"


def test_reload_and_object_delete(store: Store) -> None:
    bucket = store.bucket("b")
    obj = bucket.new("k", "one").store()
    bucket.new("k", "two").store()
    assert obj.reload().data == "two"
    assert obj.delete() is True
    assert not obj.exists and not bucket.get("k").exists


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
), raw=st.binary(max_size=64))
def test_any_json_value_and_any_bytes_round_trip(store: Store, data: object, raw: bytes) -> None:
    bucket = store.bucket("prop")
    bucket.new("json", data, content_type="application/json").store()
    bucket.new("raw", raw).store()
    assert bucket.get("json").data == data
    assert bucket.get("raw").value == raw


# --- siblings --------------------------------------------------------------------------------


def _five_stale_writes(bucket: sapwood.Bucket) -> None:
    bucket.new("k", "original").store()
    context = bucket.get("k").context
    for i in range(5):
        stale = bucket.new("k", f"writer {i}")
        stale.context = context  # every writer read the same, soon stale, version
        stale.store(return_body=False)


def test_five_stale_context_writes_leave_five_siblings_resolved_to_one(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    _five_stale_writes(bucket)

    fetched = bucket.get("k")
    assert sorted(s.data for s in fetched.siblings) == [f"writer {i}" for i in range(5)]
    with pytest.raises(SiblingsError) as raised:
        _ = fetched.data
    assert len(raised.value.siblings) == 5 and "5 siblings" in str(raised.value)

    bucket.resolver = last_write_wins
    assert fetched.data == "writer 4"
    fetched.store()
    final = bucket.get("k")
    assert len(final.siblings) == 1 and final.data == "writer 4"


def test_a_merging_resolver_writes_back_the_merge(store: Store) -> None:
    bucket = make_type(store).bucket("cart")
    base = bucket.new("k", ["milk"]).store()
    for item in ("eggs", "bread"):
        writer = bucket.new("k", ["milk", item])
        writer.context = base.context
        writer.store()

    def union(siblings: Sequence[Sibling]) -> Sibling:
        merged = siblings[0].copy()
        merged.data = sorted({item for s in siblings for item in s.data})
        return merged

    fetched = bucket.get("k")
    fetched.resolve(union)
    fetched.store()
    assert bucket.get("k").data == ["bread", "eggs", "milk"]


def test_the_store_resolver_applies_to_every_bucket(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    _five_stale_writes(bucket)
    store.resolver = last_write_wins
    assert store.bucket("b", type="multi").get("k").data == "writer 4"


def test_a_bucket_without_allow_mult_shows_one_value(store: Store) -> None:
    bucket = store.bucket("b")
    _five_stale_writes(bucket)
    fetched = bucket.get("k")
    assert len(fetched.siblings) == 1 and fetched.data == "writer 4"


def test_changing_a_value_with_unresolved_siblings_raises(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    _five_stale_writes(bucket)
    fetched = bucket.get("k")
    with pytest.raises(SiblingsError):
        fetched.data = "mine"
    fetched.siblings = [Sibling(b"mine", "text/plain")]
    fetched.store()
    assert bucket.get("k").data == "mine"


def test_too_many_siblings_is_a_conflict_and_keeps_the_existing_ones(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    for i in range(MAX_SIBLINGS):
        bucket.new("k", str(i)).store(return_body=False)
    with pytest.raises(Conflict, match="siblings"):
        bucket.new("k", "one too many").store()
    assert len(bucket.get("k").siblings) == MAX_SIBLINGS


# --- delete and tombstones ---------------------------------------------------------------------


def test_delete_reports_whether_there_was_something_to_delete(store: Store) -> None:
    bucket = store.bucket("b")
    bucket.new("k", "v").store()
    assert bucket.delete("k") is True
    assert bucket.delete("k") is False
    assert bucket.delete("never") is False


def test_a_tombstone_reads_as_missing_but_carries_a_context(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    bucket.new("k", "v").store()
    bucket.delete("k")
    gone = bucket.get("k")
    assert not gone.exists and gone.siblings == [] and gone.context is not None

    gone.data = "reborn"
    gone.store()
    reborn = bucket.get("k")
    assert [s.deleted for s in reborn.siblings] == [False] and reborn.data == "reborn"


def test_a_write_concurrent_with_a_delete_wins_over_the_tombstone(store: Store) -> None:
    bucket = make_type(store).bucket("b")
    bucket.new("k", "v").store()
    bucket.delete("k")
    bucket.new("k", "again").store()  # no context: concurrent with the tombstone
    fetched = bucket.get("k")
    assert sorted(s.deleted for s in fetched.siblings) == [False, True]
    assert fetched.exists and fetched.data == "again"


def test_an_immediate_delete_mode_reaps_the_tombstone(store: Store) -> None:
    bucket = store.bucket("b")
    bucket.set_props({"delete_mode": "immediate"})
    bucket.new("k", "v").store()
    bucket.delete("k")
    bucket.get("k")  # the reap runs on the store's next call
    gone = bucket.get("k")
    assert not gone.exists and gone.context is None


# --- secondary indexes -------------------------------------------------------------------------


@pytest.fixture
def people(store: Store) -> sapwood.Bucket:
    bucket = store.bucket("people")
    for i in range(25):
        bucket.new(f"p{i:02}", {"i": i}, indexes={("age_int", 20 + i % 5),
                                                  ("name_bin", f"name{i:02}")}).store()
    return bucket


def test_exact_and_range_index_queries(people: sapwood.Bucket) -> None:
    assert sorted(people.get_index("age_int", 20)) == [f"p{i:02}" for i in range(0, 25, 5)]
    page = people.get_index("name_bin", "name03", "name05", return_terms=True)
    assert page.terms == [("name03", "p03"), ("name04", "p04"), ("name05", "p05")]
    assert page.keys == ["p03", "p04", "p05"] and not page.has_next_page
    assert people.get_index("name_bin", "name0", "name9", term_regex="^name1[0-2]$").keys == [
        "p10", "p11", "p12"]


def test_special_fields_bucket_and_key(people: sapwood.Bucket) -> None:
    assert len(people.get_index("$bucket", "people")) == 25
    assert people.get_index("$key", "p10", "p12").keys == ["p10", "p11", "p12"]


def test_index_pagination_returns_every_key_once_in_order(people: sapwood.Bucket) -> None:
    first = people.get_index("name_bin", "name00", "name99", max_results=10)
    assert len(first) == 10 and first.continuation is not None
    second = people.get_index("name_bin", "name00", "name99", max_results=10,
                              continuation=first.continuation)
    assert second.keys[0] == "p10"

    pages = list(people.paginate_index("name_bin", "name00", "name99", page_size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [k for p in pages for k in p] == [f"p{i:02}" for i in range(25)]
    assert pages[-1].continuation is None


def test_an_index_entry_can_be_removed(people: sapwood.Bucket) -> None:
    obj = people.get("p00")
    obj.remove_index("age_int").store()
    assert "p00" not in people.get_index("age_int", 20).keys
    assert people.get_index("name_bin", "name00").keys == ["p00"]


# --- listing, properties, bucket types ---------------------------------------------------------


def test_list_keys_and_buckets(store: Store) -> None:
    for bucket_name in ("a", "b"):
        for key in ("x", "y"):
            store.bucket(bucket_name).new(key, "v").store()
    assert sorted(store.bucket("a").keys()) == ["x", "y"]
    assert store.buckets() == ["a", "b"]


def test_bucket_props_get_set_and_reset(store: Store) -> None:
    bucket = store.bucket("b")
    assert bucket.get_props()["allow_mult"] is False and bucket.get_props()["name"] == "b"
    bucket.set_props({"allow_mult": True, "r": "all"})
    assert bucket.get_props()["allow_mult"] is True and bucket.get_props()["r"] == "all"
    bucket.reset_props()
    assert bucket.get_props()["allow_mult"] is False


def test_invalid_props_are_refused_and_change_nothing(store: Store) -> None:
    bucket = store.bucket("b")
    before = bucket.get_props()
    with pytest.raises(BadRequest, match="n_val"):
        bucket.set_props({"allow_mult": True, "n_val": 0})
    assert bucket.get_props() == before


def test_bucket_type_life_cycle(store: Store) -> None:
    bucket_type = store.bucket_type("events")
    assert bucket_type.status() is None
    bucket_type.create({"n_val": 2})
    assert bucket_type.status() == "created"
    with pytest.raises(NotFound, match="not active"):
        bucket_type.bucket("b").get("k")
    bucket_type.activate()
    assert bucket_type.status() == "active"
    bucket_type.update({"r": 1})
    props = bucket_type.get_props()
    assert (props["n_val"], props["r"], props["allow_mult"]) == (2, 1, True)
    listed = {info.name: info.status for info in store.bucket_types()}
    assert listed == {"default": "active", "events": "active"}


def test_bucket_type_errors(store: Store) -> None:
    make_type(store, "counters", datatype="counter")
    with pytest.raises(BadRequest, match="already exists"):
        store.bucket_type("counters").create()
    with pytest.raises(BadRequest, match="datatype"):
        store.bucket_type("counters").update({"datatype": "set"})
    with pytest.raises(NotFound):
        store.bucket_type("ghost").activate()
    with pytest.raises(NotFound, match="ghost"):
        store.bucket("b", type="ghost").get("k")


# --- bad input: a typed error, nothing stored ----------------------------------------------------


@pytest.mark.parametrize("change", [
    lambda o: o.add_index("no_suffix", "x"),
    lambda o: o.add_index("age_int", "not a number"),
    lambda o: setattr(o, "usermeta", {"": "empty name"}),
    lambda o: setattr(o, "links", [("only", "two")]),
])
def test_bad_metadata_is_refused_and_nothing_is_stored(store: Store, change: object) -> None:
    bucket = store.bucket("b")
    obj = bucket.new("k", "v")
    change(obj)  # type: ignore[operator]
    with pytest.raises(BadRequest):
        obj.store()
    assert not bucket.get("k").exists


@pytest.mark.parametrize("options", [{"w": "bogus"}, {"w": 4}, {"dw": -1}, {"timeout": 0}])
def test_bad_request_options_are_refused(store: Store, options: dict[str, Any]) -> None:
    bucket = store.bucket("b")
    with pytest.raises(BadRequest):
        bucket.new("k", "v").store(**options)
    assert not bucket.get("k").exists
    with pytest.raises(BadRequest):
        bucket.get("k", r=options.get("w", 4))


def test_bad_names_and_contexts_are_refused(store: Store) -> None:
    bucket = store.bucket("b")
    with pytest.raises(BadRequest):
        bucket.new("", "v")
    with pytest.raises(BadRequest, match="key"):
        bucket.new("k" * 9000, "v").store()
    with pytest.raises(BadRequest):
        store.bucket("")
    obj = bucket.new("k", "v")
    obj.context = "not base64!"
    with pytest.raises(BadRequest, match="context"):
        obj.store()
    assert bucket.keys() == []


def test_values_that_cannot_be_encoded_are_refused(store: Store) -> None:
    bucket = store.bucket("b")
    with pytest.raises(TypeError):
        bucket.new("k", {1, 2})
    with pytest.raises(TypeError):
        bucket.new("k", {"a": 1}, content_type="image/png")


# --- durability and the store's life -------------------------------------------------------------


def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sapwood.open(path) as first:
        make_type(first, "multi", n_val=2)
        first.bucket("b").set_props({"allow_mult": True})
        first.bucket("b").new("k", {"v": 1}, indexes={("x_bin", "y")}).store()
        first.bucket("t", type="multi").new("k", "typed").store()
        first.bucket("d").new("gone", "v").store()
        first.bucket("d").delete("gone")

    with sapwood.open(path) as second:
        assert second.bucket("b").get("k").data == {"v": 1}
        assert second.bucket("b").get_index("x_bin", "y").keys == ["k"]
        assert second.bucket("b").get_props()["allow_mult"] is True
        assert second.bucket_type("multi").get_props()["n_val"] == 2
        assert second.bucket("t", type="multi").get("k").data == "typed"
        assert not second.bucket("d").get("gone").exists


def test_a_closed_store_refuses_requests(tmp_path: Path) -> None:
    store = sapwood.open(tmp_path / "db")
    bucket = store.bucket("b")
    assert store.ping()
    store.close()
    store.close()  # closing twice is harmless
    assert store.closed and not store.ping()
    with pytest.raises(ClosedError):
        bucket.get("k")


def test_open_refuses_an_unknown_sync_mode(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="sync"):
        sapwood.open(tmp_path / "db", sync="sometimes")


def test_stats_name_the_node(tmp_path: Path) -> None:
    with sapwood.open(tmp_path / "db", node="app@10.0.0.1") as store:
        store.bucket("b").new("k", "v").store()
        stats = store.stats()
    assert stats["nodename"] == "app@10.0.0.1" and stats["ring_members"] == ["app@10.0.0.1"]
