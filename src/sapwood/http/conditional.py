"""Conditional requests (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since).

They are checked against the object as the client would read it: its siblings' vtags are its
entity tags and its newest sibling gives its modification time (HTTP dates have whole seconds).
The check and the write are not atomic, as in Riak; strongly consistent types give real CAS.
"""

from __future__ import annotations

from enum import Enum

from multidict import CIMultiDictProxy

from sapwood.core.errors import PreconditionFailed
from sapwood.core.kvobject import KVObject
from sapwood.http.headers import parse_etags, parse_http_date

CONDITIONAL_HEADERS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")


class ReadOutcome(Enum):
    SEND = "send"
    NOT_MODIFIED = "not_modified"


def has_conditions(headers: CIMultiDictProxy[str]) -> bool:
    # Asked on every object request: four lookups, without a generator around them.
    return ("If-Match" in headers or "If-None-Match" in headers
            or "If-Modified-Since" in headers or "If-Unmodified-Since" in headers)


def _vtags(obj: KVObject) -> set[str]:
    return {s.meta.vtag for s in obj.siblings}


def _modified_s(obj: KVObject) -> int:
    return max(s.meta.last_modified_ms for s in obj.siblings) // 1000


def _matches(tags: list[str], obj: KVObject) -> bool:
    return "*" in tags or bool(_vtags(obj) & set(tags))


def _check_preconditions(headers: CIMultiDictProxy[str], current: KVObject | None) -> None:
    """If-Match and If-Unmodified-Since: failing either refuses any method with 412."""
    if_match = parse_etags(headers.get("If-Match"))
    if if_match is not None:
        if current is None:
            raise PreconditionFailed("If-Match failed: the object does not exist")
        if not _matches(if_match, current):
            raise PreconditionFailed("If-Match failed: the object's ETag does not match")
    since = parse_http_date(headers.get("If-Unmodified-Since"))
    if current is not None and since is not None and _modified_s(current) > since:
        raise PreconditionFailed("If-Unmodified-Since failed: the object was modified since")


def check_read(headers: CIMultiDictProxy[str], current: KVObject) -> ReadOutcome:
    """For GET/HEAD of an existing object: 412, 304 (NOT_MODIFIED) or send it."""
    _check_preconditions(headers, current)
    none_match = parse_etags(headers.get("If-None-Match"))
    if none_match is not None:
        return ReadOutcome.NOT_MODIFIED if _matches(none_match, current) else ReadOutcome.SEND
    since = parse_http_date(headers.get("If-Modified-Since"))
    if since is not None and _modified_s(current) <= since:
        return ReadOutcome.NOT_MODIFIED
    return ReadOutcome.SEND


def check_write(headers: CIMultiDictProxy[str], current: KVObject | None) -> None:
    """For PUT/POST/DELETE: raise PreconditionFailed (412) unless every condition holds.

    `current` is None when the key does not exist (or holds only a tombstone).
    """
    _check_preconditions(headers, current)
    if current is None:
        return
    none_match = parse_etags(headers.get("If-None-Match"))
    if none_match is not None and _matches(none_match, current):
        raise PreconditionFailed("If-None-Match failed: the object exists"
                                 if "*" in none_match else
                                 "If-None-Match failed: the object's ETag matches")
    since = parse_http_date(headers.get("If-Modified-Since"))
    if since is not None and _modified_s(current) <= since:
        raise PreconditionFailed("If-Modified-Since failed: the object was not modified since")
