"""`sapwood.Client(url)` and `sapwood.AsyncClient(url)`: the store's API over Riak's HTTP API.

Both run the operations of `sapwood.client.wire` with httpx; the object model, buckets and errors
are the ones `sapwood.open()` gives, so code moves between embedded and client/server unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from sapwood.client import wire
from sapwood.client.buckets import AsyncFront, IndexSpec, Location, Params, Stored, SyncFront
from sapwood.client.datatypes import DatatypeFetched, DatatypeStored
from sapwood.client.model import BucketTypeInfo, ClosedError, Fetched, IndexPage, Sibling
from sapwood.client.wire import Answer, Call, Op, error_for, expect
from sapwood.core.errors import BadRequest, SapwoodError, Unavailable

T = TypeVar("T")

JSON_HEADERS = [("Content-Type", b"application/json")]

DEFAULT_URL = "http://127.0.0.1:8098"
DEFAULT_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 100


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)


def _request(http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    return http.build_request(call.method, call.path, params=call.params or None,
                              headers=[(name.encode(), value) for name, value in call.headers],
                              content=call.body)


def _unreachable(url: str, exc: httpx.HTTPError) -> Unavailable:
    return Unavailable(f"cannot reach {url}: {exc}")


# --- data types and legacy counters over Riak HTTP (Op builders, like those of `wire`) -----------


def datatype_path(loc: Location) -> str:
    base = f"/types/{wire._q(loc.bucket_type)}/buckets/{wire._q(loc.bucket)}/datatypes"
    return base if loc.key is None else f"{base}/{wire._q(loc.key)}"


def counter_path(loc: Location) -> str:
    if loc.bucket_type != wire.DEFAULT_TYPE or loc.key is None:
        raise BadRequest("legacy counters live in the default bucket type, at a key")
    return f"/buckets/{wire._q(loc.bucket)}/counters/{wire._q(loc.key)}"


def _datatype_answer(answer: Answer) -> DatatypeFetched:
    body = answer.json()
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise SapwoodError(f"the server answered a data type without its type: {body!r:.200}")
    if answer.status == 404:
        return DatatypeFetched(body["type"], None, None)
    context = body.get("context")
    return DatatypeFetched(body["type"], body.get("value"),
                           context if isinstance(context, str) and context else None)


def _is_datatype_404(answer: Answer) -> bool:
    """`{"type": T, "error": "notfound"}`; other 404s (an unknown bucket type) are errors."""
    if answer.status != 404 or not answer.headers.get("Content-Type", "").startswith(
            "application/json"):
        return False
    body = answer.json()
    return isinstance(body, dict) and body.get("error") == "notfound"


def fetch_datatype_op(loc: Location, params: Params) -> Op[DatatypeFetched]:
    def read(answer: Answer) -> DatatypeFetched:
        if answer.status != 200 and not _is_datatype_404(answer):
            raise error_for(answer)
        return _datatype_answer(answer)

    return Op(Call("GET", datatype_path(loc), wire._query(params)), read)


def update_datatype_op(loc: Location, op: Any, context: str | None, params: Params,
                       return_body: bool) -> Op[DatatypeStored]:
    query = wire._query(params)
    if return_body:
        query["returnbody"] = "true"
    body = {**op, "context": context} if context and isinstance(op, dict) else op
    call = Call("POST", datatype_path(loc), query, list(JSON_HEADERS), json.dumps(body).encode())

    def read(answer: Answer) -> DatatypeStored:
        expect(answer, 200, 201, 204)
        key = loc.key if loc.key is not None else wire._key_from_location(answer)
        if answer.status == 204 or not answer.body:
            return DatatypeStored(key, None)
        return DatatypeStored(key, _datatype_answer(answer))

    return Op(call, read)


def _counter_value(answer: Answer) -> int:
    text = answer.body.decode("ascii", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise SapwoodError(f"the server answered a counter that is not an integer: {text[:40]!r}"
                           ) from None


def fetch_counter_op(loc: Location, params: Params) -> Op[int | None]:
    def read(answer: Answer) -> int | None:
        if answer.status == 404 and wire._is_object_404(answer):
            return None
        return _counter_value(expect(answer, 200))

    return Op(Call("GET", counter_path(loc), wire._query(params)), read)


def update_counter_op(loc: Location, delta: int, params: Params, return_value: bool
                      ) -> Op[int | None]:
    query = wire._query(params)
    if return_value:
        query["returnvalue"] = "true"
    call = Call("POST", counter_path(loc), query, [("Content-Type", b"text/plain")],
                str(delta).encode())

    def read(answer: Answer) -> int | None:
        expect(answer, 200, 204)
        return _counter_value(answer) if answer.status == 200 and answer.body else None

    return Op(call, read)


class HttpTransport:
    """Runs wire operations on an `httpx.Client`."""

    def __init__(self, url: str, timeout: float, http: httpx.Client | None) -> None:
        self.url = url.rstrip("/")
        self.http: httpx.Client | None = http or httpx.Client(
            base_url=self.url, timeout=timeout, limits=_limits())

    def run(self, op: Op[T]) -> T:
        if self.http is None:
            raise ClosedError("the client is closed")
        try:
            response = self.http.send(_request(self.http, op.call))
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc
        return op.read(Answer(response.status_code, response.headers, response.content))

    def fetch(self, loc: Location, params: Params) -> Fetched:
        return self.run(wire.fetch(loc, params))

    def store(self, loc: Location, content: Sibling, context: str | None, params: Params,
              return_body: bool) -> Stored:
        return self.run(wire.store(loc, content, context, params, return_body))

    def delete(self, loc: Location, context: str | None, params: Params) -> bool:
        return self.run(wire.delete(loc, context, params))

    def index(self, spec: IndexSpec) -> IndexPage:
        return self.run(wire.index(spec))

    def fetch_datatype(self, loc: Location, params: Params) -> DatatypeFetched:
        return self.run(fetch_datatype_op(loc, params))

    def update_datatype(self, loc: Location, type_name: str, op: Any, context: str | None,
                        params: Params, return_body: bool) -> DatatypeStored:
        return self.run(update_datatype_op(loc, op, context, params, return_body))

    def fetch_counter(self, loc: Location, params: Params) -> int | None:
        return self.run(fetch_counter_op(loc, params))

    def update_counter(self, loc: Location, delta: int, params: Params,
                       return_value: bool) -> int | None:
        return self.run(update_counter_op(loc, delta, params, return_value))

    def keys(self, bucket_type: str, bucket: str, timeout: int | None) -> list[str]:
        return self.run(wire.keys(bucket_type, bucket, timeout))

    def buckets(self, bucket_type: str, timeout: int | None) -> list[str]:
        return self.run(wire.buckets(bucket_type, timeout))

    def bucket_props(self, bucket_type: str, bucket: str) -> dict[str, Any]:
        return self.run(wire.bucket_props(bucket_type, bucket))

    def set_bucket_props(self, bucket_type: str, bucket: str, props: Mapping[str, Any]) -> None:
        self.run(wire.set_bucket_props(bucket_type, bucket, props))

    def reset_bucket_props(self, bucket_type: str, bucket: str) -> None:
        self.run(wire.reset_bucket_props(bucket_type, bucket))

    def type_props(self, name: str) -> dict[str, Any]:
        return self.run(wire.type_props(name))

    def create_type(self, name: str, props: Mapping[str, Any]) -> None:
        self.run(wire.create_type(name, props))

    def activate_type(self, name: str) -> None:
        self.run(wire.activate_type(name))

    def update_type(self, name: str, props: Mapping[str, Any]) -> None:
        self.run(wire.update_type(name, props))

    def list_types(self) -> list[BucketTypeInfo]:
        return self.run(wire.list_types())

    def ping(self) -> bool:
        try:
            return self.run(wire.ping())
        except Unavailable:
            return False

    def stats(self) -> dict[str, Any]:
        return self.run(wire.stats())

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None


class AsyncHttpTransport:
    """Runs wire operations on an `httpx.AsyncClient`."""

    def __init__(self, url: str, timeout: float, http: httpx.AsyncClient | None) -> None:
        self.url = url.rstrip("/")
        self.http: httpx.AsyncClient | None = http or httpx.AsyncClient(
            base_url=self.url, timeout=timeout, limits=_limits())

    async def run(self, op: Op[T]) -> T:
        if self.http is None:
            raise ClosedError("the client is closed")
        try:
            response = await self.http.send(_request(self.http, op.call))
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc
        return op.read(Answer(response.status_code, response.headers, response.content))

    async def fetch(self, loc: Location, params: Params) -> Fetched:
        return await self.run(wire.fetch(loc, params))

    async def store(self, loc: Location, content: Sibling, context: str | None, params: Params,
                    return_body: bool) -> Stored:
        return await self.run(wire.store(loc, content, context, params, return_body))

    async def delete(self, loc: Location, context: str | None, params: Params) -> bool:
        return await self.run(wire.delete(loc, context, params))

    async def index(self, spec: IndexSpec) -> IndexPage:
        return await self.run(wire.index(spec))

    async def fetch_datatype(self, loc: Location, params: Params) -> DatatypeFetched:
        return await self.run(fetch_datatype_op(loc, params))

    async def update_datatype(self, loc: Location, type_name: str, op: Any,
                              context: str | None, params: Params,
                              return_body: bool) -> DatatypeStored:
        return await self.run(update_datatype_op(loc, op, context, params, return_body))

    async def fetch_counter(self, loc: Location, params: Params) -> int | None:
        return await self.run(fetch_counter_op(loc, params))

    async def update_counter(self, loc: Location, delta: int, params: Params,
                             return_value: bool) -> int | None:
        return await self.run(update_counter_op(loc, delta, params, return_value))

    async def keys(self, bucket_type: str, bucket: str, timeout: int | None) -> list[str]:
        return await self.run(wire.keys(bucket_type, bucket, timeout))

    async def buckets(self, bucket_type: str, timeout: int | None) -> list[str]:
        return await self.run(wire.buckets(bucket_type, timeout))

    async def bucket_props(self, bucket_type: str, bucket: str) -> dict[str, Any]:
        return await self.run(wire.bucket_props(bucket_type, bucket))

    async def set_bucket_props(self, bucket_type: str, bucket: str,
                               props: Mapping[str, Any]) -> None:
        await self.run(wire.set_bucket_props(bucket_type, bucket, props))

    async def reset_bucket_props(self, bucket_type: str, bucket: str) -> None:
        await self.run(wire.reset_bucket_props(bucket_type, bucket))

    async def type_props(self, name: str) -> dict[str, Any]:
        return await self.run(wire.type_props(name))

    async def create_type(self, name: str, props: Mapping[str, Any]) -> None:
        await self.run(wire.create_type(name, props))

    async def activate_type(self, name: str) -> None:
        await self.run(wire.activate_type(name))

    async def update_type(self, name: str, props: Mapping[str, Any]) -> None:
        await self.run(wire.update_type(name, props))

    async def list_types(self) -> list[BucketTypeInfo]:
        return await self.run(wire.list_types())

    async def ping(self) -> bool:
        try:
            return await self.run(wire.ping())
        except Unavailable:
            return False

    async def stats(self) -> dict[str, Any]:
        return await self.run(wire.stats())

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None


class Client(SyncFront):
    """A synchronous client of a Sapwood (or Riak) node's HTTP API.

    `timeout` is in seconds; `http` replaces the underlying httpx.Client (give it the base_url).
    """

    transport: HttpTransport

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT_S,
                 http: httpx.Client | None = None) -> None:
        super().__init__(HttpTransport(url, timeout, http))
        self.url = self.transport.url

    def __repr__(self) -> str:
        return f"<Client {self.url}>"


class AsyncClient(AsyncFront):
    """An asyncio client of a Sapwood (or Riak) node's HTTP API; `async with` closes it.

    `timeout` is in seconds; `http` replaces the underlying httpx.AsyncClient (with base_url).
    """

    transport: AsyncHttpTransport

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT_S,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(AsyncHttpTransport(url, timeout, http))
        self.url = self.transport.url

    def __repr__(self) -> str:
        return f"<AsyncClient {self.url}>"
