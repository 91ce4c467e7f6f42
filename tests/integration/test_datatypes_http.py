"""Data types over real HTTP: a node process, Riak's JSON op shapes, contexts through the Python
clients (sync and async), bad requests that change nothing, and state that survives a restart.

One node with n_val=3 (three local vnodes per key); the same checks on a three-node devrel cluster
await the inter-node transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import sapwood
from sapwood import BadRequest, Client, Conflict, PreconditionFailed
from sapwood.client.datatypes import Counter, HyperLogLog, Map, Set

pytestmark = pytest.mark.integration

NodeFactory = Callable[..., Any]
DATATYPES = {"counters": "counter", "sets": "set", "gsets": "gset", "hlls": "hll", "maps": "map"}
LARGE_SET = 2_000  # enough elements to be encoded in several segments


@pytest.fixture(scope="module")
def node(module_node_factory: NodeFactory) -> Any:
    node = module_node_factory(args=["--log-level", "warning"])
    with httpx.Client(base_url=node.url) as http:
        for name, datatype in DATATYPES.items():
            body = {"props": {"datatype": datatype, "n_val": 3}}
            http.post(f"/admin/bucket-types/{name}", json=body).raise_for_status()
            http.post(f"/admin/bucket-types/{name}/activate").raise_for_status()
    return node


@pytest.fixture
def http(node: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url) as client:
        yield client


@pytest.fixture
def client(node: Any) -> Iterator[Client]:
    with Client(node.url) as opened:
        yield opened


def url(bucket_type: str, key: str) -> str:
    return f"/types/{bucket_type}/buckets/b/datatypes/{key}"


def test_riak_json_op_shapes_of_every_type(http: httpx.Client) -> None:
    ops: dict[str, list[Any]] = {
        "counters": [{"increment": 7}, {"decrement": 2}, -1],
        "sets": [{"add": "a"}, {"add_all": ["b", "c"]}, {"remove": "a"}, {"remove_all": ["b"]}],
        "gsets": [{"add": "a"}, {"add_all": ["b"]}],
        "hlls": [{"add": "a"}, {"add_all": ["b", "c", "a"]}],
        "maps": [{"update": {"n_counter": 1, "r_register": "v", "f_flag": "enable",
                             "s_set": {"add_all": ["x"]}, "m_map": {"update": {"c_counter": 2}}}},
                 {"remove": ["f_flag"], "update": {"n_counter": {"increment": 2}}}],
    }
    expected = {"counters": 4, "sets": ["c"], "gsets": ["a", "b"], "hlls": 3,
                "maps": {"n_counter": 3, "r_register": "v", "s_set": ["x"],
                         "m_map": {"c_counter": 2}}}
    for bucket_type, type_ops in ops.items():
        for op in type_ops:
            resp = http.post(url(bucket_type, "shapes"), json=op)
            assert resp.status_code == 204, resp.text
        body = http.get(url(bucket_type, "shapes")).json()
        assert body["type"] == DATATYPES[bucket_type]
        assert body["value"] == expected[bucket_type]
        assert ("context" in body) == (bucket_type not in ("counters", "hlls"))
    missing = http.get(url("maps", "never"))
    assert (missing.status_code, missing.json()) == (404, {"type": "map", "error": "notfound"})


def test_bad_requests_are_4xx_with_a_message_and_change_nothing(http: httpx.Client) -> None:
    http.post(url("sets", "bad"), json={"add": "kept"}).raise_for_status()
    attempts: list[tuple[dict[str, Any], int]] = [
        ({"json": {"increment": 1}}, 400),  # an op of another type
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b'{"add":"x"}', "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"remove": "unseen"}}, 412),
        ({"json": {"add": "x", "context": "not base64!"}}, 400),
    ]
    for request, status in attempts:
        resp = http.post(url("sets", "bad"), **request)
        assert resp.status_code == status and resp.text.strip(), (request, resp.text)
    assert http.get(url("sets", "bad")).json()["value"] == ["kept"]


def test_typed_objects_and_contexts_through_the_client(client: Client) -> None:
    bucket = client.bucket("b", "sets")
    s = Set(bucket, "ctx")
    s.add("a")
    s.add("b")
    s.store()
    stale = bucket.get_datatype("ctx")
    assert isinstance(stale, Set) and stale.context == s.context
    s.add("late")
    s.store()
    stale.discard("a")
    stale.discard("late")
    stale.store()
    assert stale.value == {"b", "late"}  # the remove left what its context had not seen

    fresh = Set(bucket, "ctx")
    fresh.discard("unseen")
    with pytest.raises(PreconditionFailed, match="unseen"):
        fresh.store()

    m = client.bucket("b", "maps").new_datatype()
    assert isinstance(m, Map)
    m.registers["name"].assign("Ada")
    m.counters["visits"].increment()
    m.store()
    assert m.key and m.value == {("name", "register"): "Ada", ("visits", "counter"): 1}
    del m.registers["name"]
    m.store()
    assert m.reload().value == {("visits", "counter"): 1}
    assert m.delete() and not client.bucket("b", "maps").get_datatype(m.key).exists

    with pytest.raises(BadRequest, match="no datatype"):
        client.bucket("b").get_datatype("k")


def test_legacy_counters_through_the_client(client: Client) -> None:
    bucket = client.bucket("legacy")
    with pytest.raises(Conflict):
        bucket.update_counter("c", 1)
    bucket.set_props({"allow_mult": True})
    bucket.update_counter("c", 10)
    assert bucket.update_counter("c", -3, return_value=True) == 7
    assert bucket.get_counter("c") == 7 and bucket.get_counter("none") is None


def test_the_async_client(node: Any) -> None:
    async def run() -> None:
        async with sapwood.AsyncClient(node.url) as client:
            bucket = client.bucket("b", "hlls")
            h = HyperLogLog(bucket, "async")
            for item in ("x", "y", "x"):
                h.add(item)
            await h.store()
            assert h.value == 2
            counters = client.bucket("b", "counters")
            assert type(await counters.new_datatype("async")) is Counter
            c = Counter(counters, "async")
            c.increment(4)
            await c.store()
            fetched = await client.bucket("b", "counters").get_datatype("async")
            assert fetched.value == 4
            assert await fetched.delete()
            assert not (await fetched.reload()).exists

    asyncio.run(run())


def test_a_large_set_survives_a_restart_and_keeps_updating(node: Any, client: Client) -> None:
    bucket = client.bucket("b", "sets")
    s = Set(bucket, "large")
    for i in range(LARGE_SET):
        s.add(f"member-{i}")
    s.store(return_body=False)
    node.restart()
    s.reload()
    assert len(s.value) == LARGE_SET
    s.discard("member-7")
    s.add("after-restart")
    s.store()
    assert len(s.value) == LARGE_SET and "after-restart" in s and "member-7" not in s
