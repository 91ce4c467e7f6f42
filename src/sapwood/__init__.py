"""Sapwood: a key-value store that grows from an embedded database into a Dynamo-style cluster.

    store = sapwood.open("./data")                     # embedded, in this process
    client = sapwood.Client("http://127.0.0.1:8098")   # a running node (Riak HTTP API)

Both give buckets (`.bucket("b", type="default")`) whose objects, siblings, resolvers and errors
are the same. Names are imported on first use so `import sapwood` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_MODULES = {
    "sapwood.client.embedded": ("open", "Store"),
    "sapwood.client.http": ("Client", "AsyncClient"),
    "sapwood.client.buckets": ("Bucket", "AsyncBucket", "BucketType", "AsyncBucketType"),
    "sapwood.client.model": (
        "Object", "AsyncObject", "Sibling", "IndexPage", "BucketTypeInfo", "SiblingsError",
        "ClosedError", "last_write_wins", "raise_on_siblings",
    ),
    "sapwood.core.errors": (
        "SapwoodError", "BadRequest", "NotFound", "Conflict", "PreconditionFailed", "TooLarge",
        "Unavailable",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AsyncBucket",
    "AsyncBucketType",
    "AsyncClient",
    "AsyncObject",
    "BadRequest",
    "Bucket",
    "BucketType",
    "BucketTypeInfo",
    "Client",
    "ClosedError",
    "Conflict",
    "IndexPage",
    "NotFound",
    "Object",
    "PreconditionFailed",
    "SapwoodError",
    "Sibling",
    "SiblingsError",
    "Store",
    "TooLarge",
    "Unavailable",
    "__version__",
    "last_write_wins",
    "open",
    "raise_on_siblings",
]

if TYPE_CHECKING:
    from sapwood.client.buckets import AsyncBucket, AsyncBucketType, Bucket, BucketType
    from sapwood.client.embedded import Store, open
    from sapwood.client.http import AsyncClient, Client
    from sapwood.client.model import (
        AsyncObject,
        BucketTypeInfo,
        ClosedError,
        IndexPage,
        Object,
        Sibling,
        SiblingsError,
        last_write_wins,
        raise_on_siblings,
    )
    from sapwood.core.errors import (
        BadRequest,
        Conflict,
        NotFound,
        PreconditionFailed,
        SapwoodError,
        TooLarge,
        Unavailable,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sapwood' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
