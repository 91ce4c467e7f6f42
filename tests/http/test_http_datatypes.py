"""Data types and legacy counters over the HTTP API: Riak's op shapes and answers, contexts, and
bad requests answered with a 4xx and a message that change nothing."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
DATATYPES = {"counters": "counter", "sets": "set", "gsets": "gset", "hlls": "hll", "maps": "map"}


async def make_type(c: Client, name: str, props: dict[str, Any]) -> None:
    resp = await c.post(f"/admin/bucket-types/{name}", json={"props": props})
    assert resp.status == 201, await resp.text()
    resp = await c.post(f"/admin/bucket-types/{name}/activate")
    assert resp.status == 200, await resp.text()


async def make_types(c: Client) -> None:
    for name, datatype in DATATYPES.items():
        await make_type(c, name, {"datatype": datatype})


def url(bucket_type: str, key: str | None = "k", bucket: str = "b") -> str:
    base = f"/types/{bucket_type}/buckets/{bucket}/datatypes"
    return base if key is None else f"{base}/{key}"


async def post(c: Client, path: str, op: Any, **params: str) -> Any:
    return await c.post(path, json=op, params=params)


async def fetch(c: Client, path: str, **params: str) -> tuple[int, Any]:
    resp = await c.get(path, params=params)
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


async def value_of(c: Client, path: str) -> Any:
    status, body = await fetch(c, path)
    return body.get("value") if status == 200 else body


# --- op shapes, values and contexts -------------------------------------------------------------


async def test_every_type_takes_riaks_op_shapes_and_answers_its_json(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        for op in ({"increment": 5}, {"decrement": 2}, 10):
            assert (await post(c, url("counters"), op)).status == 204
        assert await fetch(c, url("counters")) == (200, {"type": "counter", "value": 13})

        await post(c, url("sets"), {"add": "a"})
        await post(c, url("sets"), {"add_all": ["b", "c", "d"]})
        await post(c, url("sets"), {"remove": "a"})
        await post(c, url("sets"), {"remove_all": ["b", "c"]})
        status, body = await fetch(c, url("sets"))
        assert status == 200 and body["type"] == "set" and body["value"] == ["d"]
        assert base64.b64decode(body["context"], validate=True)

        await post(c, url("gsets"), {"add_all": ["y", "x"]})
        status, body = await fetch(c, url("gsets"))
        assert body["value"] == ["x", "y"] and "context" in body

        await post(c, url("hlls"), {"add_all": ["p", "q", "p"]})
        await post(c, url("hlls"), {"add": "r"})
        assert await fetch(c, url("hlls")) == (200, {"type": "hll", "value": 3})

        resp = await post(c, url("maps"), {"update": {
            "visits_counter": 3, "name_register": "Ada", "admin_flag": "enable",
            "tags_set": {"add_all": ["x", "y"]},
            "address_map": {"update": {"city_register": "London", "zip_counter": {"increment": 1}}},
        }})
        assert resp.status == 204
        await post(c, url("maps"), {"remove": ["tags_set"], "update": {"admin_flag": "disable"}})
        status, body = await fetch(c, url("maps"))
        assert body["type"] == "map" and "context" in body
        assert body["value"] == {"visits_counter": 3, "name_register": "Ada", "admin_flag": False,
                                 "address_map": {"city_register": "London", "zip_counter": 1}}


async def test_contexts_round_trip_and_a_concurrent_add_survives_a_remove(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        await post(c, url("sets"), {"add_all": ["a", "b"]})
        _, seen = await fetch(c, url("sets"))
        await post(c, url("sets"), {"add": "a"})  # re-added after the fetch: a new dot
        await post(c, url("sets"), {"add": "late"})
        resp = await post(c, url("sets"), {"remove_all": ["a", "b", "late"],
                                           "context": seen["context"]})
        assert resp.status == 204, await resp.text()
        assert await value_of(c, url("sets")) == ["a", "late"]  # what the fetch never saw stays

        await post(c, url("maps"), {"update": {"n_counter": 1, "s_set": {"add": "x"}}})
        _, body = await fetch(c, url("maps"))
        resp = await post(c, url("maps"), {"remove": ["n_counter"], "context": body["context"]})
        assert resp.status == 204
        assert await value_of(c, url("maps")) == {"s_set": ["x"]}


async def test_returnbody_include_context_and_a_generated_key(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        resp = await post(c, url("sets"), {"add": "a"}, returnbody="true")
        assert resp.status == 200
        body = await resp.json()
        assert body["value"] == ["a"] and body["context"]
        resp = await post(c, url("sets"), {"add": "b"}, returnbody="true", include_context="false")
        assert await resp.json() == {"type": "set", "value": ["a", "b"]}
        assert await fetch(c, url("sets"), include_context="false") == (
            200, {"type": "set", "value": ["a", "b"]})

        resp = await post(c, url("counters", None), {"increment": 4})
        assert resp.status == 201
        location = resp.headers["Location"]
        assert location.startswith("/types/counters/buckets/b/datatypes/")
        assert await fetch(c, location) == (200, {"type": "counter", "value": 4})
        resp = await post(c, url("maps", None), {"update": {"r_register": "v"}}, returnbody="true")
        assert resp.status == 201 and resp.headers["Location"]
        assert (await resp.json())["value"] == {"r_register": "v"}


async def test_missing_deleted_and_keyless_fetches_are_riaks_notfound(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        assert await fetch(c, url("sets", "nope")) == (404, {"type": "set", "error": "notfound"})
        assert await fetch(c, url("maps", None)) == (404, {"type": "map", "error": "notfound"})
        await post(c, url("sets"), {"add": "a"})
        assert (await c.head(url("sets"))).status == 200
        assert (await c.delete("/types/sets/buckets/b/keys/k")).status == 204
        resp = await c.get(url("sets"))
        assert resp.status == 404 and resp.headers["X-Riak-Deleted"] == "true"
        assert await resp.json() == {"type": "set", "error": "notfound"}
        await post(c, url("sets"), {"add": "again"})  # writing over the tombstone works
        assert await value_of(c, url("sets")) == ["again"]


async def test_read_and_write_quorum_parameters(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        resp = await post(c, url("sets"), {"add": "a"}, w="all", dw="quorum", pw="1",
                          timeout="5000")
        assert resp.status == 204
        status, body = await fetch(c, url("sets"), r="all", pr="1", basic_quorum="true",
                                   notfound_ok="false", timeout="5000")
        assert status == 200 and body["value"] == ["a"]
        for params in ({"r": "4"}, {"r": "lots"}, {"timeout": "0"}, {"notfound_ok": "maybe"}):
            resp = await c.get(url("sets"), params=params)
            assert resp.status == 400 and (await resp.text()).strip(), params
        for params in ({"w": "4"}, {"pw": "x"}, {"returnbody": "perhaps"}):
            resp = await post(c, url("sets"), {"add": "b"}, **params)
            assert resp.status == 400 and (await resp.text()).strip(), params
        assert await value_of(c, url("sets")) == ["a"]


# --- bad requests change nothing ----------------------------------------------------------------


async def test_bad_ops_are_4xx_with_a_message_and_change_nothing(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        await post(c, url("sets"), {"add": "a"})
        await post(c, url("maps"), {"update": {"n_counter": 1}})
        bad: list[tuple[str, dict[str, Any], int, str]] = [
            (url("sets"), {"json": {"increment": 1}}, 400, "unknown keys"),
            (url("sets"), {"json": {"add": 5}}, 400, "must be a string"),
            (url("sets"), {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
             400, "not valid JSON"),
            (url("sets"), {"data": b"[" * 100_000, "headers": {"Content-Type": "application/json"}},
             400, "not valid JSON"),
            (url("sets"), {"data": b'{"add":"x"}', "headers": {"Content-Type": "text/plain"}},
             415, "application/json"),
            (url("sets"), {"data": b'{"add":"x"}'}, 415, "application/json"),
            (url("sets"), {"json": {"remove": "never-added"}}, 412, "never-added"),
            (url("sets"), {"json": {"add": "x", "context": "%%%"}}, 400, "base64"),
            (url("sets"), {"json": {"remove": "a", "context": "AAAA"}}, 400, "context"),
            (url("gsets"), {"json": {"remove": "a"}}, 400, "unknown keys"),
            (url("counters"), {"json": {"increment": "1"}}, 400, "integer"),
            (url("counters"), {"json": True}, 400, "integer"),
            (url("maps"), {"json": {"update": {"n_widget": 1}}}, 400, "_counter"),
            (url("maps"), {"json": {"remove": ["gone_set"]}}, 412, "gone_set"),
            (url("maps"), {"json": {"update": {"n_counter": {"add": 1}}}}, 400, "counter op"),
            (url("hlls"), {"json": {"add": ["not", "a", "string"]}}, 400, "string"),
        ]
        for path, request, status, message in bad:
            resp = await c.post(path, **request)
            text = await resp.text()
            assert (resp.status, message in text) == (status, True), (request, text)
        assert await value_of(c, url("sets")) == ["a"]
        assert await value_of(c, url("maps")) == {"n_counter": 1}
        assert (await fetch(c, url("gsets")))[0] == 404
        assert (await fetch(c, url("counters")))[0] == 404


async def test_buckets_without_a_datatype_are_refused_clearly(serve: Any) -> None:
    async with serve() as c:
        await make_types(c)
        await make_type(c, "plain", {})
        for path in (url("plain"), url("default")):
            for resp in (await c.get(path), await post(c, path, {"add": "x"})):
                assert resp.status == 400
                assert "no datatype" in await resp.text()
        resp = await c.get(url("nosuchtype"))
        assert resp.status == 404
        resp = await c.put("/types/sets/buckets/b/keys/k", data=b"x",
                           headers={"Content-Type": "text/plain"})
        assert resp.status == 400 and "datatypes" in await resp.text()


# --- legacy counters ----------------------------------------------------------------------------


async def test_legacy_counters_need_allow_mult(serve: Any) -> None:
    async with serve() as c:
        resp = await c.post("/buckets/b/counters/k", data=b"5")
        assert resp.status == 409 and "allow_mult" in await resp.text()
        resp = await c.put("/buckets/b/props", json={"props": {"allow_mult": True}})
        assert resp.status == 204
        assert (await c.post("/buckets/b/counters/k", data=b"5")).status == 204
        resp = await c.post("/buckets/b/counters/k", data=b" -2\n",
                            params={"returnvalue": "true"})
        assert (resp.status, await resp.text()) == (200, "3")
        resp = await c.get("/buckets/b/counters/k")
        assert (resp.status, resp.content_type, await resp.text()) == (200, "text/plain", "3")
        resp = await c.get("/buckets/b/counters/missing")
        assert (resp.status, (await resp.text()).strip()) == (404, "not found")
        for body in (b"", b"five", b"1.5", b"+-5", b"9" * 100):
            resp = await c.post("/buckets/b/counters/k", data=body)
            assert resp.status == 400 and "integer" in await resp.text(), body
        assert await (await c.get("/buckets/b/counters/k")).text() == "3"

        await c.put("/buckets/b/keys/plain", data=b"x", headers={"Content-Type": "text/plain"})
        resp = await c.get("/buckets/b/counters/plain")
        assert resp.status == 409 and "not a counter" in await resp.text()
        resp = await c.get("/types/t/buckets/b/counters/k")
        assert resp.status == 404 and "/datatypes/" in await resp.text()
