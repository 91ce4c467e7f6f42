"""Buckets over the HTTP API: listing (plain and streamed), bucket and type props, admin routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

TEXT = {"Content-Type": "text/plain"}


def concatenated_json(body: str) -> list[dict[str, Any]]:
    decoder, pos, out = json.JSONDecoder(), 0, []
    while pos < len(body):
        value, pos = decoder.raw_decode(body, pos)
        out.append(value)
    return out


async def test_list_buckets_and_keys(serve: Any) -> None:
    async with serve() as c:
        for bucket, key in (("b1", "k1"), ("b1", "k2"), ("b2", "k3")):
            await c.put(f"/buckets/{bucket}/keys/{key}", data=b"v", headers=TEXT)
        resp = await c.get("/buckets", params={"buckets": "true"})
        assert sorted((await resp.json())["buckets"]) == ["b1", "b2"]
        assert resp.headers["X-Sapwood-Harvest"] == "1.0"
        resp = await c.get("/riak", params={"buckets": "true"})
        assert sorted((await resp.json())["buckets"]) == ["b1", "b2"]
        resp = await c.get("/buckets/b1/keys", params={"keys": "true"})
        body = await resp.json()
        assert sorted(body["keys"]) == ["k1", "k2"] and "harvest" not in body
        resp = await c.get("/types/default/buckets/b2/keys", params={"keys": "true"})
        assert (await resp.json())["keys"] == ["k3"]


async def test_streamed_listings_are_concatenated_json(serve: Any) -> None:
    async with serve() as c:
        for i in range(20):
            await c.put(f"/buckets/b/keys/k{i}", data=b"v", headers=TEXT)
        resp = await c.get("/buckets/b/keys", params={"keys": "stream"})
        assert resp.status == 200
        chunks = concatenated_json(await resp.text())
        assert sorted(k for chunk in chunks for k in chunk["keys"]) == sorted(
            f"k{i}" for i in range(20))
        resp = await c.get("/buckets", params={"buckets": "stream"})
        chunks = concatenated_json(await resp.text())
        assert [b for chunk in chunks for b in chunk["buckets"]] == ["b"]
        resp = await c.get("/buckets/empty/keys", params={"keys": "stream"})
        assert concatenated_json(await resp.text()) == [{"keys": []}]


async def test_listing_needs_the_flag(serve: Any) -> None:
    async with serve() as c:
        for url in ("/buckets", "/buckets/b/keys"):
            resp = await c.get(url)
            assert resp.status == 400 and "full scan" in await resp.text()
        resp = await c.get("/buckets/b/keys", params={"keys": "all"})
        assert resp.status == 400
        resp = await c.get("/types/nope/buckets/b/keys", params={"keys": "stream"})
        assert resp.status == 404


async def test_legacy_bucket_resource(serve: Any) -> None:
    async with serve() as c:
        await c.put("/riak/b/k", data=b"v", headers=TEXT)
        body = await (await c.get("/riak/b")).json()
        assert body["props"]["name"] == "b" and "keys" not in body
        body = await (await c.get("/riak/b", params={"keys": "true"})).json()
        assert body["keys"] == ["k"] and body["props"]["n_val"] == 3
        resp = await c.put("/riak/b", json={"props": {"n_val": 2}})
        assert resp.status == 204
        assert (await (await c.get("/riak/b")).json())["props"]["n_val"] == 2


async def test_bucket_props_read_set_reset(serve: Any) -> None:
    async with serve() as c:
        props = (await (await c.get("/buckets/b/props")).json())["props"]
        assert props["name"] == "b" and props["allow_mult"] is False and props["r"] == "quorum"
        resp = await c.put("/buckets/b/props", json={"props": {"allow_mult": True, "w": "all",
                                                               "r": 1}})
        assert resp.status == 204
        props = (await (await c.get("/types/default/buckets/b/props")).json())["props"]
        assert (props["allow_mult"], props["w"], props["r"]) == (True, "all", 1)
        assert (await c.delete("/buckets/b/props")).status == 204
        props = (await (await c.get("/buckets/b/props")).json())["props"]
        assert (props["allow_mult"], props["w"], props["r"]) == (False, "quorum", "quorum")


async def test_bad_bucket_props_change_nothing(serve: Any) -> None:
    bodies: list[tuple[bytes, str]] = [
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (json.dumps({"props": {"n_val": "three"}}).encode(), "n_val"),
        (json.dumps({"props": {"r": "most"}}).encode(), "r"),
        (json.dumps({"props": {"n_val": 2, "w": 3}}).encode(), "greater than n_val"),
        (json.dumps({"props": {"consistent": True}}).encode(), "cannot be changed"),
    ]
    async with serve() as c:
        before = await (await c.get("/buckets/b/props")).json()
        for body, message in bodies:
            resp = await c.put("/buckets/b/props", data=body,
                               headers={"Content-Type": "application/json"})
            assert resp.status == 400, body
            assert message in await resp.text(), (body, await resp.text())
        assert await (await c.get("/buckets/b/props")).json() == before
        assert (await c.get("/types/nope/buckets/b/props")).status == 404
        assert (await c.put("/types/nope/buckets/b/props", json={"props": {}})).status == 404


async def test_type_props(serve: Any) -> None:
    async with serve() as c:
        props = (await (await c.get("/types/default/props")).json())["props"]
        assert props["active"] is True and props["allow_mult"] is False
        assert (await c.get("/types/nope/props")).status == 404
        await c.post("/admin/bucket-types/maps", json={"props": {"datatype": "map"}})
        props = (await (await c.get("/types/maps/props")).json())["props"]
        assert props["active"] is False and props["datatype"] == "map"
        resp = await c.put("/types/maps/props", json={"props": {"datatype": "set"}})
        assert resp.status == 400 and "datatype" in await resp.text()
        resp = await c.put("/types/maps/props", json={"props": {"n_val": 5}})
        assert resp.status == 204
        assert (await (await c.get("/types/maps/props")).json())["props"]["n_val"] == 5


async def test_admin_bucket_types(serve: Any) -> None:
    async with serve() as c:
        resp = await c.post("/admin/bucket-types/t", json={"props": {"n_val": 2}})
        assert resp.status == 201
        assert (await resp.json())["status"] == "created"
        resp = await c.put("/types/t/buckets/b/keys/k", data=b"v", headers=TEXT)
        assert resp.status == 404 and "not active" in await resp.text()
        resp = await c.post("/admin/bucket-types/t/activate")
        assert (await resp.json())["status"] == "active"
        resp = await c.put("/admin/bucket-types/t", json={"props": {"allow_mult": False}})
        assert (await resp.json())["props"]["allow_mult"] is False
        listed = (await (await c.get("/admin/bucket-types")).json())["types"]
        assert [t["name"] for t in listed] == ["default", "t"]
        status = await (await c.get("/admin/bucket-types/t")).json()
        assert status == {"name": "t", "status": "active", "props": status["props"]}
        assert status["props"]["n_val"] == 2
        assert (await c.post("/admin/bucket-types/t", json={})).status == 400
        assert (await c.post("/admin/bucket-types/nope/activate")).status == 404
        assert (await c.post("/admin/bucket-types/bad%2Fname", json={})).status == 400
        resp = await c.put("/types/t/buckets/b/keys/k", data=b"v", headers=TEXT)
        assert resp.status == 204


def pretend_remote(address: str) -> Callable[[web.Application], None]:
    @web.middleware
    async def from_elsewhere(request: web.Request, handler: Callable[[web.Request],
                             Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        return await handler(request.clone(remote=address))

    def hook(app: web.Application) -> None:
        app.middlewares.insert(0, from_elsewhere)

    return hook


async def test_admin_routes_refuse_remote_peers(serve: Any) -> None:
    async with serve(app_hook=pretend_remote("203.0.113.7")) as c:
        resp = await c.post("/admin/bucket-types/t", json={})
        assert resp.status == 403 and "loopback" in await resp.text()
        assert (await c.get("/admin/bucket-types")).status == 403
        assert (await c.get("/types/t/props")).status == 404  # nothing was created
        assert (await c.get("/ping")).status == 200
    async with serve(app_hook=pretend_remote("::1")) as c:
        assert (await c.get("/admin/bucket-types")).status == 200


async def test_admin_routes_can_be_opened_to_everyone(serve: Any) -> None:
    async with serve(app_hook=pretend_remote("203.0.113.7"), admin_from_anywhere=True) as c:
        assert (await c.post("/admin/bucket-types/t", json={})).status == 201
