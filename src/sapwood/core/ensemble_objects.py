"""Objects of consistent buckets: how a client request becomes a group command, how a stored
register becomes the object a client sees, and the causal context clients hand back.

A consistent key holds one register: the object's value and metadata, written at a version
(term, index). Clients see it as an object with exactly one sibling and an opaque context that
names the version. That context is a causal context like any other on the outside (base64, so
Riak clients pass it through untouched), but its actors are two reserved names that no vnode
ever has: a context from an eventually consistent bucket is refused by a consistent one, and
the other way round, with a clear 400 instead of a silent mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from sapwood.core.causal import Dot
from sapwood.core.consensus import ABSENT, Delete, Get, Put, Version
from sapwood.core.ensemble_messages import ConsistentCommand
from sapwood.core.ensemble_storage import pack_small
from sapwood.core.errors import BadRequest
from sapwood.core.kvobject import KVObject, Metadata, Sibling, check_value_size, make_vtag
from sapwood.core.requests import DeleteRequest, GetRequest, PutRequest
from sapwood.core.ring import BKey, encode_bkey

TERM_ACTOR = b"$consistent:term"
INDEX_ACTOR = b"$consistent:index"
CONSISTENT_ACTORS = frozenset((TERM_ACTOR, INDEX_ACTOR))
VALUE_FORMAT = 1

ConsistentRequest = GetRequest | PutRequest | DeleteRequest


# --- contexts ------------------------------------------------------------------------------------


def version_clock(version: Version) -> dict[bytes, int]:
    """The causal context of a consistent object at `version`."""
    return {TERM_ACTOR: version.term, INDEX_ACTOR: version.index}


def is_consistent_context(context: Mapping[bytes, int] | None) -> bool:
    return bool(context) and not CONSISTENT_ACTORS.isdisjoint(context or {})


def expected_version(context: Mapping[bytes, int] | None) -> Version | None:
    """The version a write expects, from its context (None: the client sent none)."""
    if not context:
        return None
    if context.keys() != CONSISTENT_ACTORS:
        raise BadRequest(
            "the causal context (X-Riak-Vclock) comes from an eventually consistent bucket; a "
            "consistent bucket takes the context its own read returned (or none, to create)")
    return Version(context[TERM_ACTOR], context[INDEX_ACTOR])


def refuse_consistent_context(context: Mapping[bytes, int] | None) -> None:
    """For eventually consistent buckets: a consistent bucket's context means a mix-up."""
    if is_consistent_context(context):
        raise BadRequest(
            "the causal context (X-Riak-Vclock) comes from a consistent bucket; this bucket is "
            "eventually consistent and takes the context of its own reads")


# --- stored values -------------------------------------------------------------------------------


def encode_value(value: bytes, meta: Metadata, now_ms: int) -> bytes:
    """Value and metadata as one register value (consistent objects carry no indexes)."""
    return pack_small([
        VALUE_FORMAT, value, meta.content_type, meta.charset, meta.encoding,
        [list(pair) for pair in meta.usermeta], [list(link) for link in meta.links], now_ms,
    ])


def decode_value(data: bytes, vtag: str = "") -> tuple[bytes, Metadata]:
    """The value and metadata of a register value (its metadata carrying `vtag`)."""
    try:
        fmt, value, ctype, charset, encoding, usermeta, links, modified = msgpack.unpackb(
            data, raw=False)
        if fmt != VALUE_FORMAT:
            raise ValueError(f"unknown value format {fmt}")
        meta = Metadata(
            content_type=ctype, charset=charset, encoding=encoding,
            usermeta=tuple((str(k), str(v)) for k, v in usermeta) if usermeta else (),
            links=tuple((str(b), str(k), str(t)) for b, k, t in links) if links else (),
            last_modified_ms=int(modified), vtag=vtag,
        )
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise BadRequest(f"a consistent register holds an unreadable value: {exc}") from None
    return bytes(value), meta


def stored_object(version: Version, data: bytes) -> KVObject:
    """The object clients see: one sibling, its vtag and context derived from the version."""
    dot = Dot(version.term.to_bytes(8, "big"), version.index)
    value, meta = decode_value(data, make_vtag(dot))
    return KVObject((Sibling(value, meta, dot),), version_clock(version))


def register_key(bkey: BKey) -> bytes:
    """A group's register key: the whole (type, bucket, key), since buckets share groups."""
    return encode_bkey(bkey)


# --- requests -> commands ------------------------------------------------------------------------


def command_for(request: ConsistentRequest, now_ms: int) -> ConsistentCommand:
    """The group command a request becomes; BadRequest for what consistent buckets refuse."""
    key = register_key(request.bkey)
    if isinstance(request, GetRequest):
        return Get(key)
    if isinstance(request, PutRequest):
        check_value_size(request.value)
        if request.meta.indexes:
            raise BadRequest("secondary indexes are not supported on consistent bucket types; "
                             "store the object without index entries (X-Riak-Index-* headers)")
        expected = expected_version(request.context)
        data = encode_value(request.value, request.meta, now_ms)
        return Put(key, data, ABSENT if expected is None else expected)
    return Delete(key, expected_version(request.context))


def describe(command: Any) -> str:
    if isinstance(command, Get):
        return "read"
    if isinstance(command, Put):
        return "write"
    return "delete"
