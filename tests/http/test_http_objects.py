"""Objects over the HTTP API: fetch, store, delete, siblings, conditional requests, bad input."""

from __future__ import annotations

import email
import re
from email.message import Message
from typing import Any

from aiohttp.test_utils import TestClient

from sapwood.core.limits import MAX_OBJECT_BYTES, MAX_SIBLINGS

TEXT = {"Content-Type": "text/plain"}
MULTIPART_ACCEPT = {"Accept": "multipart/mixed, application/json, */*;q=0.5"}


async def make_allow_mult_type(client: TestClient[Any, Any], name: str = "mult") -> None:
    resp = await client.post(f"/admin/bucket-types/{name}", json={"props": {}})
    assert resp.status == 201, await resp.text()
    resp = await client.post(f"/admin/bucket-types/{name}/activate")
    assert resp.status == 200


def parse_multipart(content_type: str, body: bytes) -> list[Message]:
    boundary = re.search(r"boundary=([^;]+)", content_type)
    assert boundary is not None
    pattern = re.compile(rb"\r?\n--" + re.escape(boundary.group(1).encode()) + rb"(?:--)?\r?\n")
    return [email.message_from_bytes(part) for part in pattern.split(body)[1:-1]]


async def test_store_fetch_delete(serve: Any) -> None:
    async with serve() as c:
        resp = await c.put("/buckets/b/keys/k", data=b"hello", headers=TEXT)
        assert resp.status == 204
        resp = await c.get("/buckets/b/keys/k")
        assert resp.status == 200
        assert await resp.read() == b"hello"
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.headers["Link"] == '</buckets/b>; rel="up"'
        assert resp.headers["ETag"].startswith('"')
        assert resp.headers["Last-Modified"].endswith(" GMT")
        assert resp.headers["X-Riak-Vclock"]
        resp = await c.delete("/buckets/b/keys/k")
        assert resp.status == 204
        resp = await c.get("/buckets/b/keys/k")
        assert resp.status == 404
        assert await resp.text() == "not found\n"
        assert resp.headers["X-Riak-Deleted"] == "true"
        assert resp.headers["X-Riak-Vclock"]
        assert (await c.delete("/buckets/b/keys/never")).status == 404
        assert (await c.get("/buckets/b/keys/never")).status == 404


async def test_head_and_legacy_and_typed_urls_reach_the_same_objects(serve: Any) -> None:
    async with serve() as c:
        await c.put("/riak/b/k%2Fslash", data=b"v", headers=TEXT)
        resp = await c.get("/buckets/b/keys/k%2Fslash")
        assert await resp.read() == b"v"
        resp = await c.get("/types/default/buckets/b/keys/k%2Fslash")
        assert await resp.read() == b"v"
        resp = await c.get("/riak/b/k%2Fslash")
        assert resp.headers["Link"] == '</riak/b>; rel="up"'
        resp = await c.head("/buckets/b/keys/k%2Fslash")
        assert resp.status == 200


async def test_metadata_round_trips(serve: Any) -> None:
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Content-Encoding": "gzip",
        "X-Riak-Meta-Color": "blue, green",
        "X-Riak-Index-Email_bin": "a@x.org, b@x.org",
        "X-Riak-Index-age_int": "42",
        "Link": ('</buckets/people/keys/bob>; riaktag="friend", '
                 '</riak/people/al%20x>; riaktag="boss"'),
    }
    async with serve() as c:
        body = bytes(range(256))
        resp = await c.put("/buckets/b/keys/k", data=body, headers=headers)
        assert resp.status == 204, await resp.text()
        resp = await c.get("/buckets/b/keys/k", auto_decompress=False)
        assert await resp.read() == body
        assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["X-Riak-Meta-Color"] == "blue, green"
        assert resp.headers["X-Riak-Index-email_bin"] == "a@x.org, b@x.org"
        assert resp.headers["X-Riak-Index-age_int"] == "42"
        assert resp.headers["Link"] == (
            '</buckets/b>; rel="up", </buckets/people/keys/bob>; riaktag="friend", '
            '</buckets/people/keys/al%20x>; riaktag="boss"'
        )


async def test_unicode_key_and_value(serve: Any) -> None:
    async with serve() as c:
        value = "héllo wörld ✓".encode()
        resp = await c.put("/buckets/b%C3%A9/keys/cl%C3%A9", data=value,
                           headers={"Content-Type": "text/plain; charset=utf-8"})
        assert resp.status == 204
        resp = await c.get("/buckets/bé/keys/clé")
        assert await resp.read() == value
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        resp = await c.get("/buckets/bé/keys?keys=true")
        assert (await resp.json())["keys"] == ["clé"]


async def test_siblings_text_and_multipart_then_resolve(serve: Any) -> None:
    async with serve() as c:
        await make_allow_mult_type(c)
        url = "/types/mult/buckets/b/keys/k"
        await c.put(url, data=b"v0", headers=TEXT)
        stale = (await c.get(url)).headers["X-Riak-Vclock"]
        for i in range(1, 4):
            resp = await c.put(url, data=f"v{i}".encode(),
                               headers={**TEXT, "X-Riak-Vclock": stale, "X-Riak-Meta-N": str(i)})
            assert resp.status == 204
        resp = await c.get(url)
        assert resp.status == 300
        text = await resp.text()
        assert text.startswith("Siblings:\n") and len(text.splitlines()) == 4
        resp = await c.get(url, headers=MULTIPART_ACCEPT)
        assert resp.status == 300
        parts = parse_multipart(resp.headers["Content-Type"], await resp.read())
        assert sorted(p.get_payload() for p in parts) == ["v1", "v2", "v3"]
        assert all(p["Link"] == '</buckets/b>; rel="up"' for p in parts)
        assert sorted(p["X-Riak-Meta-N"] for p in parts) == ["1", "2", "3"]
        vtag = parts[0]["Etag"]
        resp = await c.get(url, params={"vtag": vtag})
        assert resp.status == 200 and await resp.text() == parts[0].get_payload()
        assert (await c.get(url, params={"vtag": "nope"})).status == 404
        context = resp.headers["X-Riak-Vclock"]
        resp = await c.put(url, data=b"merged", params={"returnbody": "true"},
                           headers={**TEXT, "X-Riak-Vclock": context})
        assert resp.status == 200 and await resp.read() == b"merged"
        resp = await c.get(url)
        assert resp.status == 200 and await resp.read() == b"merged"


async def test_returnbody_with_siblings_is_300(serve: Any) -> None:
    async with serve() as c:
        await make_allow_mult_type(c)
        url = "/types/mult/buckets/b/keys/k"
        await c.put(url, data=b"a", headers=TEXT)
        resp = await c.put(url, data=b"b", params={"returnbody": "true"},
                           headers={**TEXT, **MULTIPART_ACCEPT})
        assert resp.status == 300
        parts = parse_multipart(resp.headers["Content-Type"], await resp.read())
        assert sorted(p.get_payload() for p in parts) == ["a", "b"]


async def test_tombstone_sibling_is_marked_in_multipart(serve: Any) -> None:
    async with serve() as c:
        await make_allow_mult_type(c)
        url = "/types/mult/buckets/b/keys/k"
        await c.put(url, data=b"a", headers=TEXT)
        context = (await c.get(url)).headers["X-Riak-Vclock"]
        await c.put(url, data=b"b", headers=TEXT)  # concurrent with the delete below
        await c.delete(url, headers={"X-Riak-Vclock": context})
        resp = await c.get(url, headers=MULTIPART_ACCEPT)
        assert resp.status == 300
        parts = parse_multipart(resp.headers["Content-Type"], await resp.read())
        deleted = [p for p in parts if p["X-Riak-Deleted"] == "true"]
        assert len(parts) == 2 and len(deleted) == 1


async def test_allow_mult_false_resolves_to_the_newest(serve: Any) -> None:
    async with serve() as c:
        for value in (b"one", b"two", b"three"):
            await c.put("/buckets/b/keys/k", data=value, headers=TEXT)
        resp = await c.get("/buckets/b/keys/k", headers=MULTIPART_ACCEPT)
        assert resp.status == 200 and await resp.read() == b"three"


async def test_post_generates_a_key(serve: Any) -> None:
    async with serve() as c:
        resp = await c.post("/buckets/b/keys", data=b"x", headers=TEXT)
        assert resp.status == 201
        location = resp.headers["Location"]
        assert location.startswith("/buckets/b/keys/")
        assert await (await c.get(location)).read() == b"x"
        resp = await c.post("/riak/b", data=b"y", headers=TEXT)
        assert resp.status == 201 and resp.headers["Location"].startswith("/riak/b/")
        resp = await c.post("/types/default/buckets/b/keys", data=b"z", headers=TEXT,
                            params={"returnbody": "true"})
        assert resp.status == 201 and await resp.read() == b"z"
        assert resp.headers["Location"].startswith("/types/default/buckets/b/keys/")


async def test_conditional_reads(serve: Any) -> None:
    async with serve() as c:
        await c.put("/buckets/b/keys/k", data=b"v", headers=TEXT)
        first = await c.get("/buckets/b/keys/k")
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
        resp = await c.get("/buckets/b/keys/k", headers={"If-None-Match": etag})
        assert resp.status == 304
        resp = await c.get("/buckets/b/keys/k", headers={"If-Modified-Since": modified})
        assert resp.status == 304
        resp = await c.get("/buckets/b/keys/k", headers={"If-None-Match": '"other"'})
        assert resp.status == 200
        resp = await c.get("/buckets/b/keys/k", headers={"If-Match": '"other"'})
        assert resp.status == 412


async def test_conditional_writes(serve: Any) -> None:
    async with serve() as c:
        url = "/buckets/b/keys/k"
        assert (await c.put(url, data=b"1", headers={**TEXT, "If-Match": "*"})).status == 412
        assert (await c.get(url)).status == 404
        assert (await c.put(url, data=b"1", headers={**TEXT, "If-None-Match": "*"})).status == 204
        assert (await c.put(url, data=b"2", headers={**TEXT, "If-None-Match": "*"})).status == 412
        etag = (await c.get(url)).headers["ETag"]
        resp = await c.put(url, data=b"2", headers={**TEXT, "If-Match": '"stale"'})
        assert resp.status == 412 and "If-Match" in await resp.text()
        assert (await c.put(url, data=b"2", headers={**TEXT, "If-Match": etag})).status == 204
        old = "Thu, 01 Jan 2004 00:00:00 GMT"
        resp = await c.put(url, data=b"3", headers={**TEXT, "If-Unmodified-Since": old})
        assert resp.status == 412
        future = "Fri, 01 Jan 2100 00:00:00 GMT"
        resp = await c.put(url, data=b"3", headers={**TEXT, "If-Modified-Since": future})
        assert resp.status == 412
        assert await (await c.get(url)).read() == b"2"


async def test_bad_store_requests_store_nothing(serve: Any) -> None:
    cases: list[tuple[dict[str, str], dict[str, str], str]] = [
        ({}, {}, "Content-Type"),
        (TEXT | {"X-Riak-Vclock": "!!not-base64!!"}, {}, "malformed causal context"),
        (TEXT | {"X-Riak-Index-foo_txt": "x"}, {}, "_bin or _int"),
        (TEXT | {"X-Riak-Index-age_int": "forty"}, {}, "not an integer"),
        (TEXT | {"Link": "<nowhere>"}, {}, "Link"),
        (TEXT, {"w": "lots"}, "w must be"),
        (TEXT, {"w": "4"}, "greater than n_val"),
        (TEXT, {"dw": "-1"}, "dw must be at least"),
        (TEXT, {"timeout": "soon"}, "timeout"),
        (TEXT, {"returnbody": "maybe"}, "returnbody"),
    ]
    async with serve() as c:
        for headers, params, message in cases:
            resp = await c.put("/buckets/b/keys/k", data=b"v", headers=headers, params=params,
                               skip_auto_headers={"Content-Type"})
            assert resp.status == 400, (headers, params, await resp.text())
            assert message in await resp.text()
        assert (await c.get("/buckets/b/keys/k")).status == 404


async def test_bad_fetch_and_delete_parameters(serve: Any) -> None:
    async with serve() as c:
        for params in ({"r": "4"}, {"r": "many"}, {"pr": "5"}, {"notfound_ok": "perhaps"}):
            resp = await c.get("/buckets/b/keys/k", params=params)
            assert resp.status == 400, params
        assert (await c.delete("/buckets/b/keys/k", params={"rw": "9"})).status == 400
        resp = await c.get("/types/nope/buckets/b/keys/k")
        assert resp.status == 404 and "nope" in await resp.text()


async def test_too_many_siblings_is_refused(serve: Any) -> None:
    async with serve() as c:
        await make_allow_mult_type(c)
        url = "/types/mult/buckets/b/keys/k"
        for i in range(MAX_SIBLINGS):
            assert (await c.put(url, data=str(i).encode(), headers=TEXT)).status == 204
        resp = await c.put(url, data=b"one too many", headers=TEXT)
        assert resp.status == 409 and "siblings" in await resp.text()
        resp = await c.get(url)
        assert resp.status == 300
        assert len((await resp.text()).splitlines()) == MAX_SIBLINGS + 1


async def test_objects_over_the_limit_are_refused(serve: Any) -> None:
    async with serve() as c:
        big = b"x" * (MAX_OBJECT_BYTES + 1)

        async def chunked() -> Any:
            for start in range(0, len(big), 1 << 20):
                yield big[start:start + (1 << 20)]

        resp = await c.put("/buckets/b/keys/big", data=chunked(), headers=TEXT)
        assert resp.status == 413 and str(MAX_OBJECT_BYTES) in await resp.text()
        assert (await c.get("/buckets/b/keys/big")).status == 404


async def test_preflist(serve: Any) -> None:
    async with serve() as c:
        resp = await c.get("/types/default/buckets/b/keys/k/preflist")
        preflist = (await resp.json())["preflist"]
        assert len(preflist) == 3
        assert all(e["primary"] and e["node"] == "sapwood@127.0.0.1" for e in preflist)
        assert len({e["partition"] for e in preflist}) == 3
