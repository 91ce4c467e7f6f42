"""Where a request points (bucket type, bucket, key) and the URLs Sapwood writes back.

Three URL forms reach the same objects: `/types/T/buckets/B/keys/K`, `/buckets/B/keys/K` (the
default type) and the legacy `/riak/B/K`. A Location answers in the form the client used; Link
headers use `/buckets/...` (or `/riak/...` for legacy requests), since links carry no type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from urllib.parse import quote

from aiohttp import web

from sapwood.core.bucket import DEFAULT_TYPE
from sapwood.core.ring import BKey

LEGACY_PREFIX = "/riak"
BUCKET_PATH_CACHE_ENTRIES = 1024


def _q(name: str) -> str:
    return quote(name, safe="")


class UrlForm(Enum):
    TYPED = "typed"
    BUCKETS = "buckets"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class BucketPath:
    bucket_type: str
    bucket: str
    form: UrlForm = UrlForm.BUCKETS

    def bkey(self, key: str) -> BKey:
        return BKey(self.bucket_type, self.bucket, key)

    def bucket_url(self) -> str:
        if self.form == UrlForm.LEGACY:
            return f"{LEGACY_PREFIX}/{_q(self.bucket)}"
        if self.form == UrlForm.TYPED:
            return f"/types/{_q(self.bucket_type)}/buckets/{_q(self.bucket)}"
        return f"/buckets/{_q(self.bucket)}"

    def key_url(self, key: str, bucket: str | None = None) -> str:
        """The URL of `key` in this bucket (or in `bucket` of the same type: links)."""
        target = self if bucket is None else BucketPath(self.bucket_type, bucket, self.form)
        if self.form == UrlForm.LEGACY:
            return f"{target.bucket_url()}/{_q(key)}"
        return f"{target.bucket_url()}/keys/{_q(key)}"


def type_of(request: web.Request) -> str:
    return request.match_info.get("type", DEFAULT_TYPE)


def url_form(request: web.Request) -> UrlForm:
    if "type" in request.match_info:
        return UrlForm.TYPED
    if request.path == LEGACY_PREFIX or request.path.startswith(LEGACY_PREFIX + "/"):
        return UrlForm.LEGACY
    return UrlForm.BUCKETS


def bucket_path(request: web.Request) -> BucketPath:
    match = request.match_info
    bucket_type = match.get("type")
    if bucket_type is not None:
        return _bucket_path(bucket_type, match["bucket"], UrlForm.TYPED)
    return _bucket_path(DEFAULT_TYPE, match["bucket"], url_form(request))


@lru_cache(maxsize=BUCKET_PATH_CACHE_ENTRIES)
def _bucket_path(bucket_type: str, bucket: str, form: UrlForm) -> BucketPath:
    # Built on every object request; a few hot buckets take most of them.
    return BucketPath(bucket_type, bucket, form)


def key_of(request: web.Request) -> str:
    return request.match_info["key"]
