"""Typed data type objects on the embedded store: staged ops, values, contexts, maps' nested
fields, deletes, legacy counters, and the errors of each misuse."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sapwood
from sapwood import BadRequest, Conflict, NotFound, PreconditionFailed, Store
from sapwood.client.buckets import Location
from sapwood.client.datatypes import (
    Counter,
    Flag,
    GSet,
    HyperLogLog,
    Map,
    Register,
    Set,
    split_field_name,
)
from sapwood.client.http import fetch_datatype_op
from sapwood.client.wire import Answer

DATATYPES = {"counters": "counter", "sets": "set", "gsets": "gset", "hlls": "hll", "maps": "map"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with sapwood.open(tmp_path_factory.mktemp("dt") / "db", sync="commit") as opened:
        for name, datatype in DATATYPES.items():
            bucket_type = opened.bucket_type(name)
            bucket_type.create({"datatype": datatype})
            bucket_type.activate()
        yield opened


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return request.node.name  # a fresh key per test in the shared store


# --- staging, without a store -------------------------------------------------------------------


def test_staged_changes_are_riak_json_ops() -> None:
    c = Counter(None)
    assert not c.modified and c.to_op() is None
    c.increment(5)
    c.decrement()
    assert c.to_op() == {"increment": 4} and c.value == 0

    s = Set(None, value=["a"])
    s.add("b")
    s.add("c")
    s.discard("c")  # a staged add then a discard: the discard wins
    s.discard("a")
    assert s.to_op() == {"add_all": ["b"], "remove_all": ["c", "a"]}
    assert s.value == frozenset({"a"}) and "a" in s and list(s) == ["a"] and len(s) == 1

    m = Map(None, value={"n_counter": 2, "inner_map": {"f_flag": True}})
    m.counters["n"].increment()
    m.registers["name"].assign("Ada")
    m.maps["inner"].flags["f"].disable()
    m.maps["inner"].sets["tags"].add("x")
    del m.sets["old"]
    assert m.to_op() == {
        "remove": ["old_set"],
        "update": {"n_counter": {"increment": 1},
                   "inner_map": {"update": {"f_flag": "disable", "tags_set": {"add_all": ["x"]}}},
                   "name_register": "Ada"},
    }
    assert m.value == {("n", "counter"): 2, ("inner", "map"): {("f", "flag"): True}}
    assert m.json_value() == {"n_counter": 2, "inner_map": {"f_flag": True}}
    assert "n" in m.counters and "name" not in m.registers and list(m.counters) == ["n"]
    m.clear()
    assert m.to_op() is None


def test_a_new_map_field_is_the_same_object_on_every_access() -> None:
    m = Map(None)
    m.sets["tags"].add("a")
    m.sets["tags"].add("b")  # an empty (falsy) new set must not be replaced
    m.maps["inner"].counters["n"].increment()
    m.maps["inner"].counters["n"].increment()
    assert m.to_op() == {"update": {"tags_set": {"add_all": ["a", "b"]},
                                    "inner_map": {"update": {"n_counter": {"increment": 2}}}}}


def test_a_removed_map_field_keeps_only_updates_staged_after_the_remove() -> None:
    m = Map(None, value={"n_counter": 2})
    m.counters["n"].increment(7)
    del m.counters["n"]
    assert m.to_op() == {"remove": ["n_counter"]}
    m.counters["n"].increment()
    assert m.to_op() == {"remove": ["n_counter"], "update": {"n_counter": {"increment": 1}}}


def test_bad_staged_values_are_refused_at_once() -> None:
    with pytest.raises(BadRequest, match="str"):
        Set(None).add(5)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="int"):
        Counter(None).increment(1.5)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="str"):
        Register().assign(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="map fields"):
        Map(None).field(("x", "widget"))
    with pytest.raises(BadRequest):
        split_field_name("no_type_suffix")
    assert Flag(True).value is True and Register("v").value == "v"


# --- on the embedded store ----------------------------------------------------------------------


def test_counter_store_reload_and_a_fetch_by_bucket_type(store: Store, key: str) -> None:
    bucket = store.bucket("b", "counters")
    c = bucket.new_datatype(key)
    assert isinstance(c, Counter) and not c.exists and c.value == 0
    c.increment(3)
    assert c.store() is c
    assert (c.value, c.exists, c.modified, c.context) == (3, True, False, None)
    c.decrement(5)
    c.store(return_body=False)
    assert c.value == 3  # not read back
    assert c.reload().value == -2
    fetched = bucket.get_datatype(key)
    assert isinstance(fetched, Counter) and fetched.value == -2


def test_set_contexts_limit_removes_to_what_was_seen(store: Store, key: str) -> None:
    bucket = store.bucket("b", "sets")
    s = Set(bucket, key)
    s.add("a")
    s.add("b")
    s.store()
    assert s.value == {"a", "b"} and s.context
    stale = bucket.get_datatype(key)
    s.add("late")
    s.store()
    assert isinstance(stale, Set)
    stale.discard("a")
    stale.discard("late")  # never seen by this fetch: stays
    stale.store()
    assert stale.value == {"b", "late"}

    fresh = Set(bucket, key)  # no context: removing what the store lacks is refused
    fresh.discard("never")
    with pytest.raises(PreconditionFailed, match="never"):
        fresh.store()
    assert fresh.modified and Set(bucket, key).reload().value == {"b", "late"}


def test_gset_and_hll(store: Store, key: str) -> None:
    g = GSet(store.bucket("b", "gsets"), key)
    g.add("x")
    g.add("y")
    assert g.store().value == {"x", "y"} and g.context
    h = HyperLogLog(store.bucket("b", "hlls"), key)
    for item in ("p", "q", "p"):
        h.add(item)
    assert h.store().value == 2 and h.context is None


def test_map_nested_fields_round_trip(store: Store, key: str) -> None:
    bucket = store.bucket("b", "maps")
    m = Map(bucket, key)
    m.registers["name"].assign("Ada")
    m.counters["logins"].increment(2)
    m.flags["admin"].enable()
    m.sets["roles"].add("ops")
    m.maps["address"].registers["city"].assign("London")
    m.store()
    assert m.value == {("name", "register"): "Ada", ("logins", "counter"): 2,
                       ("admin", "flag"): True, ("roles", "set"): frozenset({"ops"}),
                       ("address", "map"): {("city", "register"): "London"}}
    assert m.maps["address"].registers["city"].value == "London"
    del m.sets["roles"]
    m.flags["admin"].disable()
    m.counters["logins"].increment()
    m.store()
    again = bucket.get_datatype(key)
    assert isinstance(again, Map)
    assert again.value == {("name", "register"): "Ada", ("logins", "counter"): 3,
                           ("admin", "flag"): False,
                           ("address", "map"): {("city", "register"): "London"}}
    with pytest.raises(BadRequest, match="storing the map"):
        again.counters["logins"].store()  # type: ignore[misc]


def test_delete_generated_keys_and_include_context(store: Store) -> None:
    bucket = store.bucket("b", "sets")
    s = bucket.new_datatype()
    assert isinstance(s, Set)
    s.add("a")
    s.store()
    assert s.key and s.exists
    assert bucket.get_datatype(s.key, include_context=False).context is None
    assert s.delete() is True
    assert (s.exists, s.value, s.context) == (False, frozenset(), None)
    assert not bucket.get_datatype(s.key).exists
    s.add("b")
    assert s.store().value == {"b"}  # written over the tombstone


def test_misuse_is_a_clear_error_that_changes_nothing(store: Store, key: str) -> None:
    with pytest.raises(BadRequest, match="no staged changes"):
        Set(store.bucket("b", "sets"), key).store()
    wrong = Set(store.bucket("b", "counters"), key)
    wrong.add("x")
    with pytest.raises(BadRequest, match="holds counters, not sets"):
        wrong.store()
    with pytest.raises(BadRequest, match="counters, not sets"):
        wrong.reload()
    assert not store.bucket("b", "counters").get_datatype(key).exists
    for bucket in (store.bucket("b"), store.bucket("b", "plain-type-missing")):
        with pytest.raises((BadRequest, NotFound)):
            bucket.new_datatype(key)
    with pytest.raises(BadRequest, match="no datatype"):
        store.bucket("b").get_datatype(key)
    with pytest.raises(BadRequest, match="no key"):
        Set(store.bucket("b", "sets")).reload()


def test_legacy_counters(store: Store, key: str) -> None:
    bucket = store.bucket(key)
    with pytest.raises(Conflict, match="allow_mult"):
        bucket.update_counter("c", 1)
    bucket.set_props({"allow_mult": True})
    assert bucket.get_counter("c") is None
    assert bucket.update_counter("c", 5) is None
    assert bucket.update_counter("c", -2, return_value=True) == 3
    assert bucket.get_counter("c") == 3
    with pytest.raises(BadRequest, match="int"):
        bucket.update_counter("c", "1")  # type: ignore[arg-type]
    bucket.new("plain", "text").store()
    with pytest.raises(Conflict, match="not a counter"):
        bucket.get_counter("plain")


set_steps = st.lists(st.tuples(st.booleans(), st.sampled_from("abcd")), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(steps=set_steps)
def test_a_set_matches_a_model_through_stores_and_reloads(store: Store, steps: list[tuple[bool, str]]
                                                         ) -> None:
    bucket = store.bucket("model", "sets")
    s = Set(bucket, "k")
    if s.reload().exists:
        s.delete()
    model: set[str] = set()
    for add, element in steps:
        if add:
            s.add(element)
            model.add(element)
        elif element in s.value:  # fetched with its context: the remove is allowed
            s.discard(element)
            model.discard(element)
        if s.modified:
            s.store()
        assert s.value == model
    assert Set(bucket, "k").reload().value == model


# --- the HTTP client's answers, offline -----------------------------------------------------


def answer(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    return Answer(status, httpx.Headers({"Content-Type": content_type}), body)


def test_http_datatype_answers_are_read_as_riak_writes_them() -> None:
    op = fetch_datatype_op(Location("sets", "b", "k"), {})
    assert op.call.path == "/types/sets/buckets/b/datatypes/k"
    found = op.read(answer(200, b'{"type":"set","value":["a"],"context":"Q1"}'))
    assert (found.type_name, found.value, found.context) == ("set", ["a"], "Q1")
    missing = op.read(answer(404, b'{"type":"set","error":"notfound"}'))
    assert (missing.type_name, missing.exists) == ("set", False)
    with pytest.raises(NotFound, match="Unknown bucket type"):
        op.read(answer(404, b"Unknown bucket type: sets", "text/plain"))
    with pytest.raises(BadRequest, match="no datatype"):
        op.read(answer(400, b"bucket type has no datatype", "text/plain"))
