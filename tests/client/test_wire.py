"""The HTTP client's wire handling, offline: answers are served by an httpx mock transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sapwood
from sapwood.client import wire
from sapwood.client.model import Sibling

CRLF = b"\r\n"
Handler = Callable[[httpx.Request], httpx.Response]


def riak_multipart(parts: list[tuple[list[tuple[str, str]], bytes]], boundary: str) -> bytes:
    """Riak's layout: CRLF--boundary CRLF headers CRLF CRLF value ... CRLF--boundary--CRLF."""
    out = b""
    for headers, body in parts:
        head = b"".join(f"{n}: {v}".encode() + CRLF for n, v in headers)
        out += CRLF + b"--" + boundary.encode() + CRLF + head + CRLF + body
    return out + CRLF + b"--" + boundary.encode() + b"--" + CRLF


def client_for(handler: Handler) -> sapwood.Client:
    http = httpx.Client(base_url="http://node", transport=httpx.MockTransport(handler))
    return sapwood.Client("http://node", http=http)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(
    [b"", b"\r\n", b"--", b"\r\n--\r\n", b"\n\n"]), min_size=1, max_size=5))
def test_multipart_values_come_back_byte_exact(values: list[bytes]) -> None:
    boundary = "b0UNDARYxyz"
    parts = [([("Content-Type", "application/octet-stream"), ("Etag", f"v{i}")], value)
             for i, value in enumerate(values)]
    parsed = wire.parse_multipart(f"multipart/mixed; boundary={boundary}",
                                  riak_multipart(parts, boundary))
    assert [body for _, body in parsed] == values
    assert [dict(h)["Etag"] for h, _ in parsed] == [f"v{i}" for i in range(len(values))]


def test_a_part_carries_the_sibling_metadata() -> None:
    headers = [
        ("Content-Type", "text/plain; charset=latin-1"),
        ("Link", '</buckets/b>; rel="up", </buckets/b/keys/o%20k>; riaktag="fr%20iend"'),
        ("Etag", "3vtag"), ("Last-Modified", "Wed, 10 Mar 2010 18:11:41 GMT"),
        ("X-Riak-Meta-Colour", "green"), ("X-Riak-Index-age_int", "7, 9"),
        ("X-Riak-Index-name_bin", "a"), ("X-Riak-Deleted", "true"),
    ]
    sibling = wire.sibling_from_headers(headers, "caf\xe9".encode("latin-1"))
    assert sibling.data == "café" and sibling.charset == "latin-1"
    assert sibling.links == [("b", "o k", "fr iend")]
    assert sibling.vtag == "3vtag" and sibling.last_modified is not None
    assert sibling.usermeta == {"Colour": "green"}
    assert sibling.indexes == {("age_int", 7), ("age_int", 9), ("name_bin", "a")}
    assert sibling.deleted


def test_request_headers_describe_the_value() -> None:
    content = Sibling(b"v", "text/plain", "utf-8", usermeta={"K": "v"},
                      indexes={("x_bin", "a"), ("x_bin", "b")}, links=[("b", "k", "t")])
    headers = {name: value for name, value in wire.sibling_headers(content)}
    assert headers["Content-Type"] == b"text/plain; charset=utf-8"
    assert headers["X-Riak-Meta-K"] == b"v"
    assert set(headers["X-Riak-Index-x_bin"].split(b", ")) == {b"a", b"b"}
    assert headers["Link"] == b'</buckets/b/keys/k>; riaktag="t"'


@pytest.mark.parametrize("content", [
    Sibling(b"", indexes={("x_bin", "a,b")}),
    Sibling(b"", usermeta={"bad name": "v"}),
    Sibling(b"", usermeta={"k": "line\r\nbreak"}),
])
def test_what_http_headers_cannot_carry_is_refused(content: Sibling) -> None:
    with pytest.raises(sapwood.BadRequest):
        wire.sibling_headers(content)


def test_siblings_arrive_as_multipart_and_resolve() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            body = riak_multipart([
                ([("Content-Type", "application/json"), ("Etag", "a"),
                  ("Last-Modified", "Wed, 10 Mar 2010 18:11:41 GMT")], b'{"n": 1}'),
                ([("Content-Type", "application/json"), ("Etag", "b"),
                  ("Last-Modified", "Wed, 10 Mar 2010 18:11:42 GMT")], b'{"n": 2}'),
            ], "XyZ")
            return httpx.Response(300, content=body, headers={
                "Content-Type": "multipart/mixed; boundary=XyZ", "X-Riak-Vclock": "ctx1"})
        return httpx.Response(204)

    with client_for(handler) as client:
        bucket = client.bucket("b", type="t")
        obj = bucket.get("k")
        assert [s.data for s in obj.siblings] == [{"n": 1}, {"n": 2}]
        assert obj.context == "ctx1"
        assert "multipart/mixed" in seen[0].headers["Accept"]
        assert seen[0].url.path == "/types/t/buckets/b/keys/k"
        with pytest.raises(sapwood.SiblingsError):
            _ = obj.data
        obj.resolve(sapwood.last_write_wins)
        obj.store(return_body=False)
    put = seen[-1]
    assert put.method == "PUT" and put.headers["X-Riak-Vclock"] == "ctx1"
    assert json.loads(put.content) == {"n": 2}


def test_not_found_tombstones_and_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.url.path.rsplit("/", 1)[-1]
        if key == "missing":
            return httpx.Response(404, text="not found\n")
        if key == "deleted":
            return httpx.Response(404, text="not found\n",
                                  headers={"X-Riak-Deleted": "true", "X-Riak-Vclock": "tomb"})
        if key == "badtype":
            return httpx.Response(404, text="unknown bucket type 'x'\n")
        if key == "busy":
            return httpx.Response(503, text="R-value unsatisfied: 1/2\n")
        return httpx.Response(418, text="teapot\n")

    with client_for(handler) as client:
        bucket = client.bucket("b")
        assert not bucket.get("missing").exists and bucket.get("missing").context is None
        assert bucket.get("deleted").context == "tomb"
        assert bucket.delete("missing") is False
        with pytest.raises(sapwood.NotFound, match="unknown bucket type"):
            bucket.get("badtype")
        with pytest.raises(sapwood.Unavailable, match="R-value unsatisfied"):
            bucket.get("busy")
        with pytest.raises(sapwood.SapwoodError) as raised:
            bucket.get("odd")
        assert raised.value.status == 418 and raised.value.message == "teapot"


def test_a_created_key_is_read_from_location() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/buckets/b/keys"
        return httpx.Response(201, headers={"Location": "/buckets/b/keys/gen%2Fkey"})

    with client_for(handler) as client:
        obj = client.bucket("b").new(data="v").store(return_body=False)
    assert obj.key == "gen/key"


def test_index_results_and_continuations() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/buckets/b/index/age_int/1/9"
        assert request.url.params["max_results"] == "2"
        if request.url.params.get("continuation") == "c1":
            return httpx.Response(200, json={"results": [{"5": "k3"}]})
        return httpx.Response(200, json={"results": [{"1": "k1"}, {"3": "k2"}],
                                         "continuation": "c1"})

    with client_for(handler) as client:
        pages = list(client.bucket("b").paginate_index("age_int", 1, 9, page_size=2,
                                                       return_terms=True))
    assert [p.terms for p in pages] == [[(1, "k1"), (3, "k2")], [(5, "k3")]]


def test_an_unreachable_node_is_unavailable_and_does_not_answer_pings() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = client_for(handler)
    assert client.ping() is False
    with pytest.raises(sapwood.Unavailable, match="cannot reach"):
        client.bucket("b").get("k")
    client.close()
    with pytest.raises(sapwood.ClosedError):
        client.bucket("b").get("k")


def test_the_async_client_has_the_same_surface() -> None:
    stored: dict[str, tuple[bytes, str]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(200, text="OK")
        if request.method == "PUT":
            stored[request.url.path] = (request.content, request.headers["Content-Type"])
            return httpx.Response(204)
        value, ctype = stored[request.url.path]
        return httpx.Response(200, content=value, headers={
            "Content-Type": ctype, "X-Riak-Vclock": "c"})

    async def scenario() -> None:
        http = httpx.AsyncClient(base_url="http://node", transport=httpx.MockTransport(handler))
        async with sapwood.AsyncClient("http://node", http=http) as client:
            assert await client.ping()
            bucket = client.bucket("b")
            await bucket.new("k", {"a": 1}).store(return_body=False)
            obj = await bucket.get("k")
            assert obj.data == {"a": 1} and obj.context == "c"

    asyncio.run(scenario())
