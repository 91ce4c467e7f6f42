"""Buckets, bucket types and the store/client front, over a transport (embedded or HTTP).

The same classes serve `sapwood.open()` and `sapwood.Client`: only the transport differs. The
async classes mirror the sync ones for `sapwood.AsyncClient`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from sapwood.client.datatype_buckets import AsyncDatatypeBucket, DatatypeBucket
from sapwood.client.datatypes import DatatypeFetched, DatatypeStored
from sapwood.client.model import (
    AsyncObject,
    BucketTypeInfo,
    Fetched,
    Index,
    IndexPage,
    Link,
    Object,
    ObjectBase,
    Resolver,
    Sibling,
    Term,
    make_sibling,
)
from sapwood.core.errors import BadRequest, NotFound, SapwoodError
from sapwood.core.limits import MAX_RESULTS_PAGE

DEFAULT_TYPE = "default"
DEFAULT_PAGE_SIZE = 1000
Params = dict[str, int | str | bool]


@dataclass(frozen=True, slots=True)
class Location:
    bucket_type: str
    bucket: str
    key: str | None


@dataclass(frozen=True, slots=True)
class IndexSpec:
    bucket_type: str
    bucket: str
    field: str
    start: Term
    end: Term | None = None
    return_terms: bool = False
    max_results: int | None = None
    continuation: str | None = None
    term_regex: str | None = None
    timeout: int | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    fetched: Fetched | None  # None unless the body was asked for


class Transport(Protocol):
    """What a synchronous store or client must be able to do."""

    def fetch(self, loc: Location, params: Params) -> Fetched: ...
    def store(self, loc: Location, content: Sibling, context: str | None, params: Params,
              return_body: bool) -> Stored: ...
    def delete(self, loc: Location, context: str | None, params: Params) -> bool: ...
    def fetch_datatype(self, loc: Location, params: Params) -> DatatypeFetched: ...
    def update_datatype(self, loc: Location, type_name: str, op: Any, context: str | None,
                        params: Params, return_body: bool) -> DatatypeStored: ...
    def fetch_counter(self, loc: Location, params: Params) -> int | None: ...
    def update_counter(self, loc: Location, delta: int, params: Params,
                       return_value: bool) -> int | None: ...
    def index(self, spec: IndexSpec) -> IndexPage: ...
    def keys(self, bucket_type: str, bucket: str, timeout: int | None) -> list[str]: ...
    def buckets(self, bucket_type: str, timeout: int | None) -> list[str]: ...
    def bucket_props(self, bucket_type: str, bucket: str) -> dict[str, Any]: ...
    def set_bucket_props(self, bucket_type: str, bucket: str, props: Mapping[str, Any]) -> None: ...
    def reset_bucket_props(self, bucket_type: str, bucket: str) -> None: ...
    def type_props(self, name: str) -> dict[str, Any]: ...
    def create_type(self, name: str, props: Mapping[str, Any]) -> None: ...
    def activate_type(self, name: str) -> None: ...
    def update_type(self, name: str, props: Mapping[str, Any]) -> None: ...
    def list_types(self) -> list[BucketTypeInfo]: ...
    def ping(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The same operations as `Transport`, as coroutines."""

    async def fetch(self, loc: Location, params: Params) -> Fetched: ...
    async def store(self, loc: Location, content: Sibling, context: str | None, params: Params,
                    return_body: bool) -> Stored: ...
    async def delete(self, loc: Location, context: str | None, params: Params) -> bool: ...
    async def fetch_datatype(self, loc: Location, params: Params) -> DatatypeFetched: ...
    async def update_datatype(self, loc: Location, type_name: str, op: Any,
                              context: str | None, params: Params,
                              return_body: bool) -> DatatypeStored: ...
    async def fetch_counter(self, loc: Location, params: Params) -> int | None: ...
    async def update_counter(self, loc: Location, delta: int, params: Params,
                             return_value: bool) -> int | None: ...
    async def index(self, spec: IndexSpec) -> IndexPage: ...
    async def keys(self, bucket_type: str, bucket: str, timeout: int | None) -> list[str]: ...
    async def buckets(self, bucket_type: str, timeout: int | None) -> list[str]: ...
    async def bucket_props(self, bucket_type: str, bucket: str) -> dict[str, Any]: ...
    async def set_bucket_props(self, bucket_type: str, bucket: str,
                               props: Mapping[str, Any]) -> None: ...
    async def reset_bucket_props(self, bucket_type: str, bucket: str) -> None: ...
    async def type_props(self, name: str) -> dict[str, Any]: ...
    async def create_type(self, name: str, props: Mapping[str, Any]) -> None: ...
    async def activate_type(self, name: str) -> None: ...
    async def update_type(self, name: str, props: Mapping[str, Any]) -> None: ...
    async def list_types(self) -> list[BucketTypeInfo]: ...
    async def ping(self) -> bool: ...
    async def stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


def params(**values: int | str | bool | None) -> Params:
    """Request options under their Riak names; unset ones are left to the bucket's properties."""
    return {name: value for name, value in values.items() if value is not None}


def check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{what} must be a non-empty string; got {name!r}")


def check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_RESULTS_PAGE:
        raise BadRequest(f"page_size must be from 1 to {MAX_RESULTS_PAGE}")


def next_continuation(previous: str | None, page: IndexPage) -> str | None:
    """Where the next page starts; a page that would start over again is the server's bug."""
    if page.continuation is not None and page.continuation == previous:
        raise SapwoodError("the index query returned the same continuation twice")
    return page.continuation


def content_to_store(obj: ObjectBase) -> Sibling:
    if not obj.siblings:
        raise BadRequest(f"{obj._describe()} has no value to store; set obj.data first")
    content = obj.resolve()
    if content.deleted:
        raise BadRequest(f"{obj._describe()} resolved to a tombstone; use delete() instead")
    return content


def load_stored(obj: ObjectBase, stored: Stored) -> None:
    """After a write: the object's key (a store-assigned one too) and, when the body was asked
    for, what the store now holds."""
    obj.key = stored.key
    if stored.fetched is not None:
        obj.load(stored.fetched)
    obj.exists = True


def delete_target(
    key: str | ObjectBase, context: str | None
) -> tuple[ObjectBase | None, str, str | None]:
    """What a delete of `key` (a key or an object) names: the object if given one, the key, and
    the context to send (the given one, else the object's)."""
    obj = key if isinstance(key, ObjectBase) else None
    name = obj.key if obj is not None else key
    if not isinstance(name, str):
        raise BadRequest("the object has no key; nothing to delete")
    if obj is not None and context is None:
        context = obj.context
    return obj, name, context


class _Front:
    """What the store and the clients share: per-bucket resolvers and the store-wide default."""

    def __init__(self) -> None:
        self.resolver: Resolver | None = None
        self._resolvers: dict[tuple[str, str], Resolver] = {}
        # Bucket type -> its datatype property, which never changes once the type exists.
        self.datatypes: dict[str, str | None] = {}


class _BucketBase:
    def __init__(self, front: _Front, name: str, bucket_type: str = DEFAULT_TYPE) -> None:
        check_name("bucket name", name)
        check_name("bucket type", bucket_type)
        self._front = front
        self.name = name
        self.type = bucket_type

    @property
    def resolver(self) -> Resolver | None:
        """Picks or merges siblings of this bucket's objects (default: the store's resolver)."""
        return self._front._resolvers.get((self.type, self.name))

    @resolver.setter
    def resolver(self, resolver: Resolver | None) -> None:
        if resolver is None:
            self._front._resolvers.pop((self.type, self.name), None)
        else:
            self._front._resolvers[(self.type, self.name)] = resolver

    def effective_resolver(self) -> Resolver | None:
        return self.resolver or self._front.resolver

    def describe(self) -> str:
        return f"bucket {self.name!r} (type {self.type!r})"

    def _loc(self, key: str | None) -> Location:
        if key is not None:
            check_name("key", key)
        return Location(self.type, self.name, key)

    def _index_spec(self, field: str, start: Term, end: Term | None, return_terms: bool,
                    max_results: int | None, continuation: str | None,
                    term_regex: str | None, timeout: int | None) -> IndexSpec:
        return IndexSpec(self.type, self.name, field, start, end, return_terms, max_results,
                         continuation, term_regex, timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} type={self.type!r}>"


class Bucket(_BucketBase, DatatypeBucket):
    """A bucket of a synchronous store or client (data type methods: see DatatypeBucket)."""

    def __init__(self, front: SyncFront, name: str, bucket_type: str = DEFAULT_TYPE) -> None:
        super().__init__(front, name, bucket_type)
        self.transport = front.transport

    def new(self, key: str | None = None, data: Any = None, *, encoded_data: bytes | None = None,
            content_type: str | None = None, charset: str | None = None,
            content_encoding: str | None = None, usermeta: dict[str, str] | None = None,
            indexes: Iterable[Index] | None = None, links: Iterable[Link] | None = None) -> Object:
        """A new, unsaved object. bytes stay bytes, str is text, anything else is JSON."""
        if key is not None:
            check_name("key", key)
        sibling = make_sibling(data, encoded_data=encoded_data, content_type=content_type,
                               charset=charset, content_encoding=content_encoding,
                               usermeta=usermeta, indexes=indexes, links=links)
        return Object(self, key, [sibling])

    def fetch(self, key: str, *, r: int | str | None = None, pr: int | str | None = None,
              notfound_ok: bool | None = None, basic_quorum: bool | None = None,
              timeout: int | None = None) -> Fetched:
        return self.transport.fetch(self._loc(key), params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))

    def get(self, key: str, *, r: int | str | None = None, pr: int | str | None = None,
            notfound_ok: bool | None = None, basic_quorum: bool | None = None,
            timeout: int | None = None) -> Object:
        """Fetch `key`; a missing key gives an object with `exists == False` (and a context if a
        tombstone was found, so a new write supersedes it). `timeout` is in milliseconds."""
        fetched = self.fetch(key, r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum,
                             timeout=timeout)
        return Object(self, key, fetched.visible, fetched.context, exists=fetched.exists)

    def put(self, obj: Object, *, w: int | str | None = None, dw: int | str | None = None,
            pw: int | str | None = None, timeout: int | None = None,
            return_body: bool = True) -> Object:
        """Write the object's resolved value with its context; with return_body (default) the
        object is refreshed with what the store now holds (new context, any siblings)."""
        content = content_to_store(obj)
        stored = self.transport.store(self._loc(obj.key), content, obj.context,
                                      params(w=w, dw=dw, pw=pw, timeout=timeout), return_body)
        load_stored(obj, stored)
        return obj

    def delete(self, key: str | Object, *, context: str | None = None,
               rw: int | str | None = None, r: int | str | None = None,
               w: int | str | None = None, dw: int | str | None = None,
               pr: int | str | None = None, pw: int | str | None = None,
               timeout: int | None = None) -> bool:
        """Delete (write a tombstone over what `context`, or a fresh read, has seen).
        Returns False when there was nothing to delete."""
        obj, name, context = delete_target(key, context)
        deleted = self.transport.delete(self._loc(name), context, params(
            rw=rw, r=r, w=w, dw=dw, pr=pr, pw=pw, timeout=timeout))
        if obj is not None:
            obj.siblings, obj.exists = [], False
        return deleted

    def get_index(self, field: str, start: Term, end: Term | None = None, *,
                  return_terms: bool = False, max_results: int | None = None,
                  continuation: str | None = None, term_regex: str | None = None,
                  timeout: int | None = None) -> IndexPage:
        """One page of a 2i query: exact (`end` None) or range; `$bucket` and `$key` work too."""
        return self.transport.index(self._index_spec(
            field, start, end, return_terms, max_results, continuation, term_regex, timeout))

    def paginate_index(self, field: str, start: Term, end: Term | None = None, *,
                       page_size: int = DEFAULT_PAGE_SIZE, return_terms: bool = False,
                       term_regex: str | None = None,
                       timeout: int | None = None) -> Iterator[IndexPage]:
        """Every page of a 2i query, `page_size` results at a time."""
        check_page_size(page_size)
        continuation: str | None = None
        while True:
            page = self.get_index(field, start, end, return_terms=return_terms,
                                  max_results=page_size, continuation=continuation,
                                  term_regex=term_regex, timeout=timeout)
            yield page
            continuation = next_continuation(continuation, page)
            if continuation is None:
                return

    def keys(self, *, timeout: int | None = None) -> list[str]:
        """Every key of the bucket. A full scan of the store: meant for admin and tests."""
        return self.transport.keys(self.type, self.name, timeout)

    def get_props(self) -> dict[str, Any]:
        return self.transport.bucket_props(self.type, self.name)

    def set_props(self, props: Mapping[str, Any]) -> None:
        self.transport.set_bucket_props(self.type, self.name, props)

    def reset_props(self) -> None:
        """Back to the bucket type's properties."""
        self.transport.reset_bucket_props(self.type, self.name)


class AsyncBucket(_BucketBase, AsyncDatatypeBucket):
    """A bucket of an `AsyncClient`: the `Bucket` surface as coroutines."""

    def __init__(self, front: AsyncFront, name: str, bucket_type: str = DEFAULT_TYPE) -> None:
        super().__init__(front, name, bucket_type)
        self.transport = front.transport

    def new(self, key: str | None = None, data: Any = None, *, encoded_data: bytes | None = None,
            content_type: str | None = None, charset: str | None = None,
            content_encoding: str | None = None, usermeta: dict[str, str] | None = None,
            indexes: Iterable[Index] | None = None,
            links: Iterable[Link] | None = None) -> AsyncObject:
        if key is not None:
            check_name("key", key)
        sibling = make_sibling(data, encoded_data=encoded_data, content_type=content_type,
                               charset=charset, content_encoding=content_encoding,
                               usermeta=usermeta, indexes=indexes, links=links)
        return AsyncObject(self, key, [sibling])

    async def fetch(self, key: str, *, r: int | str | None = None, pr: int | str | None = None,
                    notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                    timeout: int | None = None) -> Fetched:
        return await self.transport.fetch(self._loc(key), params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))

    async def get(self, key: str, *, r: int | str | None = None, pr: int | str | None = None,
                  notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                  timeout: int | None = None) -> AsyncObject:
        fetched = await self.fetch(key, r=r, pr=pr, notfound_ok=notfound_ok,
                                   basic_quorum=basic_quorum, timeout=timeout)
        return AsyncObject(self, key, fetched.visible, fetched.context,
                           exists=fetched.exists)

    async def put(self, obj: AsyncObject, *, w: int | str | None = None,
                  dw: int | str | None = None, pw: int | str | None = None,
                  timeout: int | None = None, return_body: bool = True) -> AsyncObject:
        content = content_to_store(obj)
        stored = await self.transport.store(self._loc(obj.key), content, obj.context,
                                            params(w=w, dw=dw, pw=pw, timeout=timeout),
                                            return_body)
        load_stored(obj, stored)
        return obj

    async def delete(self, key: str | AsyncObject, *, context: str | None = None,
                     rw: int | str | None = None, r: int | str | None = None,
                     w: int | str | None = None, dw: int | str | None = None,
                     pr: int | str | None = None, pw: int | str | None = None,
                     timeout: int | None = None) -> bool:
        obj, name, context = delete_target(key, context)
        deleted = await self.transport.delete(self._loc(name), context, params(
            rw=rw, r=r, w=w, dw=dw, pr=pr, pw=pw, timeout=timeout))
        if obj is not None:
            obj.siblings, obj.exists = [], False
        return deleted

    async def get_index(self, field: str, start: Term, end: Term | None = None, *,
                        return_terms: bool = False, max_results: int | None = None,
                        continuation: str | None = None, term_regex: str | None = None,
                        timeout: int | None = None) -> IndexPage:
        return await self.transport.index(self._index_spec(
            field, start, end, return_terms, max_results, continuation, term_regex, timeout))

    async def paginate_index(self, field: str, start: Term, end: Term | None = None, *,
                             page_size: int = DEFAULT_PAGE_SIZE, return_terms: bool = False,
                             term_regex: str | None = None,
                             timeout: int | None = None) -> AsyncIterator[IndexPage]:
        check_page_size(page_size)
        continuation: str | None = None
        while True:
            page = await self.get_index(field, start, end, return_terms=return_terms,
                                        max_results=page_size, continuation=continuation,
                                        term_regex=term_regex, timeout=timeout)
            yield page
            continuation = next_continuation(continuation, page)
            if continuation is None:
                return

    async def keys(self, *, timeout: int | None = None) -> list[str]:
        return await self.transport.keys(self.type, self.name, timeout)

    async def get_props(self) -> dict[str, Any]:
        return await self.transport.bucket_props(self.type, self.name)

    async def set_props(self, props: Mapping[str, Any]) -> None:
        await self.transport.set_bucket_props(self.type, self.name, props)

    async def reset_props(self) -> None:
        await self.transport.reset_bucket_props(self.type, self.name)


class BucketType:
    """A bucket type: its buckets, properties and life cycle (create, activate, update)."""

    def __init__(self, front: SyncFront, name: str) -> None:
        check_name("bucket type", name)
        self._front = front
        self.name = name

    def bucket(self, name: str) -> Bucket:
        return Bucket(self._front, name, self.name)

    def create(self, props: Mapping[str, Any] | None = None) -> None:
        """Create the type (inactive); activate it before use. Immutable: datatype, consistent."""
        self._front.transport.create_type(self.name, props or {})

    def activate(self) -> None:
        self._front.transport.activate_type(self.name)

    def update(self, props: Mapping[str, Any]) -> None:
        self._front.transport.update_type(self.name, props)

    def get_props(self) -> dict[str, Any]:
        return self._front.transport.type_props(self.name)

    def status(self) -> str | None:
        """'active', 'created' (not yet active) or None when no such type exists."""
        try:
            props = self.get_props()
        except NotFound:
            return None
        return "active" if props.get("active") else "created"

    def buckets(self, *, timeout: int | None = None) -> list[str]:
        return self._front.transport.buckets(self.name, timeout)

    def __repr__(self) -> str:
        return f"<BucketType {self.name!r}>"


class AsyncBucketType:
    def __init__(self, front: AsyncFront, name: str) -> None:
        check_name("bucket type", name)
        self._front = front
        self.name = name

    def bucket(self, name: str) -> AsyncBucket:
        return AsyncBucket(self._front, name, self.name)

    async def create(self, props: Mapping[str, Any] | None = None) -> None:
        await self._front.transport.create_type(self.name, props or {})

    async def activate(self) -> None:
        await self._front.transport.activate_type(self.name)

    async def update(self, props: Mapping[str, Any]) -> None:
        await self._front.transport.update_type(self.name, props)

    async def get_props(self) -> dict[str, Any]:
        return await self._front.transport.type_props(self.name)

    async def status(self) -> str | None:
        try:
            props = await self.get_props()
        except NotFound:
            return None
        return "active" if props.get("active") else "created"

    async def buckets(self, *, timeout: int | None = None) -> list[str]:
        return await self._front.transport.buckets(self.name, timeout)

    def __repr__(self) -> str:
        return f"<AsyncBucketType {self.name!r}>"


class SyncFront(_Front):
    """The surface `Store` and `Client` share."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport

    def bucket(self, name: str, type: str = DEFAULT_TYPE) -> Bucket:
        return Bucket(self, name, type)

    def bucket_type(self, name: str) -> BucketType:
        return BucketType(self, name)

    def bucket_types(self) -> list[BucketTypeInfo]:
        return self.transport.list_types()

    def buckets(self, type: str = DEFAULT_TYPE, *, timeout: int | None = None) -> list[str]:
        """Names of the buckets holding keys. A full scan: meant for admin and tests."""
        return self.transport.buckets(type, timeout)

    def ping(self) -> bool:
        return self.transport.ping()

    def stats(self) -> dict[str, Any]:
        return self.transport.stats()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncFront(_Front):
    """The surface of `AsyncClient`."""

    def __init__(self, transport: AsyncTransport) -> None:
        super().__init__()
        self.transport = transport

    def bucket(self, name: str, type: str = DEFAULT_TYPE) -> AsyncBucket:
        return AsyncBucket(self, name, type)

    def bucket_type(self, name: str) -> AsyncBucketType:
        return AsyncBucketType(self, name)

    async def bucket_types(self) -> list[BucketTypeInfo]:
        return await self.transport.list_types()

    async def buckets(self, type: str = DEFAULT_TYPE, *,
                      timeout: int | None = None) -> list[str]:
        return await self.transport.buckets(type, timeout)

    async def ping(self) -> bool:
        return await self.transport.ping()

    async def stats(self) -> dict[str, Any]:
        return await self.transport.stats()

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
