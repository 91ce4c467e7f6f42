"""Discovery, ping, stats, unimplemented resources and the error mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from sapwood.http.app import RESOURCES, make_app
from sapwood.http.guard import guarded, is_guarded
from sapwood.node.node import Node, NodeConfig


async def test_discovery(serve: Any) -> None:
    async with serve() as c:
        resp = await c.get("/", headers={"Accept": "application/json"})
        body = await resp.json()
        for name in ("riak_kv_wm_buckets", "riak_kv_wm_bucket_type", "riak_kv_wm_counter",
                     "riak_kv_wm_index", "riak_kv_wm_preflist", "riak_kv_wm_ping",
                     "riak_kv_wm_stats"):
            assert name in body
        assert body["riak_kv_wm_bucket_type"] == "/types"
        assert 'rel="riak_kv_wm_stats"' in resp.headers["Link"]
        resp = await c.get("/", headers={"Accept": "text/html"})
        assert resp.headers["Content-Type"].startswith("text/html")
        page = await resp.text()
        assert all(name in page for name in RESOURCES)


async def test_ping_and_stats(serve: Any) -> None:
    async with serve() as c:
        resp = await c.get("/ping")
        assert resp.status == 200 and await resp.text() == "OK"
        await c.put("/buckets/b/keys/k", data=b"v", headers={"Content-Type": "text/plain"})
        await c.get("/buckets/b/keys/k")
        await c.get("/buckets/b/keys/k", params={"r": "9"})
        stats = await (await c.get("/stats")).json()
        assert stats["riak_kv_version"] == "2.1.4"
        assert stats["nodename"] == "sapwood@127.0.0.1"
        assert stats["ring_members"] == ["sapwood@127.0.0.1"]
        assert stats["ring_num_partitions"] == 8
        assert stats["connected_nodes"] == []
        cluster = stats["sapwood_cluster"]
        assert [(m["name"], m["up"], m["ownership"]) for m in cluster["members"]] == [
            ("sapwood@127.0.0.1", True, 100.0)]
        assert cluster["transfers_pending"] == 0 and cluster["handoffs"]["active"] == []
        assert stats["sapwood_version"]
        assert stats["node_gets_total"] == 1 and stats["node_puts_total"] == 1
        assert set(stats["sapwood_latency"]["get"]) == {"p50_us", "p95_us", "p99_us", "count"}
        assert stats["sapwood_request_errors"] == {"GetRequest": 1}
        assert stats["sapwood_http_responses"]["4xx"] == 1


async def test_unknown_routes_and_unexpected_errors(serve: Any) -> None:
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    def hook(app: web.Application) -> None:
        app.router.add_get("/explode", guarded(explode))

    async with serve(app_hook=hook) as c:
        assert (await c.get("/nowhere")).status == 404
        assert (await c.patch("/buckets/b/keys/k")).status == 405
        resp = await c.get("/explode")
        assert resp.status == 500
        text = await resp.text()
        assert "internal error" in text and "boom" not in text


def test_every_route_maps_errors(tmp_path: Path) -> None:
    # Errors are mapped per handler (no middleware): a route added without `guarded` would
    # leak aiohttp's own 500 page and skip the stats.
    node = Node(NodeConfig(data_dir=tmp_path, ring_size=8))
    try:
        routes = list(make_app(node).router.routes())
    finally:
        node.close()
    assert len(routes) > 40
    assert [r.resource.canonical for r in routes if r.resource and not is_guarded(r.handler)
            ] == []
