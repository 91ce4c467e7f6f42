"""`sapwood.open()`: the store in this process, no server. The data directory is the one
`sapwood start --data` serves, so an application can start embedded and grow into a node.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sapwood.client.buckets import (
    DEFAULT_TYPE,
    IndexSpec,
    Location,
    Params,
    Stored,
    SyncFront,
)
from sapwood.client.datatypes import DatatypeFetched, DatatypeStored
from sapwood.client.model import BucketTypeInfo, ClosedError, Fetched, IndexPage, Sibling
from sapwood.core.causal import decode_context, encode_context
from sapwood.core.crdt import parse_op
from sapwood.core.datatypes import CONTENT_TYPE, LEGACY_COUNTER_CONTENT_TYPE, join_state
from sapwood.core.errors import BadRequest, Conflict
from sapwood.core.index import make_query, parse_index_name, parse_term
from sapwood.core.kvobject import KVObject, Metadata, resolve_newest
from sapwood.core.kvobject import Sibling as StoredSibling
from sapwood.core.limits import MAX_LINKS, MAX_USERMETA_ENTRIES
from sapwood.core.requests import (
    CoverageRequest,
    CoverageResult,
    DeleteRequest,
    GetRequest,
    GetResult,
    ListBuckets,
    ListKeys,
    PutRequest,
    PutResult,
    UpdateRequest,
)
from sapwood.core.ring import BKey

DEFAULT_NODE = "sapwood@127.0.0.1"
# Data types whose states carry no causal context (as over HTTP).
CONTEXTLESS_TYPES = ("counter", "hll")
GENERATED_KEY_BYTES = 15  # 20 url-safe characters, like Riak's generated keys
RIAK_KV_VERSION = "2.1.4"


# --- conversions between the client model and stored objects ----------------------------------


def _datetime(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def sibling_from_stored(s: StoredSibling) -> Sibling:
    m = s.meta
    return Sibling(
        value=s.value, content_type=m.content_type, charset=m.charset,
        content_encoding=m.encoding, usermeta=dict(m.usermeta), indexes=set(m.indexes),
        links=list(m.links), last_modified=_datetime(m.last_modified_ms), vtag=m.vtag or None,
        deleted=m.deleted,
    )


def fetched_from_stored(obj: KVObject | None) -> Fetched:
    if obj is None:
        return Fetched([], None)
    return Fetched([sibling_from_stored(s) for s in obj.siblings], encode_context(obj.clock))


def metadata_of(content: Sibling) -> Metadata:
    """Validate the metadata as the HTTP API would (same errors, nothing stored on failure)."""
    if len(content.usermeta) > MAX_USERMETA_ENTRIES:
        raise BadRequest(f"an object may carry at most {MAX_USERMETA_ENTRIES} usermeta entries")
    if len(content.links) > MAX_LINKS:
        raise BadRequest(f"an object may carry at most {MAX_LINKS} links")
    indexes = []
    for name, term in content.indexes:
        if not isinstance(name, str) or not isinstance(term, str | int) or isinstance(term, bool):
            raise BadRequest(f"index entry {(name, term)!r} must be (str name, str or int term)")
        field = parse_index_name(name)
        indexes.append((field, parse_term(field, str(term))))
    for name, value in content.usermeta.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise BadRequest(f"usermeta entry {name!r} must map a non-empty str to a str")
    for link in content.links:
        if len(link) != 3 or not all(isinstance(part, str) for part in link):
            raise BadRequest(f"link {link!r} must be (bucket, key, tag) strings")
    if not isinstance(content.value, bytes):
        raise BadRequest("an object's value must be bytes")
    return Metadata(
        content_type=content.content_type, charset=content.charset,
        encoding=content.content_encoding, usermeta=tuple(sorted(content.usermeta.items())),
        indexes=tuple(sorted(set(indexes), key=lambda ix: (ix[0], str(ix[1])))),
        links=tuple(content.links),
    )


def datatype_fetched(type_name: str, obj: KVObject | None, include_context: bool,
                     content_type: str = CONTENT_TYPE) -> DatatypeFetched:
    """What a datatype GET over HTTP answers, from the object a read found."""
    if obj is not None:
        others = [s.meta.content_type for s in obj.live_siblings
                  if s.meta.content_type != content_type]
        if others:
            raise Conflict(f"the key holds an object of type {others[0]!r}, not a {type_name}")
    state = join_state(obj)
    if state is None:
        return DatatypeFetched(type_name, None, None)
    context = None
    if include_context and type_name not in CONTEXTLESS_TYPES:
        context = base64.b64encode(state.context()).decode("ascii")
    return DatatypeFetched(type_name, state.value(), context)


def datatype_context(context: str | None) -> bytes | None:
    if not context:
        return None
    try:
        return base64.b64decode(context, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the data type context is not valid base64; use the one a fetch "
                         "returned") from None


def _timeout(params: Params) -> int | None:
    value = params.get("timeout")
    return None if value is None else int(value)


def _flag(params: Params, name: str) -> bool | None:
    value = params.get(name)
    return None if value is None else bool(value)


class EmbeddedTransport:
    """Runs each request through the embedded driver; one request at a time (a lock)."""

    def __init__(self, path: str | Path, node: str, sync: str, ring_size: int | None) -> None:
        # Imported here so `import sapwood` stays fast for HTTP-only users.
        from sapwood.node.embedded import EmbeddedDriver
        from sapwood.node.local import open_embedded_node

        core = (open_embedded_node(path, node) if ring_size is None
                else open_embedded_node(path, node, ring_size))
        self.driver: EmbeddedDriver | None = EmbeddedDriver(core, sync)
        self._lock = threading.Lock()

    def _driver(self) -> Any:
        if self.driver is None:
            raise ClosedError("the store is closed")
        return self.driver

    def _call(self, request: Any) -> Any:
        with self._lock:
            return self._driver().call(request)[-1]

    # --- objects ------------------------------------------------------------------------------

    def _get(self, loc: Location, params: Params) -> GetResult:
        assert loc.key is not None
        result: GetResult = self._call(GetRequest(
            BKey(loc.bucket_type, loc.bucket, loc.key), r=params.get("r"), pr=params.get("pr"),
            basic_quorum=_flag(params, "basic_quorum"), notfound_ok=_flag(params, "notfound_ok"),
            timeout_ms=_timeout(params)))
        return result

    def fetch(self, loc: Location, params: Params) -> Fetched:
        return fetched_from_stored(self._visible(loc, self._get(loc, params).obj))

    def _visible(self, loc: Location, obj: KVObject | None) -> KVObject | None:
        """As the HTTP API shows it: buckets without allow_mult never show siblings."""
        if obj is None:
            return None
        with self._lock:
            props = self._driver().service.metadata.bucket_props(loc.bucket_type, loc.bucket)
        if not props["allow_mult"] or props["last_write_wins"]:
            return resolve_newest(obj)
        return obj

    def store(self, loc: Location, content: Sibling, context: str | None, params: Params,
              return_body: bool) -> Stored:
        key = loc.key if loc.key is not None else secrets.token_urlsafe(GENERATED_KEY_BYTES)
        request = PutRequest(
            BKey(loc.bucket_type, loc.bucket, key), content.value, metadata_of(content),
            decode_context(context), w=params.get("w"), dw=params.get("dw"),
            pw=params.get("pw"), timeout_ms=_timeout(params), return_body=return_body)
        result: PutResult = self._call(request)
        if not return_body:
            return Stored(key, None)
        return Stored(key, fetched_from_stored(self._visible(loc, result.obj)))

    def delete(self, loc: Location, context: str | None, params: Params) -> bool:
        from sapwood.core.errors import NotFound

        assert loc.key is not None
        request = DeleteRequest(
            BKey(loc.bucket_type, loc.bucket, loc.key),
            decode_context(context) if context else None,
            **{name: params.get(name) for name in ("rw", "r", "w", "dw", "pr", "pw")},
            timeout_ms=_timeout(params))
        try:
            self._call(request)
        except NotFound:
            return False
        return True

    # --- data types and legacy counters -------------------------------------------------------

    def _datatype_of(self, loc: Location) -> str:
        props = self.bucket_props(loc.bucket_type, loc.bucket)
        if props.get("datatype") is None:
            raise BadRequest(
                f"bucket type {loc.bucket_type!r} has no datatype property, so it holds no data "
                "types; create one with {'datatype': 'set'} (or counter, gset, hll, map)")
        return str(props["datatype"])

    def fetch_datatype(self, loc: Location, params: Params) -> DatatypeFetched:
        type_name = self._datatype_of(loc)
        obj = self._get(loc, params).obj
        return datatype_fetched(type_name, obj, _flag(params, "include_context") is not False)

    def update_datatype(self, loc: Location, type_name: str, op: Any, context: str | None,
                        params: Params, return_body: bool) -> DatatypeStored:
        key = loc.key if loc.key is not None else secrets.token_urlsafe(GENERATED_KEY_BYTES)
        request = UpdateRequest(
            BKey(loc.bucket_type, loc.bucket, key), type_name, parse_op(type_name, op),
            datatype_context(context), w=params.get("w"), dw=params.get("dw"),
            pw=params.get("pw"), timeout_ms=_timeout(params), return_body=return_body)
        result: PutResult = self._call(request)
        if not return_body:
            return DatatypeStored(key, None)
        include_context = _flag(params, "include_context") is not False
        return DatatypeStored(key, datatype_fetched(type_name, result.obj, include_context))

    def fetch_counter(self, loc: Location, params: Params) -> int | None:
        fetched = datatype_fetched("counter", self._get(loc, params).obj, False,
                                   LEGACY_COUNTER_CONTENT_TYPE)
        return None if fetched.value is None else int(fetched.value)

    def update_counter(self, loc: Location, delta: int, params: Params,
                       return_value: bool) -> int | None:
        assert loc.key is not None
        request = UpdateRequest(
            BKey(loc.bucket_type, loc.bucket, loc.key), "counter", parse_op("counter", delta),
            w=params.get("w"), dw=params.get("dw"), pw=params.get("pw"),
            timeout_ms=_timeout(params), return_body=return_value, legacy=True)
        result: PutResult = self._call(request)
        state = join_state(result.obj) if return_value else None
        return None if state is None else int(state.value())

    # --- coverage queries ---------------------------------------------------------------------

    def index(self, spec: IndexSpec) -> IndexPage:
        query = make_query(
            spec.bucket_type, spec.bucket, spec.field, str(spec.start),
            None if spec.end is None else str(spec.end), return_terms=spec.return_terms,
            max_results=spec.max_results, continuation=spec.continuation,
            term_regex=spec.term_regex)
        result: CoverageResult = self._call(CoverageRequest(query, timeout_ms=spec.timeout))
        pairs = result.index_results
        terms = list(pairs) if query.return_terms else None
        keys = list(dict.fromkeys(key for _, key in pairs))  # a key once, as over HTTP
        return IndexPage(keys, terms, result.continuation)

    def keys(self, bucket_type: str, bucket: str, timeout: int | None) -> list[str]:
        result: CoverageResult = self._call(
            CoverageRequest(ListKeys(bucket_type, bucket), timeout_ms=timeout))
        return list(result.items)

    def buckets(self, bucket_type: str, timeout: int | None) -> list[str]:
        result: CoverageResult = self._call(
            CoverageRequest(ListBuckets(bucket_type), timeout_ms=timeout))
        return sorted(result.items)

    # --- properties and bucket types ----------------------------------------------------------

    def _admin(self, change: str, *args: Any) -> None:
        with self._lock:
            driver = self._driver()
            getattr(driver.service, change)(*args)
            if driver.sync == "fsync":
                driver.service.backend.sync()

    def bucket_props(self, bucket_type: str, bucket: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._driver().service.metadata.bucket_props(bucket_type, bucket))

    def set_bucket_props(self, bucket_type: str, bucket: str, props: Mapping[str, Any]) -> None:
        self._admin("set_bucket_props", bucket_type, bucket, {"props": dict(props)})

    def reset_bucket_props(self, bucket_type: str, bucket: str) -> None:
        self._admin("reset_bucket_props", bucket_type, bucket)

    def type_props(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._driver().service.metadata.type_props(name))

    def create_type(self, name: str, props: Mapping[str, Any]) -> None:
        self._admin("create_type", name, {"props": dict(props)})

    def activate_type(self, name: str) -> None:
        self._admin("activate_type", name)

    def update_type(self, name: str, props: Mapping[str, Any]) -> None:
        self._admin("update_type", name, {"props": dict(props)})

    def list_types(self) -> list[BucketTypeInfo]:
        with self._lock:
            types = self._driver().service.metadata.types
            return [BucketTypeInfo(name, bool(props.get("active")), dict(props))
                    for name, props in sorted(types.items())]

    # --- node ---------------------------------------------------------------------------------

    def ping(self) -> bool:
        return self.driver is not None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            driver = self._driver()
            service = driver.service
            return {
                "nodename": service.node,
                "riak_kv_version": RIAK_KV_VERSION,
                "ring_members": sorted(set(service.ring.members)),
                "ring_num_partitions": service.ring.size,
                "requests": dict(service.stats.requests),
                "errors": dict(service.stats.errors),
                "ensembles": driver.core.ensembles.stats(),
            }

    def close(self) -> None:
        with self._lock:
            if self.driver is not None:
                self.driver.close()
                self.driver = None


class Store(SyncFront):
    """An embedded store: `store.bucket("b")`, `store.bucket_type("t")`; close() (or `with`)
    makes every write durable and releases the directory."""

    transport: EmbeddedTransport

    def __init__(self, path: str | Path, *, node: str = DEFAULT_NODE, sync: str = "commit",
                 ring_size: int | None = None) -> None:
        super().__init__(EmbeddedTransport(path, node, sync, ring_size))
        self.path = Path(path)

    @property
    def closed(self) -> bool:
        return self.transport.driver is None

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}{' closed' if self.closed else ''}>"


def open(
    path: str | Path, *, node: str = DEFAULT_NODE, sync: str = "commit",
    ring_size: int | None = None,
) -> Store:
    """Open (or create) the store in directory `path`.

    sync="commit" (the default): a write returns once it is committed to the store, so it
    survives the process dying, but not the machine losing power; sync="fsync": a write also
    waits for an fsync, so it survives power loss too (close() always syncs). `ring_size` only
    applies to a new directory.
    """
    if sync not in ("commit", "fsync"):
        raise BadRequest(f"sync must be 'commit' or 'fsync'; got {sync!r}")
    return Store(path, node=node, sync=sync, ring_size=ring_size)


__all__ = ["DEFAULT_TYPE", "Store", "open"]
