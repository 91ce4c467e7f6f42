"""Buckets: listing buckets and keys (plain or streamed), bucket properties and type properties.

Listing is a full scan of a coverage plan's vnodes, as in Riak: clients must ask for it
explicitly (`?buckets=true`, `?keys=true`, or `=stream` for chunked answers). Every answer says
how much of the ring it covered: the X-Sapwood-Harvest header, and a "harvest" field in the JSON
only when it is below 1.0, so a complete answer stays byte-compatible with Riak's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast

from aiohttp import web

from sapwood.core.errors import BadRequest, SapwoodError
from sapwood.core.requests import (
    CoverageChunk,
    CoverageRequest,
    CoverageResult,
    ListBuckets,
    ListKeys,
)
from sapwood.http.guard import guarded
from sapwood.http.headers import HARVEST, harvest_text
from sapwood.http.params import choice, flag, timeout_ms
from sapwood.http.paths import LEGACY_PREFIX, bucket_path, type_of
from sapwood.http.state import node_of, props_of, sync_metadata

LIST_MODES = ("true", "stream")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _list_mode(request: web.Request, name: str, what: str) -> str:
    mode = choice(request, name, LIST_MODES)
    if mode is None:
        raise BadRequest(f"listing {what} is a full scan: ask for it with ?{name}=true "
                         f"or ?{name}=stream")
    return mode


async def _listing(request: web.Request, query: ListKeys | ListBuckets, field: str, mode: str,
                   extra: dict[str, Any] | None = None) -> web.StreamResponse:
    node = node_of(request)
    coverage = CoverageRequest(query, timeout_ms(request), stream=mode == "stream")
    if not coverage.stream:
        result: CoverageResult = await node.request(coverage, op=f"list_{field}")
        body: dict[str, Any] = {**(extra or {}), field: result.items}
        if result.harvest < 1.0:
            body["harvest"] = result.harvest
        return web.Response(body=_json(body), content_type="application/json",
                            headers={HARVEST: harvest_text(result.harvest)})
    return await _stream(request, coverage, field, extra)


async def _stream(request: web.Request, coverage: CoverageRequest, field: str,
                  extra: dict[str, Any] | None) -> web.StreamResponse:
    """Chunked concatenated JSON objects, as Riak streams them; harvest goes in the last one."""
    node = node_of(request)
    # Node.stream is an async generator (annotated as an iterator): close it even if we stop early.
    answers_gen = cast("AsyncGenerator[Any, None]", node.stream(coverage))
    async with aclosing(answers_gen) as answers:
        items = aiter(answers)
        # Wait for the first answer before committing to 200: early errors keep their status.
        item = await anext(items)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if extra:
            await response.write(_json(extra))
        wrote = False
        try:
            while True:
                if item.items:
                    await response.write(_json({field: item.items}))
                    wrote = True
                if not isinstance(item, CoverageChunk):
                    if item.harvest < 1.0:
                        await response.write(_json({field: [], "harvest": item.harvest}))
                        wrote = True
                    break
                item = await anext(items)
        except SapwoodError as exc:
            await response.write(_json({"error": exc.message}))
            wrote = True
        if not wrote:
            await response.write(_json({field: []}))
        await response.write_eof()
    return response


async def list_buckets(request: web.Request) -> web.StreamResponse:
    mode = _list_mode(request, "buckets", "buckets")
    bucket_type = type_of(request)
    node_of(request).service.metadata.active_type(bucket_type)
    return await _listing(request, ListBuckets(bucket_type), "buckets", mode)


async def list_keys(request: web.Request) -> web.StreamResponse:
    mode = _list_mode(request, "keys", "keys")
    path = bucket_path(request)
    props_of(node_of(request), path.bucket_type, path.bucket)
    return await _listing(request, ListKeys(path.bucket_type, path.bucket), "keys", mode)


# --- bucket properties --------------------------------------------------------------------------


async def get_bucket_props(request: web.Request) -> web.Response:
    path = bucket_path(request)
    return web.json_response({"props": props_of(node_of(request), path.bucket_type, path.bucket)})


async def set_bucket_props(request: web.Request) -> web.Response:
    path, node = bucket_path(request), node_of(request)
    node.service.set_bucket_props(path.bucket_type, path.bucket, await request.read())
    await sync_metadata(node)
    return web.Response(status=204)


async def reset_bucket_props(request: web.Request) -> web.Response:
    path, node = bucket_path(request), node_of(request)
    node.service.reset_bucket_props(path.bucket_type, path.bucket)
    await sync_metadata(node)
    return web.Response(status=204)


async def legacy_bucket(request: web.Request) -> web.StreamResponse:
    """GET /riak/B: the bucket's props, and its keys with ?keys=true|stream (Riak 1.x)."""
    path = bucket_path(request)
    props = {"props": props_of(node_of(request), path.bucket_type, path.bucket)}
    if flag(request, "props") is False:
        props = {}
    mode = choice(request, "keys", (*LIST_MODES, "false"))
    if mode is None or mode == "false":
        return web.json_response(props)
    return await _listing(request, ListKeys(path.bucket_type, path.bucket), "keys", mode, props)


# --- type properties ----------------------------------------------------------------------------


async def get_type_props(request: web.Request) -> web.Response:
    node = node_of(request)
    props = dict(node.service.metadata.type_props(type_of(request)))
    props.setdefault("claimant", node.name)
    return web.json_response({"props": props})


async def set_type_props(request: web.Request) -> web.Response:
    node = node_of(request)
    node.service.update_type(type_of(request), await request.read())
    await sync_metadata(node)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/types/{type}"):
        app.router.add_route("GET", prefix + "/buckets", guarded(list_buckets))
        app.router.add_route("GET", prefix + "/buckets/{bucket}/keys", guarded(list_keys))
        props = app.router.add_resource(prefix + "/buckets/{bucket}/props")
        props.add_route("GET", guarded(get_bucket_props))
        props.add_route("PUT", guarded(set_bucket_props))
        props.add_route("POST", guarded(set_bucket_props))
        props.add_route("DELETE", guarded(reset_bucket_props))
    type_props = app.router.add_resource("/types/{type}/props")
    type_props.add_route("GET", guarded(get_type_props))
    type_props.add_route("PUT", guarded(set_type_props))
    app.router.add_route("GET", LEGACY_PREFIX, guarded(list_buckets))
    legacy = app.router.add_resource(LEGACY_PREFIX + "/{bucket}")
    legacy.add_route("GET", guarded(legacy_bucket))
    legacy.add_route("PUT", guarded(set_bucket_props))
