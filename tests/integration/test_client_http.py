"""`sapwood.Client` and `sapwood.AsyncClient` against a real node process, and the data directory
shared between `sapwood.open()` and `sapwood start`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sapwood
from sapwood import BadRequest, Client, NotFound, SiblingsError, last_write_wins

pytestmark = pytest.mark.integration

NodeFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def node(module_node_factory: NodeFactory) -> Any:
    """One node for the module (the integration conftest stops it by PID at teardown)."""
    return module_node_factory(args=["--log-level", "warning"])


@pytest.fixture(scope="module")
def client(node: Any) -> Iterator[Client]:
    with Client(node.url) as opened:
        yield opened


@pytest.fixture(scope="module")
def multi(client: Client) -> sapwood.BucketType:
    bucket_type = client.bucket_type("multi")
    bucket_type.create({"n_val": 3})
    bucket_type.activate()
    return bucket_type


# --- node --------------------------------------------------------------------------------------


def test_ping_and_stats(client: Client) -> None:
    assert client.ping()
    stats = client.stats()
    assert stats["riak_kv_version"] >= "2.1" and stats["nodename"] == "sapwood@127.0.0.1"


# --- objects -----------------------------------------------------------------------------------


def test_values_and_metadata_round_trip(client: Client) -> None:
    bucket = client.bucket("values")
    bucket.new("raw", b"\x00\r\n--binary").store()
    bucket.new("text", "héllo").store()
    obj = bucket.new("doc", {"a": [1, 2]}, usermeta={"Colour": "green"},
                     links=[("values", "text", "see also")])
    obj.add_index("age_int", 42).add_index("name_bin", "ann")
    stored = obj.store()
    assert stored.context and stored.vtag

    assert bucket.get("raw").value == b"\x00\r\n--binary"
    assert (bucket.get("text").data, bucket.get("text").charset) == ("héllo", "utf-8")
    fetched = bucket.get("doc")
    assert fetched.data == {"a": [1, 2]} and fetched.content_type == "application/json"
    assert fetched.usermeta == {"Colour": "green"}
    assert fetched.indexes == {("age_int", 42), ("name_bin", "ann")}
    assert fetched.links == [("values", "text", "see also")]
    assert fetched.last_modified is not None and fetched.vtag == stored.vtag


def test_missing_generated_and_deleted_keys(client: Client, multi: sapwood.BucketType) -> None:
    bucket = multi.bucket("life")
    assert not bucket.get("missing").exists
    created = bucket.new(data="generated").store()
    assert created.key and bucket.get(created.key).data == "generated"
    assert bucket.delete(created.key) is True
    gone = bucket.get(created.key)
    assert not gone.exists and gone.context
    gone.data = "reborn"
    gone.store()
    reborn = bucket.get(created.key)
    assert len(reborn.siblings) == 1 and reborn.data == "reborn"
    assert bucket.delete("never-there") is False


def test_five_stale_context_writes_resolve_to_one(multi: sapwood.BucketType) -> None:
    bucket = multi.bucket("stale")
    bucket.new("k", "original").store()
    context = bucket.get("k").context
    for i in range(5):
        writer = bucket.new("k", f"writer {i}")
        writer.context = context
        writer.store(return_body=False)

    fetched = bucket.get("k")
    assert sorted(s.data for s in fetched.siblings) == [f"writer {i}" for i in range(5)]
    with pytest.raises(SiblingsError):
        _ = fetched.data
    fetched.resolve(last_write_wins)
    fetched.store()
    final = bucket.get("k")
    assert len(final.siblings) == 1 and final.data.startswith("writer ")


def test_a_store_with_return_body_shows_the_siblings_it_left(multi: sapwood.BucketType) -> None:
    bucket = multi.bucket("returnbody")
    bucket.new("k", "a").store()
    second = bucket.new("k", "b").store()  # no context: a sibling of "a"
    assert sorted(s.data for s in second.siblings) == ["a", "b"]


# --- queries, properties, types ----------------------------------------------------------------


def test_index_pagination_and_key_listing(client: Client) -> None:
    bucket = client.bucket("people")
    for i in range(12):
        bucket.new(f"p{i:02}", i, indexes={("n_int", i)}).store(return_body=False)
    pages = list(bucket.paginate_index("n_int", 0, 100, page_size=5, return_terms=True))
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [t for p in pages for t in p.terms or []] == [(i, f"p{i:02}") for i in range(12)]
    assert bucket.get_index("$key", "p03", "p04").keys == ["p03", "p04"]
    assert sorted(bucket.keys()) == [f"p{i:02}" for i in range(12)]
    assert "people" in client.buckets()


def test_bucket_props(client: Client) -> None:
    bucket = client.bucket("props")
    bucket.set_props({"allow_mult": True, "r": "all"})
    assert (bucket.get_props()["allow_mult"], bucket.get_props()["r"]) == (True, "all")
    with pytest.raises(BadRequest, match="n_val"):
        bucket.set_props({"n_val": 0})
    bucket.reset_props()
    assert bucket.get_props()["allow_mult"] is False


def test_bucket_type_admin(client: Client) -> None:
    bucket_type = client.bucket_type("events")
    assert bucket_type.status() is None
    bucket_type.create({"n_val": 2})
    assert bucket_type.status() == "created"
    bucket_type.activate()
    bucket_type.update({"r": 1})
    props = bucket_type.get_props()
    assert (props["n_val"], props["r"], props["active"]) == (2, 1, True)
    assert {i.name: i.status for i in client.bucket_types()}["events"] == "active"
    with pytest.raises(BadRequest, match="already exists"):
        bucket_type.create()


def test_errors_are_typed_and_change_nothing(client: Client) -> None:
    bucket = client.bucket("errors")
    with pytest.raises(BadRequest):
        bucket.new("k", "v").add_index("no_suffix", "x").store()
    with pytest.raises(BadRequest):
        bucket.new("k", "v").add_index("n_int", "NaN").store()
    with pytest.raises(BadRequest, match="n_val"):
        bucket.get("k", r=9)
    assert not bucket.get("k").exists
    with pytest.raises(NotFound, match="ghost"):
        client.bucket("b", type="ghost").get("k")


def test_the_async_client(node: Any) -> None:
    async def scenario() -> None:
        async with sapwood.AsyncClient(node.url) as client:
            assert await client.ping()
            bucket = client.bucket("async")
            obj = await bucket.new("k", {"n": 1}, indexes={("n_int", 1)}).store()
            assert obj.exists and obj.context
            assert (await bucket.get("k")).data == {"n": 1}
            assert (await bucket.get_index("n_int", 1)).keys == ["k"]
            assert await bucket.keys() == ["k"]
            assert await bucket.delete("k") is True
            assert not (await bucket.get("k")).exists

    asyncio.run(scenario())


# --- one data directory, embedded or served --------------------------------------------------------


def test_a_directory_written_embedded_is_served_and_vice_versa(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    data = tmp_path / "data"
    with sapwood.open(data) as store:
        events = store.bucket_type("events")
        events.create()
        events.activate()
        store.bucket("b").new("embedded", {"by": "open"}, indexes={("src_bin", "embedded")},
                                usermeta={"Origin": "embedded"}).store()
        store.bucket("t", type="events").new("k", "typed").store()

    served = node_factory(data_dir=data)
    try:
        with Client(served.url) as client:
            fetched = client.bucket("b").get("embedded")
            assert fetched.data == {"by": "open"} and fetched.usermeta == {"Origin": "embedded"}
            assert client.bucket("b").get_index("src_bin", "embedded").keys == ["embedded"]
            assert client.bucket("t", type="events").get("k").data == "typed"
            fetched.data = {"by": "open", "then": "server"}
            fetched.store()
            client.bucket("b").new("served", "over http", indexes={("src_bin", "http")}).store()
    finally:
        served.stop()

    with sapwood.open(data) as store:
        assert store.bucket("b").get("embedded").data == {"by": "open", "then": "server"}
        assert store.bucket("b").get("served").data == "over http"
        assert store.bucket("b").get_index("src_bin", "http").keys == ["served"]
        assert len(store.bucket("b").get("embedded").siblings) == 1
