"""Data types (`/types/T/buckets/B/datatypes[/K]`) and legacy counters (`/buckets/B/counters/K`).

Where Riak's answers are unhelpful Sapwood is clearer, and says so here:
- a bucket type without a `datatype` property (the `default` type included): 400 with a message
  (Riak: 403 `Bucket datatype '' is not a supported type`, or a 301 to the legacy counter URL);
- a POST whose Content-Type is not application/json: 415 with a message (Riak: a bare 406);
- a remove of an element (or map field) the server has not seen, sent without a context: 412 with
  a message (Riak: 500).
Legacy counters exist only under `/buckets/B/counters/K` (the default type), as in Riak; the typed
form answers 404 with a message pointing to the data type API.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sapwood.core.crdt import parse_op
from sapwood.core.datatypes import (
    CONTENT_TYPE,
    LEGACY_COUNTER_CONTENT_TYPE,
    join_state,
)
from sapwood.core.errors import BadRequest, Conflict, NotFound, SapwoodError
from sapwood.core.kvobject import KVObject
from sapwood.core.requests import GetRequest, GetResult, PutResult, Quorum, UpdateRequest
from sapwood.core.service import check_bkey
from sapwood.http.guard import guarded
from sapwood.http.headers import DELETED, parse_content_type
from sapwood.http.objects import new_key
from sapwood.http.params import flag, quorum, timeout_ms
from sapwood.http.paths import BucketPath, UrlForm, bucket_path, key_of
from sapwood.http.state import node_of, props_of
from sapwood.node.node import Node

JSON_TYPE = "application/json"
# States without a causal context: their answers carry none (as in Riak).
CONTEXTLESS_TYPES = ("counter", "hll")
# A legacy counter delta is a decimal integer; longer bodies are not one.
MAX_COUNTER_BODY_BYTES = 64
_INTEGER = re.compile(r"[+-]?[0-9]+")


class UnsupportedMediaType(SapwoodError):
    status = 415


# --- shared helpers -----------------------------------------------------------------------------


def datatype_of(node: Node, path: BucketPath) -> str:
    """The bucket type's `datatype`; 404 for an unknown type, 400 for a type without one."""
    props = props_of(node, path.bucket_type, path.bucket)
    datatype = props.get("datatype")
    if datatype is None:
        raise BadRequest(
            f"bucket type {path.bucket_type!r} has no datatype property, so it holds no data "
            "types; create a type with {\"props\":{\"datatype\":\"set\"}} (or counter, gset, hll, "
            "map), or use /buckets/B/counters/K for legacy counters")
    return str(datatype)


def datatype_url(path: BucketPath, key: str) -> str:
    typed = BucketPath(path.bucket_type, path.bucket, UrlForm.TYPED)
    return f"{typed.bucket_url()}/datatypes/{quote(key, safe='')}"


def encode_datatype_context(context: bytes) -> str:
    return base64.b64encode(context).decode("ascii")


def decode_datatype_context(text: Any) -> bytes | None:
    """The base64 `"context"` of an op; None when absent or empty."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise BadRequest('"context" must be the base64 string a fetch returned')
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest('"context" is not valid base64; send the context a fetch returned'
                         ) from None


def datatype_body(type_name: str, obj: KVObject | None, include_context: bool
                  ) -> dict[str, Any] | None:
    """Riak's `{"type", "value", "context"}` for an object; None when it holds no live state."""
    state = join_state(obj)
    if state is None:
        return None
    body: dict[str, Any] = {"type": type_name, "value": state.value()}
    if include_context and type_name not in CONTEXTLESS_TYPES:
        body["context"] = encode_datatype_context(state.context())
    return body


def not_found_response(type_name: str, obj: KVObject | None) -> web.Response:
    headers = {DELETED: "true"} if obj is not None and obj.is_tombstone else {}
    return web.json_response({"type": type_name, "error": "notfound"}, status=404,
                             headers=headers)


def _get_request(request: web.Request, path: BucketPath, key: str) -> GetRequest:
    bkey = path.bkey(key)
    check_bkey(bkey)
    return GetRequest(
        bkey, r=quorum(request, "r"), pr=quorum(request, "pr"),
        basic_quorum=flag(request, "basic_quorum"), notfound_ok=flag(request, "notfound_ok"),
        timeout_ms=timeout_ms(request))


def _write_params(request: web.Request) -> tuple[Quorum, Quorum, Quorum, int | None]:
    """w, dw, pw and timeout, read (and checked) before the body is."""
    return quorum(request, "w"), quorum(request, "dw"), quorum(request, "pw"), timeout_ms(request)


def _check_content(obj: KVObject | None, content_type: str, what: str) -> None:
    """A key written through /keys/ holds no data type state: say so instead of a decode error."""
    if obj is None:
        return
    others = [s for s in obj.live_siblings if s.meta.content_type != content_type]
    if others:
        raise Conflict(f"the key holds an object of type {others[0].meta.content_type!r}, "
                       f"not {what}")


# --- data types ---------------------------------------------------------------------------------


async def fetch_datatype(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    type_name = datatype_of(node, path)
    get = _get_request(request, path, key)
    include_context = flag(request, "include_context") is not False
    result: GetResult = await node.request(get, op="get")
    _check_content(result.obj, CONTENT_TYPE, f"a {type_name}")
    body = datatype_body(type_name, result.obj, include_context)
    if body is None:
        return not_found_response(type_name, result.obj)
    return web.json_response(body)


async def missing_key(request: web.Request) -> web.Response:
    """GET .../datatypes without a key: nothing is there (Riak answers the same)."""
    return not_found_response(datatype_of(node_of(request), bucket_path(request)), None)


def _check_json_content_type(request: web.Request) -> None:
    raw = request.headers.get("Content-Type")
    media = parse_content_type(raw)[0].lower() if raw else None
    if media != JSON_TYPE:
        raise UnsupportedMediaType(
            f"a data type operation must be sent as Content-Type: {JSON_TYPE}; "
            f"got {raw or 'no Content-Type'}")


async def _read_op_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def _update(request: web.Request, key: str, *, created: bool) -> web.Response:
    path, node = bucket_path(request), node_of(request)
    type_name = datatype_of(node, path)
    bkey = path.bkey(key)
    check_bkey(bkey)
    return_body = flag(request, "returnbody") or False
    include_context = flag(request, "include_context") is not False
    w, dw, pw, timeout = _write_params(request)
    _check_json_content_type(request)
    body = await _read_op_body(request)
    context = decode_datatype_context(body.get("context")) if isinstance(body, dict) else None
    update = UpdateRequest(bkey, type_name, parse_op(type_name, body), context, w=w, dw=dw, pw=pw,
                           timeout_ms=timeout, return_body=return_body)
    result: PutResult = await node.request(update, op="update")
    headers = {"Location": datatype_url(path, key)} if created else {}
    if return_body and result.obj is not None:
        answer = datatype_body(type_name, result.obj, include_context)
        return web.json_response(answer, status=201 if created else 200, headers=headers)
    return web.Response(status=201 if created else 204, headers=headers)


async def update_datatype(request: web.Request) -> web.Response:
    return await _update(request, key_of(request), created=False)


async def create_datatype(request: web.Request) -> web.Response:
    """POST without a key: apply the op to a new generated key; 201 with its Location."""
    return await _update(request, new_key(), created=True)


# --- legacy counters ----------------------------------------------------------------------------


def _counter_text(value: int) -> web.Response:
    return web.Response(text=str(value), content_type="text/plain")


async def fetch_counter(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    props_of(node, path.bucket_type, path.bucket)
    result: GetResult = await node.request(_get_request(request, path, key), op="get")
    _check_content(result.obj, LEGACY_COUNTER_CONTENT_TYPE, "a counter")
    state = join_state(result.obj)
    if state is None:
        raise NotFound("not found")
    return _counter_text(int(state.value()))


def _counter_delta(raw: bytes) -> int:
    text = raw.decode("ascii", "replace").strip()
    if len(raw) > MAX_COUNTER_BODY_BYTES or not _INTEGER.fullmatch(text):
        raise BadRequest(f"a counter update body must be an integer; got {text[:40]!r}")
    return int(text)


async def update_counter(request: web.Request) -> web.Response:
    path, key, node = bucket_path(request), key_of(request), node_of(request)
    bkey = path.bkey(key)
    check_bkey(bkey)
    props_of(node, path.bucket_type, path.bucket)
    return_value = flag(request, "returnvalue") or False
    w, dw, pw, timeout = _write_params(request)
    op = parse_op("counter", _counter_delta(await request.read()))
    update = UpdateRequest(bkey, "counter", op, w=w, dw=dw, pw=pw, timeout_ms=timeout,
                           return_body=return_value, legacy=True)
    result: PutResult = await node.request(update, op="update")
    state = join_state(result.obj) if return_value else None
    if state is None:
        return web.Response(status=204)
    return _counter_text(int(state.value()))


async def typed_counter(request: web.Request) -> web.Response:
    raise NotFound("legacy counters live under /buckets/B/counters/K (the default bucket type) "
                   "only; on a counter bucket type use /types/T/buckets/B/datatypes/K")


def add_routes(app: web.Application) -> None:
    counter = app.router.add_resource("/buckets/{bucket}/counters/{key}")
    counter.add_route("GET", guarded(fetch_counter))
    counter.add_route("POST", guarded(update_counter))
    app.router.add_route("*", "/types/{type}/buckets/{bucket}/counters/{key}", guarded(typed_counter))
    keyed = app.router.add_resource("/types/{type}/buckets/{bucket}/datatypes/{key}")
    keyed.add_route("GET", guarded(fetch_datatype))
    keyed.add_route("HEAD", guarded(fetch_datatype))
    keyed.add_route("POST", guarded(update_datatype))
    unkeyed = app.router.add_resource("/types/{type}/buckets/{bucket}/datatypes")
    unkeyed.add_route("GET", guarded(missing_key))
    unkeyed.add_route("POST", guarded(create_datatype))
