"""Secondary index queries over the HTTP API."""

from __future__ import annotations

import re
from typing import Any

TEXT = {"Content-Type": "text/plain"}


async def _load(c: Any, bucket: str = "people") -> None:
    for i in range(10):
        headers = {**TEXT, "X-Riak-Index-age_int": str(20 + i),
                   "X-Riak-Index-name_bin": f"name{i:02d}, alias{i:02d}"}
        resp = await c.put(f"/buckets/{bucket}/keys/p{i:02d}", data=b"{}", headers=headers)
        assert resp.status == 204


async def test_exact_and_range_queries(serve: Any) -> None:
    async with serve() as c:
        await _load(c)
        body = await (await c.get("/buckets/people/index/age_int/25")).json()
        assert body == {"keys": ["p05"]}
        body = await (await c.get("/buckets/people/index/age_int/22/24")).json()
        assert body == {"keys": ["p02", "p03", "p04"]}
        body = await (await c.get("/buckets/people/index/name_bin/alias03/name01",
                                  params={"return_terms": "true"})).json()
        assert body["results"][0] == {"alias03": "p03"}
        assert body["results"][-1] == {"name01": "p01"}
        body = await (await c.get("/types/default/buckets/people/index/age_int/28/99",
                                  params={"return_terms": "true"})).json()
        assert body == {"results": [{"28": "p08"}, {"29": "p09"}]}
        body = await (await c.get("/buckets/people/index/name_bin/a/z",
                                  params={"term_regex": "^name0[12]"})).json()
        assert body == {"keys": ["p01", "p02"]}


async def test_special_fields(serve: Any) -> None:
    async with serve() as c:
        await _load(c)
        body = await (await c.get("/buckets/people/index/$bucket/people")).json()
        assert sorted(body["keys"]) == [f"p{i:02d}" for i in range(10)]
        body = await (await c.get("/buckets/people/index/$key/p03/p05")).json()
        assert body == {"keys": ["p03", "p04", "p05"]}


async def test_pagination_walks_every_result_once(serve: Any) -> None:
    async with serve() as c:
        await _load(c)
        seen: list[str] = []
        params: dict[str, str] = {"max_results": "4"}
        pages = 0
        while True:
            body = await (await c.get("/buckets/people/index/age_int/0/100", params=params)).json()
            seen += body["keys"]
            pages += 1
            if "continuation" not in body:
                break
            params["continuation"] = body["continuation"]
        assert seen == [f"p{i:02d}" for i in range(10)]
        assert pages == 3


async def test_streamed_index_is_multipart(serve: Any) -> None:
    async with serve() as c:
        await _load(c)
        resp = await c.get("/buckets/people/index/age_int/20/29",
                           params={"stream": "true", "max_results": "5"})
        assert resp.headers["Content-Type"].startswith("multipart/mixed; boundary=")
        boundary = resp.headers["Content-Type"].split("boundary=")[1]
        body = await resp.text()
        parts = re.split(r"\r\n--" + re.escape(boundary) + r"(?:--)?\r\n", body)[1:-1]
        payloads = [part.split("\r\n\r\n", 1)[1] for part in parts]
        assert '"keys": ["p00", "p01", "p02", "p03", "p04"]' in payloads[0]
        assert '"continuation"' in payloads[1]


async def test_bad_index_queries(serve: Any) -> None:
    async with serve() as c:
        for url, params in (
            ("/buckets/b/index/age/1", {}),
            ("/buckets/b/index/age_int/abc", {}),
            ("/buckets/b/index/age_int/1/2", {"max_results": "0"}),
            ("/buckets/b/index/age_int/1/2", {"continuation": "@@@"}),
            ("/buckets/b/index/name_bin/a/b", {"term_regex": "("}),
            ("/buckets/b/index/age_int/1/2", {"return_terms": "sure"}),
        ):
            resp = await c.get(url, params=params)
            assert resp.status == 400, (url, params, await resp.text())
        assert (await c.get("/types/nope/buckets/b/index/age_int/1")).status == 404
