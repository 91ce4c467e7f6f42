"""The Riak HTTP API of a real `sapwood start` process, over real HTTP."""

from __future__ import annotations

import asyncio
import email
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any

import httpx
import pytest

from sapwood.core.limits import MAX_OBJECT_BYTES, MAX_SIBLINGS

pytestmark = pytest.mark.integration

TEXT = {"Content-Type": "text/plain"}
MULTIPART = {"Accept": "multipart/mixed, application/json, */*;q=0.5"}
ALLOW_MULT_TYPE = "siblings"


@pytest.fixture(scope="module")
def node(module_node_factory: Callable[..., Any]) -> Any:
    node = module_node_factory()
    with httpx.Client(base_url=node.url) as c:
        created = c.post(f"/admin/bucket-types/{ALLOW_MULT_TYPE}", json={"props": {}})
        assert created.status_code == 201
        assert c.post(f"/admin/bucket-types/{ALLOW_MULT_TYPE}/activate").status_code == 200
    return node


@pytest.fixture
def http(node: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30.0) as client:
        yield client


def parts_of(resp: httpx.Response) -> list[Message]:
    boundary = re.search(r"boundary=([^;]+)", resp.headers["content-type"])
    assert boundary is not None
    pattern = rb"\r?\n--" + re.escape(boundary.group(1).encode()) + rb"(?:--)?\r?\n"
    return [email.message_from_bytes(p) for p in re.split(pattern, resp.content)[1:-1]]


def test_store_fetch_delete(http: httpx.Client) -> None:
    assert http.put("/buckets/b/keys/k", content=b"v1", headers=TEXT).status_code == 204
    resp = http.get("/buckets/b/keys/k")
    assert (resp.status_code, resp.content) == (200, b"v1")
    assert resp.headers["content-type"] == "text/plain"
    assert http.delete("/buckets/b/keys/k").status_code == 204
    resp = http.get("/buckets/b/keys/k")
    assert resp.status_code == 404 and resp.headers["x-riak-deleted"] == "true"
    assert http.delete("/buckets/b/keys/missing").status_code == 404


def test_curl_style_usage(node: Any) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    url = f"{node.url}/buckets/test/keys/hello"
    subprocess.run([curl, "-sS", "-XPUT", "-H", "Content-Type: text/plain", "-d", "hello", url],
                   check=True, capture_output=True)
    fetched = subprocess.run([curl, "-sS", url], check=True, capture_output=True)
    assert fetched.stdout == b"hello"


def test_five_siblings_then_resolved(http: httpx.Client) -> None:
    url = f"/types/{ALLOW_MULT_TYPE}/buckets/b/keys/five"
    http.put(url, content=b"start", headers=TEXT)
    stale = http.get(url).headers["x-riak-vclock"]
    for i in range(5):
        resp = http.put(url, content=f"w{i}".encode(), headers={**TEXT, "X-Riak-Vclock": stale})
        assert resp.status_code == 204
    resp = http.get(url, headers=MULTIPART)
    assert resp.status_code == 300
    assert sorted(p.get_payload() for p in parts_of(resp)) == [f"w{i}" for i in range(5)]
    text = http.get(url).text
    assert text.startswith("Siblings:\n") and len(text.splitlines()) == 6
    resolved = http.put(url, content=b"one", params={"returnbody": "true"},
                        headers={**TEXT, "X-Riak-Vclock": resp.headers["x-riak-vclock"]})
    assert (resolved.status_code, resolved.content) == (200, b"one")
    resp = http.get(url)
    assert (resp.status_code, resp.content) == (200, b"one")


def test_usermeta_unicode_and_binary_round_trip(http: httpx.Client) -> None:
    binary = bytes(range(256)) * 4
    headers = {"Content-Type": "application/octet-stream", "X-Riak-Meta-Owner": "ada",
               "X-Riak-Meta-Note": "two words"}
    assert http.put("/buckets/b/keys/bin", content=binary, headers=headers).status_code == 204
    resp = http.get("/buckets/b/keys/bin")
    assert resp.content == binary
    assert (resp.headers["x-riak-meta-owner"], resp.headers["x-riak-meta-note"]) == (
        "ada", "two words")
    text = "naïve café — 日本語 ✓"
    resp = http.put("/buckets/%C3%BCml/keys/%E6%97%A5", content=text.encode(),
                    headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status_code == 204
    resp = http.get("/buckets/üml/keys/日")
    assert resp.text == text and resp.headers["content-type"] == "text/plain; charset=utf-8"


def test_secondary_indexes_with_pagination(http: httpx.Client) -> None:
    for i in range(12):
        headers = {**TEXT, "X-Riak-Index-score_int": str(i * 10),
                   "X-Riak-Index-city_bin": "paris" if i % 2 else "oslo"}
        http.put(f"/buckets/idx/keys/k{i:02d}", content=b"x", headers=headers)
    assert http.get("/buckets/idx/index/city_bin/oslo").json()["keys"] == [
        f"k{i:02d}" for i in range(0, 12, 2)]
    keys: list[str] = []
    params: dict[str, Any] = {"max_results": 5, "return_terms": "true"}
    while True:
        body = http.get("/buckets/idx/index/score_int/0/1000", params=params).json()
        keys += [key for result in body["results"] for key in result.values()]
        if "continuation" not in body:
            break
        params["continuation"] = body["continuation"]
    assert keys == [f"k{i:02d}" for i in range(12)]


def test_bucket_props_read_set_reset(http: httpx.Client) -> None:
    assert http.get("/buckets/p/props").json()["props"]["allow_mult"] is False
    resp = http.put("/buckets/p/props", json={"props": {"allow_mult": True, "r": "one"}})
    assert resp.status_code == 204
    props = http.get("/buckets/p/props").json()["props"]
    assert (props["allow_mult"], props["r"]) == (True, "one")
    assert http.delete("/buckets/p/props").status_code == 204
    props = http.get("/buckets/p/props").json()["props"]
    assert (props["allow_mult"], props["r"]) == (False, "quorum")


def test_list_keys(http: httpx.Client) -> None:
    for i in range(7):
        http.put(f"/buckets/listme/keys/k{i}", content=b"x", headers=TEXT)
    resp = http.get("/buckets/listme/keys", params={"keys": "true"})
    assert sorted(resp.json()["keys"]) == [f"k{i}" for i in range(7)]
    assert resp.headers["x-sapwood-harvest"] == "1.0"
    streamed = http.get("/buckets/listme/keys", params={"keys": "stream"}).text
    assert sorted(re.findall(r'"(k\d)"', streamed)) == [f"k{i}" for i in range(7)]
    assert http.get("/buckets/listme/keys").status_code == 400


BAD_WRITES = [
    ({}, {}, "Content-Type"),
    ({**TEXT, "X-Riak-Vclock": "not a clock"}, {}, "X-Riak-Vclock"),
    (TEXT, {"w": "plenty"}, "w must be"),
    (TEXT, {"w": "4"}, "greater than n_val"),
    ({**TEXT, "X-Riak-Index-nosuffix": "x"}, {}, "_bin or _int"),
    ({**TEXT, "X-Riak-Index-n_int": "1.5"}, {}, "not an integer"),
]


@pytest.mark.parametrize(("headers", "params", "message"), BAD_WRITES)
def test_bad_writes_are_refused_and_store_nothing(http: httpx.Client, headers: dict[str, str],
                                                  params: dict[str, str], message: str) -> None:
    resp = http.put("/buckets/bad/keys/k", content=b"v", headers=headers, params=params)
    assert resp.status_code == 400 and message in resp.text
    assert http.get("/buckets/bad/keys/k").status_code == 404


def test_bad_reads_props_and_types(http: httpx.Client) -> None:
    assert http.get("/buckets/b/keys/k", params={"r": "5"}).status_code == 400
    assert http.get("/buckets/b/keys/k", params={"pr": "often"}).status_code == 400
    resp = http.put("/buckets/b/props", content=b"{nope",
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.text
    resp = http.put(f"/types/{ALLOW_MULT_TYPE}/props", json={"props": {"consistent": True}})
    assert resp.status_code == 400 and "cannot be changed" in resp.text
    assert http.get("/types/unknown/props").status_code == 404
    resp = http.put("/types/unknown/buckets/b/keys/k", content=b"v", headers=TEXT)
    assert resp.status_code == 404 and "unknown" in resp.text
    assert http.get("/buckets/b/index/bad/1").status_code == 400


def test_objects_over_the_size_limit_are_refused(http: httpx.Client) -> None:
    body = b"x" * (MAX_OBJECT_BYTES + 1024 * 1024)
    resp = http.put("/buckets/b/keys/huge", content=body, headers=TEXT)
    assert resp.status_code == 413 and str(MAX_OBJECT_BYTES) in resp.text
    assert http.get("/buckets/b/keys/huge").status_code == 404


def test_too_many_concurrent_siblings(node: Any, http: httpx.Client) -> None:
    url = f"/types/{ALLOW_MULT_TYPE}/buckets/b/keys/crowded"

    async def write_all() -> list[int]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=node.url, limits=limits, timeout=60.0) as client:
            responses = await asyncio.gather(*(
                client.put(url, content=f"w{i}".encode(), headers=TEXT)
                for i in range(MAX_SIBLINGS + 1)))
        return [r.status_code for r in responses]

    statuses = asyncio.run(write_all())
    assert sorted(statuses) == [204] * MAX_SIBLINGS + [409]
    resp = http.get(url)
    assert resp.status_code == 300
    assert len(resp.text.splitlines()) == MAX_SIBLINGS + 1


def test_restart_keeps_acknowledged_writes(node_factory: Callable[..., Any]) -> None:
    node = node_factory()
    with httpx.Client(base_url=node.url) as c:
        assert c.put("/buckets/b/keys/k", content=b"kept", headers=TEXT).status_code == 204
    old_pid = node.pid
    assert node.stop() == 0
    assert "listening on http://127.0.0.1:" in node.log()
    node.restart()
    assert node.pid != old_pid
    assert httpx.get(node.url + "/buckets/b/keys/k").content == b"kept"
    node.kill9()
    assert not node.running
    node.restart()
    assert httpx.get(node.url + "/buckets/b/keys/k").content == b"kept"


def test_a_taken_port_is_a_clear_startup_error(node: Any, node_factory: Callable[..., Any]
                                               ) -> None:
    with pytest.raises(RuntimeError, match="cannot listen"):
        node_factory(name="second@127.0.0.1", port=node.port)
