"""Objects: fetch (GET/HEAD), store (PUT/POST), delete, and a key's preference list.

Routes exist in three forms (typed, default type, legacy /riak); the handlers see the same
BucketPath either way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from sapwood.core.causal import decode_context, encode_context
from sapwood.core.errors import NotFound, TooLarge
from sapwood.core.kvobject import KVObject, Sibling
from sapwood.core.limits import MAX_OBJECT_BYTES
from sapwood.core.requests import (
    DeleteRequest,
    GetRequest,
    GetResult,
    PutRequest,
    PutResult,
    Quorum,
)
from sapwood.core.service import check_bkey
from sapwood.http.conditional import ReadOutcome, check_read, check_write, has_conditions
from sapwood.http.guard import guarded
from sapwood.http.headers import DELETED, VCLOCK, http_date, metadata_from_request
from sapwood.http.params import flag, quorum, timeout_ms
from sapwood.http.paths import LEGACY_PREFIX, BucketPath, bucket_path, key_of
from sapwood.http.siblings import object_response, single_response
from sapwood.http.state import node_of, props_of, visible
from sapwood.node.node import Node

GENERATED_KEY_BYTES = 20
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_key() -> str:
    """A random key for POST without one: base62 of 160 random bits, like Riak's."""
    n = int.from_bytes(secrets.token_bytes(GENERATED_KEY_BYTES), "big")
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out)) or "0"


# --- fetch --------------------------------------------------------------------------------------


def _get_request(request: web.Request, path: BucketPath, key: str) -> GetRequest:
    if not request.query_string:
        return GetRequest(path.bkey(key))  # every parameter absent: the bucket's own values
    return GetRequest(
        path.bkey(key), r=quorum(request, "r"), pr=quorum(request, "pr"),
        basic_quorum=flag(request, "basic_quorum"), notfound_ok=flag(request, "notfound_ok"),
        timeout_ms=timeout_ms(request),
    )


def tombstone_response(obj: KVObject) -> web.Response:
    """404 for a deleted key, with the tombstone's context so a client can write over it."""
    headers = {DELETED: "true", VCLOCK: encode_context(obj.clock)}
    return web.Response(status=404, text="not found\n", headers=headers)


def not_modified_response(obj: KVObject) -> web.Response:
    headers = CIMultiDict({VCLOCK: encode_context(obj.clock)})
    newest = max(obj.siblings, key=lambda s: s.meta.last_modified_ms)
    headers["Last-Modified"] = http_date(newest.meta.last_modified_ms)
    if len(obj.siblings) == 1:
        headers["ETag"] = f'"{obj.siblings[0].meta.vtag}"'
    return web.Response(status=304, headers=headers)


def _sibling_by_vtag(obj: KVObject, vtag: str) -> Sibling:
    for sibling in obj.siblings:
        if sibling.meta.vtag == vtag:
            return sibling
    raise NotFound("not found")


async def fetch_object(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    result: GetResult = await node.request(_get_request(request, path, key), op="get")
    obj = visible(node, path.bucket_type, path.bucket, result.obj)
    if obj is None:
        raise NotFound("not found")
    if obj.is_tombstone:
        return tombstone_response(obj)
    vtag = request.query.get("vtag") if request.query_string else None
    if vtag is not None:
        sibling = _sibling_by_vtag(obj, vtag)
        if sibling.meta.deleted:
            return tombstone_response(obj)
        return single_response(path, obj, sibling)
    headers = request.headers
    if has_conditions(headers) and check_read(headers, obj) is ReadOutcome.NOT_MODIFIED:
        return not_modified_response(obj)
    if len(obj.siblings) == 1:
        return single_response(path, obj, obj.siblings[0])
    return object_response(path, obj, headers.get("Accept"))


async def current_object(node: Node, path: BucketPath, key: str) -> KVObject | None:
    """The live object a conditional write is checked against (None: absent or deleted)."""
    result: GetResult = await node.request(GetRequest(path.bkey(key)), op="get")
    obj = visible(node, path.bucket_type, path.bucket, result.obj)
    return None if obj is None or obj.is_tombstone else obj


# --- store --------------------------------------------------------------------------------------


def _check_declared_length(request: web.Request) -> None:
    # Refuse before reading: the client learns at once, and nothing is buffered.
    length = request.content_length
    if length is not None and length > MAX_OBJECT_BYTES:
        raise TooLarge(f"object is {length} bytes; the limit is {MAX_OBJECT_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class _WriteParams:
    """A store's query parameters (all None: the bucket's own values)."""

    w: Quorum = None
    dw: Quorum = None
    pw: Quorum = None
    timeout_ms: int | None = None
    return_body: bool = False


_NO_WRITE_PARAMS = _WriteParams()


def _write_params(request: web.Request) -> _WriteParams:
    if not request.query_string:
        return _NO_WRITE_PARAMS
    return _WriteParams(
        w=quorum(request, "w"), dw=quorum(request, "dw"), pw=quorum(request, "pw"),
        timeout_ms=timeout_ms(request), return_body=flag(request, "returnbody") or False,
    )


async def _store(request: web.Request, path: BucketPath, key: str, *, created: bool
                 ) -> web.Response:
    node = node_of(request)
    headers = request.headers
    bkey = path.bkey(key)
    meta = metadata_from_request(headers)
    context = decode_context(headers.get(VCLOCK))
    params = _write_params(request)
    check_bkey(bkey)
    props_of(node, path.bucket_type, path.bucket)
    _check_declared_length(request)
    if has_conditions(headers):
        check_write(headers, await current_object(node, path, key))
    value = await request.read()
    put = PutRequest(bkey, value, meta, context, w=params.w, dw=params.dw, pw=params.pw,
                     timeout_ms=params.timeout_ms, return_body=params.return_body)
    result: PutResult = await node.request(put, op="put")
    location = {"Location": path.key_url(key)} if created else {}
    if put.return_body and result.obj is not None:
        obj = visible(node, path.bucket_type, path.bucket, result.obj)
        assert obj is not None
        response = object_response(path, obj, request.headers.get("Accept"),
                                   201 if created else 200)
        response.headers.update(location)
        return response
    return web.Response(status=201 if created else 204, headers=location)


async def store_object(request: web.Request) -> web.Response:
    return await _store(request, bucket_path(request), key_of(request), created=False)


async def create_object(request: web.Request) -> web.Response:
    """POST to a bucket: store under a generated key; 201 with its Location."""
    return await _store(request, bucket_path(request), new_key(), created=True)


# --- delete -------------------------------------------------------------------------------------


async def delete_object(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    raw_context = request.headers.get(VCLOCK, "").strip()
    delete = DeleteRequest(
        path.bkey(key), decode_context(raw_context) if raw_context else None,
        rw=quorum(request, "rw"), r=quorum(request, "r"), w=quorum(request, "w"),
        dw=quorum(request, "dw"), pr=quorum(request, "pr"), pw=quorum(request, "pw"),
        timeout_ms=timeout_ms(request),
    )
    if has_conditions(request.headers):
        check_write(request.headers, await current_object(node, path, key))
    await node.request(delete, op="delete")
    return web.Response(status=204)


# --- preflist -----------------------------------------------------------------------------------


async def preflist(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    bkey = path.bkey(key)
    check_bkey(bkey)
    n_val = props_of(node, path.bucket_type, path.bucket)["n_val"]
    entries = node.service.preflist(bkey, n_val)
    return web.json_response({"preflist": [
        {"partition": e.partition, "node": e.node, "primary": e.primary} for e in entries
    ]})


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/types/{type}"):
        key = app.router.add_resource(prefix + "/buckets/{bucket}/keys/{key}")
        for method in ("GET", "HEAD"):
            key.add_route(method, guarded(fetch_object))
        key.add_route("PUT", guarded(store_object))
        key.add_route("POST", guarded(store_object))
        key.add_route("DELETE", guarded(delete_object))
        app.router.add_route("POST", prefix + "/buckets/{bucket}/keys", guarded(create_object))
        app.router.add_route("GET", prefix + "/buckets/{bucket}/keys/{key}/preflist", guarded(preflist))
    legacy = app.router.add_resource(LEGACY_PREFIX + "/{bucket}/{key}")
    for method in ("GET", "HEAD"):
        legacy.add_route(method, guarded(fetch_object))
    legacy.add_route("PUT", guarded(store_object))
    legacy.add_route("POST", guarded(store_object))
    legacy.add_route("DELETE", guarded(delete_object))
    app.router.add_route("POST", LEGACY_PREFIX + "/{bucket}", guarded(create_object))
