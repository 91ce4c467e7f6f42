"""The data type methods of buckets: `Bucket` and `AsyncBucket` mix these in.

Typed objects (sapwood.client.datatypes) stage their changes as Riak JSON ops; these methods send
them through the bucket's transport (embedded or HTTP) and load what comes back. Legacy (Riak 1.4)
counters live here too: plain integers at keys of an allow_mult bucket of the default type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from sapwood.client.datatypes import (
    Datatype,
    DatatypeStored,
    datatype_class,
    make_datatype,
    staged_op,
)
from sapwood.core.errors import BadRequest

if TYPE_CHECKING:
    from sapwood.client.buckets import (
        AsyncBucket,
        AsyncTransport,
        Bucket,
        Location,
        Params,
        Transport,
        _Front,
    )

D = TypeVar("D", bound=Datatype[Any])
Quorum = int | str | None
DEFAULT_TYPE = "default"


def _params(**values: int | str | bool | None) -> Params:
    return {name: value for name, value in values.items() if value is not None}


def _no_datatype(bucket_type: str) -> BadRequest:
    return BadRequest(f"bucket type {bucket_type!r} has no datatype property, so it holds no "
                      "data types; create a type with {'datatype': 'set'} (or counter, gset, "
                      "hll, map)")


def _delta(delta: Any) -> int:
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise BadRequest(f"a counter changes by an int, got {type(delta).__name__}")
    return delta


def _check_kind(bucket_type: str, datatype: str | None, dt: Datatype[Any]) -> None:
    """A typed object of another type than the bucket type holds: say so before sending."""
    if datatype is not None and datatype != dt.type_name:
        raise BadRequest(f"bucket type {bucket_type!r} holds {datatype}s, not {dt.type_name}s")


def _key_of(dt: Datatype[Any]) -> str:
    if dt.key is None:
        raise BadRequest(f"{dt.describe()} has no key yet; store it first")
    return dt.key


def _take_stored(dt: D, stored: DatatypeStored) -> D:
    dt.key = stored.key
    if stored.fetched is not None:
        dt.load(stored.fetched)
    else:
        dt.clear()
        dt.exists = True
    return dt


def _cached_datatype(front: _Front, bucket_type: str) -> tuple[bool, str | None]:
    """(known, datatype): a type's datatype never changes, so one lookup per type is enough."""
    if bucket_type == DEFAULT_TYPE:
        return True, None
    cache = front.datatypes
    return (bucket_type in cache), cache.get(bucket_type)


class DatatypeBucket:
    """Data type and legacy counter methods of a synchronous `Bucket`."""

    if TYPE_CHECKING:
        transport: Transport
        type: str
        _front: _Front

        def _loc(self, key: str | None) -> Location: ...

    def _me(self) -> Bucket:
        return cast("Bucket", self)

    def datatype_name(self) -> str | None:
        """The bucket type's `datatype` property (None for a plain type); asked once per type."""
        known, name = _cached_datatype(self._front, self.type)
        if not known:
            name = self.transport.type_props(self.type).get("datatype")
            self._front.datatypes[self.type] = name
        return name

    def new_datatype(self, key: str | None = None) -> Datatype[Bucket]:
        """An empty, unsaved typed object of the bucket type's datatype (Counter, Set, ...)."""
        self._loc(key)
        name = self.datatype_name()
        if name is None:
            raise _no_datatype(self.type)
        return datatype_class(name)(self._me(), key)

    def get_datatype(self, key: str, *, r: Quorum = None, pr: Quorum = None,
                     notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                     timeout: int | None = None,
                     include_context: bool | None = None) -> Datatype[Bucket]:
        """Fetch the data type at `key`; a missing key gives an empty one (`exists == False`)."""
        fetched = self.transport.fetch_datatype(self._loc(key), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout,
            include_context=include_context))
        return make_datatype(self._me(), key, fetched)

    def update_datatype(self, dt: D, *, w: Quorum = None, dw: Quorum = None, pw: Quorum = None,
                        timeout: int | None = None, return_body: bool = True,
                        include_context: bool | None = None) -> D:
        """Send `dt`'s staged changes with its context. With return_body (default) `dt` then
        holds the new value and context; a key-less `dt` gets the key the store made."""
        _check_kind(self.type, self.datatype_name(), dt)
        stored = self.transport.update_datatype(
            self._loc(dt.key), dt.type_name, staged_op(dt), dt.context,
            _params(w=w, dw=dw, pw=pw, timeout=timeout, include_context=include_context),
            return_body)
        return _take_stored(dt, stored)

    def reload_datatype(self, dt: D, *, r: Quorum = None, pr: Quorum = None,
                        notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                        timeout: int | None = None) -> D:
        fetched = self.transport.fetch_datatype(self._loc(_key_of(dt)), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))
        dt.load(fetched)
        return dt

    def delete_datatype(self, dt: Datatype[Any], *, rw: Quorum = None, r: Quorum = None,
                        w: Quorum = None, dw: Quorum = None, pr: Quorum = None,
                        pw: Quorum = None, timeout: int | None = None) -> bool:
        """Delete the key (a tombstone); False when there was nothing to delete."""
        deleted = self.transport.delete(self._loc(_key_of(dt)), None, _params(
            rw=rw, r=r, w=w, dw=dw, pr=pr, pw=pw, timeout=timeout))
        dt.forget()
        return deleted

    def get_counter(self, key: str, *, r: Quorum = None, pr: Quorum = None,
                    notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                    timeout: int | None = None) -> int | None:
        """A legacy counter's value (None when there is none). Needs allow_mult=true."""
        return self.transport.fetch_counter(self._loc(key), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))

    def update_counter(self, key: str, delta: int, *, w: Quorum = None, dw: Quorum = None,
                       pw: Quorum = None, timeout: int | None = None,
                       return_value: bool = False) -> int | None:
        """Add `delta` to a legacy counter; its new value when return_value, else None."""
        return self.transport.update_counter(
            self._loc(key), _delta(delta), _params(w=w, dw=dw, pw=pw, timeout=timeout),
            return_value)


class AsyncDatatypeBucket:
    """The `DatatypeBucket` methods of an `AsyncBucket`, as coroutines."""

    if TYPE_CHECKING:
        transport: AsyncTransport
        type: str
        _front: _Front

        def _loc(self, key: str | None) -> Location: ...

    def _me(self) -> AsyncBucket:
        return cast("AsyncBucket", self)

    async def datatype_name(self) -> str | None:
        known, name = _cached_datatype(self._front, self.type)
        if not known:
            name = (await self.transport.type_props(self.type)).get("datatype")
            self._front.datatypes[self.type] = name
        return name

    async def new_datatype(self, key: str | None = None) -> Datatype[AsyncBucket]:
        self._loc(key)
        name = await self.datatype_name()
        if name is None:
            raise _no_datatype(self.type)
        return datatype_class(name)(self._me(), key)

    async def get_datatype(self, key: str, *, r: Quorum = None, pr: Quorum = None,
                           notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                           timeout: int | None = None,
                           include_context: bool | None = None) -> Datatype[AsyncBucket]:
        fetched = await self.transport.fetch_datatype(self._loc(key), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout,
            include_context=include_context))
        return make_datatype(self._me(), key, fetched)

    async def update_datatype(self, dt: D, *, w: Quorum = None, dw: Quorum = None,
                              pw: Quorum = None, timeout: int | None = None,
                              return_body: bool = True, include_context: bool | None = None) -> D:
        _check_kind(self.type, await self.datatype_name(), dt)
        stored = await self.transport.update_datatype(
            self._loc(dt.key), dt.type_name, staged_op(dt), dt.context,
            _params(w=w, dw=dw, pw=pw, timeout=timeout, include_context=include_context),
            return_body)
        return _take_stored(dt, stored)

    async def reload_datatype(self, dt: D, *, r: Quorum = None, pr: Quorum = None,
                              notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                              timeout: int | None = None) -> D:
        fetched = await self.transport.fetch_datatype(self._loc(_key_of(dt)), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))
        dt.load(fetched)
        return dt

    async def delete_datatype(self, dt: Datatype[Any], *, rw: Quorum = None, r: Quorum = None,
                              w: Quorum = None, dw: Quorum = None, pr: Quorum = None,
                              pw: Quorum = None, timeout: int | None = None) -> bool:
        deleted = await self.transport.delete(self._loc(_key_of(dt)), None, _params(
            rw=rw, r=r, w=w, dw=dw, pr=pr, pw=pw, timeout=timeout))
        dt.forget()
        return deleted

    async def get_counter(self, key: str, *, r: Quorum = None, pr: Quorum = None,
                          notfound_ok: bool | None = None, basic_quorum: bool | None = None,
                          timeout: int | None = None) -> int | None:
        return await self.transport.fetch_counter(self._loc(key), _params(
            r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum, timeout=timeout))

    async def update_counter(self, key: str, delta: int, *, w: Quorum = None,
                             dw: Quorum = None, pw: Quorum = None, timeout: int | None = None,
                             return_value: bool = False) -> int | None:
        return await self.transport.update_counter(
            self._loc(key), _delta(delta), _params(w=w, dw=dw, pw=pw, timeout=timeout),
            return_value)
