"""Secondary index queries: exact and range, $bucket and $key, pagination, streaming.

Answers are ordered by (term, key), so `max_results` pages are stable and `continuation` resumes
right after the last item of the previous page. Without return_terms a key is listed once even
when several of its terms fall in the range.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from sapwood.core.index import IndexQuery, make_query
from sapwood.core.requests import CoverageRequest, CoverageResult
from sapwood.http.guard import guarded
from sapwood.http.headers import HARVEST, harvest_text
from sapwood.http.params import flag, positive_int, timeout_ms
from sapwood.http.paths import bucket_path
from sapwood.http.state import node_of, props_of

CRLF = "\r\n"


def _query(request: web.Request) -> IndexQuery:
    path, match = bucket_path(request), request.match_info
    props_of(node_of(request), path.bucket_type, path.bucket)
    flag(request, "pagination_sort")  # accepted for compatibility: answers are always sorted
    return make_query(
        path.bucket_type, path.bucket, match["field"], match["start"], match.get("end"),
        return_terms=flag(request, "return_terms") or False,
        max_results=positive_int(request, "max_results"),
        continuation=request.query.get("continuation") or None,
        term_regex=request.query.get("term_regex") or None,
    )


def _results(query: IndexQuery, result: CoverageResult) -> dict[str, Any]:
    if query.return_terms:
        # Riak sends every term as a string, _int ones included.
        return {"results": [{str(term): key} for term, key in result.index_results]}
    return {"keys": list(dict.fromkeys(key for _, key in result.index_results))}


def _trailer(result: CoverageResult) -> dict[str, Any]:
    trailer: dict[str, Any] = {}
    if result.continuation is not None:
        trailer["continuation"] = result.continuation
    if result.harvest < 1.0:
        trailer["harvest"] = result.harvest
    return trailer


async def index_query(request: web.Request) -> web.StreamResponse:
    query = _query(request)
    stream = flag(request, "stream") or False
    result: CoverageResult = await node_of(request).request(
        CoverageRequest(query, timeout_ms(request)), op="index")
    headers = {HARVEST: harvest_text(result.harvest)}
    if stream:
        return await _stream(request, [_results(query, result), _trailer(result)], headers)
    body = {**_results(query, result), **_trailer(result)}
    return web.json_response(body, headers=headers)


async def _stream(request: web.Request, parts: list[dict[str, Any]], headers: dict[str, str]
                  ) -> web.StreamResponse:
    """Riak's streamed 2i answer: chunked multipart/mixed, one JSON document per part."""
    boundary = secrets.token_hex(12)
    response = web.StreamResponse(headers={
        **headers, "Content-Type": f"multipart/mixed; boundary={boundary}"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for part in parts:
        if part:
            head = f"{CRLF}--{boundary}{CRLF}Content-Type: application/json{CRLF}{CRLF}"
            await response.write(head.encode() + json.dumps(part).encode())
    await response.write(f"{CRLF}--{boundary}--{CRLF}".encode())
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/types/{type}"):
        base = prefix + "/buckets/{bucket}/index/{field}/{start}"
        app.router.add_route("GET", base, guarded(index_query))
        app.router.add_route("GET", base + "/{end}", guarded(index_query))
