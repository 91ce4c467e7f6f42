"""Consistent bucket types over the Riak HTTP API, on one node (its groups' members are local)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sapwood.core.consensus import RaftConfig
from sapwood.http.app import make_app, runner_options
from sapwood.node.node import Node, NodeConfig

FAST = RaftConfig(election_timeout_min_ms=100, election_timeout_max_ms=200,
                  heartbeat_interval_ms=20)
TEXT = {"Content-Type": "text/plain"}
KEY = "/types/sc/buckets/b/keys/k"

Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def consistent_node(tmp_path: Path) -> AsyncIterator[Client]:
    """A started node with a consistent type `sc` and an available type `av`."""
    node = Node(NodeConfig(data_dir=tmp_path / "data", ring_size=8, ensemble_raft=FAST))
    server = TestServer(make_app(node))
    try:
        await server.start_server(**runner_options())
        node.start()
        async with TestClient(server) as client:
            for name, props in (("sc", {"consistent": True}), ("av", {})):
                created = await client.post(f"/admin/bucket-types/{name}",
                                            json={"props": props})
                assert created.status == 201, await created.text()
                assert (await client.post(f"/admin/bucket-types/{name}/activate")).status == 200
            yield client
    finally:
        node.close()


async def put(client: Client, path: str, body: bytes, vclock: str | None = None,
              **params: str) -> Any:
    headers = dict(TEXT)
    if vclock is not None:
        headers["X-Riak-Vclock"] = vclock
    return await client.put(path, data=body, headers=headers, params=params)


async def test_writes_are_create_then_compare_and_set(tmp_path: Path) -> None:
    async with consistent_node(tmp_path) as c:
        assert (await put(c, KEY, b"v1")).status == 204
        again = await put(c, KEY, b"v2")
        assert again.status == 412 and "absent" in await again.text()

        got = await c.get(KEY, headers={"Accept": "multipart/mixed, */*;q=0.5"})
        assert got.status == 200 and await got.read() == b"v1"
        assert got.headers["Content-Type"].startswith("text/plain")
        vclock = got.headers["X-Riak-Vclock"]

        updated = await put(c, KEY, b"v2", vclock, returnbody="true")
        assert updated.status == 200 and await updated.read() == b"v2"
        assert updated.headers["X-Riak-Vclock"] != vclock
        stale = await put(c, KEY, b"lost", vclock)
        assert stale.status == 412 and "expected version" in await stale.text()
        assert await (await c.get(KEY)).read() == b"v2"


async def test_deletes_without_and_with_a_context(tmp_path: Path) -> None:
    async with consistent_node(tmp_path) as c:
        await put(c, KEY, b"v1")
        old = (await c.get(KEY)).headers["X-Riak-Vclock"]
        await put(c, KEY, b"v2", old)
        stale = await c.delete(KEY, headers={"X-Riak-Vclock": old})
        assert stale.status == 412
        current = (await c.get(KEY)).headers["X-Riak-Vclock"]
        assert (await c.delete(KEY, headers={"X-Riak-Vclock": current})).status == 204
        assert (await c.get(KEY)).status == 404
        assert (await c.delete(KEY)).status == 404
        await put(c, KEY, b"v3")
        assert (await c.delete(KEY)).status == 204
        assert (await c.get(KEY)).status == 404


async def test_quorum_parameters_are_ignored(tmp_path: Path) -> None:
    async with consistent_node(tmp_path) as c:
        assert (await put(c, KEY, b"v", w="all", dw="3", pw="all")).status == 204
        got = await c.get(KEY, params={"r": "all", "pr": "3", "notfound_ok": "false"})
        assert got.status == 200 and await got.read() == b"v"


async def test_what_consistent_types_refuse_is_a_clear_400(tmp_path: Path) -> None:
    async with consistent_node(tmp_path) as c:
        kv = await c.put("/types/av/buckets/b/keys/k", data=b"x", headers=TEXT,
                         params={"returnbody": "true"})
        wrong = await put(c, KEY, b"v", kv.headers["X-Riak-Vclock"])
        assert wrong.status == 400 and "eventually consistent" in await wrong.text()
        garbage = await put(c, KEY, b"v", base64.b64encode(b"nonsense").decode())
        assert garbage.status == 400

        indexed = await c.put(KEY, data=b"v", headers={**TEXT, "X-Riak-Index-f_bin": "a"})
        assert indexed.status == 400 and "secondary indexes" in await indexed.text()
        query = await c.get("/types/sc/buckets/b/index/f_bin/a")
        assert query.status == 400 and "secondary indexes" in await query.text()
        keys = await c.get("/types/sc/buckets/b/keys", params={"keys": "true"})
        assert keys.status == 400 and "not supported" in await keys.text()
        for props in ({"datatype": "set"}, {"last_write_wins": True}):
            created = await c.post("/admin/bucket-types/bad",
                                   json={"props": {"consistent": True, **props}})
            assert created.status == 400


async def test_stats_and_admin_route_describe_the_groups(tmp_path: Path) -> None:
    async with consistent_node(tmp_path) as c:
        await put(c, KEY, b"v")
        for _ in range(3):
            assert (await c.get(KEY)).status == 200
        stats = (await (await c.get("/stats")).json())["sapwood_ensembles"]
        assert stats["elections"] >= 1 and stats["commits"] >= 2
        assert stats["lease_reads"] + stats["read_index_reads"] >= 3

        status = await (await c.get("/admin/ensembles")).json()
        members = status["members"]
        assert len(members) == 3 and len({m["group"] for m in members}) == 1
        leaders = [m for m in members if m["role"] == "leader"]
        assert len(leaders) == 1
        assert all(m["leader"] == leaders[0]["member"] for m in members)
        assert sorted(leaders[0]["members"]) == sorted(m["member"] for m in members)
