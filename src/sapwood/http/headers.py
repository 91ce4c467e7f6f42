"""Riak object headers: request headers -> Metadata, and sibling metadata -> response headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from multidict import CIMultiDictProxy

from sapwood.core.bucket import DEFAULT_TYPE
from sapwood.core.errors import BadRequest
from sapwood.core.index import Term, check_index_count, parse_index_header
from sapwood.core.kvobject import Index, Link, Metadata, Sibling
from sapwood.core.limits import MAX_LINKS, MAX_USERMETA_ENTRIES
from sapwood.http.paths import BucketPath, UrlForm

VCLOCK = "X-Riak-Vclock"
DELETED = "X-Riak-Deleted"
HARVEST = "X-Sapwood-Harvest"
META_PREFIX = "x-riak-meta-"
INDEX_PREFIX = "x-riak-index-"
RIAK_PREFIX = "x-riak-"  # of both of the above: one cheap test skips every other header
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Clients send few distinct Content-Type values; parsing each once spares every PUT the split.
CONTENT_TYPE_CACHE_ENTRIES = 256
# Objects of a handful of hot buckets are read most; their "up" links are built once.
UP_LINK_CACHE_ENTRIES = 1024

_PARAM = r';\s*[A-Za-z][\w-]*\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,\s]*)\s*'
_LINK = re.compile(r"\s*<([^>]*)>\s*((?:" + _PARAM + r")*)(?:,|\Z)")
_LINK_PARAM = re.compile(r';\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')
_LINK_TARGETS = (
    re.compile(r"^/riak/([^/]+)/([^/]+)$"),
    re.compile(r"^/buckets/([^/]+)/keys/([^/]+)$"),
    re.compile(r"^/types/[^/]+/buckets/([^/]+)/keys/([^/]+)$"),
)
_LINK_FORM = '</buckets/BUCKET/keys/KEY>; riaktag="TAG"'


# --- requests -----------------------------------------------------------------------------------


@lru_cache(maxsize=CONTENT_TYPE_CACHE_ENTRIES)
def parse_content_type(value: str) -> tuple[str, str | None]:
    """`text/plain; charset=utf-8` -> ("text/plain", "utf-8"); other parameters are dropped."""
    media, *params = value.split(";")
    charset = None
    for param in params:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip('"') or None
    return media.strip() or DEFAULT_CONTENT_TYPE, charset


def metadata_from_request(headers: CIMultiDictProxy[str]) -> Metadata:
    """The stored metadata of a PUT/POST; BadRequest for anything Riak would refuse."""
    raw_type = headers.get("Content-Type", "").strip()
    if not raw_type:
        raise BadRequest("Missing Content-Type request header")
    content_type, charset = parse_content_type(raw_type)
    encoding = headers.get("Content-Encoding", "").strip() or None
    riak_headers = [(name, value) for name, value in headers.items()
                    if name[:len(RIAK_PREFIX)].lower() == RIAK_PREFIX]
    links = headers.getall("Link", ())
    return Metadata(
        content_type=content_type,
        charset=charset,
        encoding=encoding,
        usermeta=parse_usermeta(riak_headers) if riak_headers else (),
        indexes=parse_indexes(riak_headers) if riak_headers else (),
        links=parse_links(links) if links else (),
    )


def parse_usermeta(items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    meta = tuple(
        (name[len(META_PREFIX):], value)
        for name, value in items
        if name.lower().startswith(META_PREFIX) and len(name) > len(META_PREFIX)
    )
    if len(meta) > MAX_USERMETA_ENTRIES:
        raise BadRequest(
            f"an object may carry at most {MAX_USERMETA_ENTRIES} X-Riak-Meta-* headers")
    return meta


def parse_indexes(items: Iterable[tuple[str, str]]) -> tuple[Index, ...]:
    """Every `X-Riak-Index-<name>_bin|_int` header, split on commas, deduplicated and ordered."""
    found: set[tuple[str, Term]] = set()
    for name, value in items:
        if name.lower().startswith(INDEX_PREFIX):
            found.update(parse_index_header(name[len(INDEX_PREFIX):], value))
    indexes = sorted(found, key=lambda entry: (entry[0], entry[1]))
    check_index_count(indexes)
    return tuple(indexes)


def parse_links(values: Iterable[str]) -> tuple[Link, ...]:
    """Riak link headers (`</buckets/B/keys/K>; riaktag="T"`, or the /riak/B/K form).

    The `rel="up"` link Riak itself sends back is accepted and ignored.
    """
    links: list[Link] = []
    for value in values:
        pos = 0
        while value[pos:].strip():
            match = _LINK.match(value, pos)
            if match is None:
                raise BadRequest(f"invalid Link header {value!r}: links look like {_LINK_FORM}")
            pos = match.end()
            link = _link(match.group(1), dict(_params(match.group(2))))
            if link is not None:
                links.append(link)
    if len(links) > MAX_LINKS:
        raise BadRequest(f"an object may carry at most {MAX_LINKS} links")
    return tuple(dict.fromkeys(links))


def _params(text: str) -> Iterable[tuple[str, str]]:
    for match in _LINK_PARAM.finditer(text):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        yield match.group(1).lower(), raw


def _link(url: str, params: Mapping[str, str]) -> Link | None:
    if "riaktag" not in params:
        if "rel" in params:
            return None
        raise BadRequest(
            f"invalid Link header: <{url}> has no riaktag; links look like {_LINK_FORM}")
    for pattern in _LINK_TARGETS:
        match = pattern.match(url)
        if match is not None:
            return unquote(match.group(1)), unquote(match.group(2)), unquote(params["riaktag"])
    raise BadRequest(f"invalid Link target <{url}>: links look like {_LINK_FORM}")


def parse_etags(value: str | None) -> list[str] | None:
    """`If-Match` / `If-None-Match`: a list of entity tags (quotes and W/ dropped), or ["*"]."""
    if value is None:
        return None
    tags = []
    for raw in value.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tags.append(tag.strip('"'))
    return [t for t in tags if t]


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch, or None: an unparseable date is ignored, as HTTP says."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


# --- responses ----------------------------------------------------------------------------------


def http_date(ms: int) -> str:
    """RFC 1123, as Last-Modified wants it: `Wed, 10 Mar 2010 18:11:41 GMT`."""
    return _http_date_of_second(ms // 1000)


@lru_cache(maxsize=4096)
def _http_date_of_second(second: int) -> str:
    # Formatting a date is slow and objects written in the same second share it.
    return formatdate(second, usegmt=True)


def content_type_of(meta: Metadata) -> str:
    if meta.charset:
        return f"{meta.content_type}; charset={meta.charset}"
    return meta.content_type


def link_header(path: BucketPath, links: Iterable[Link]) -> str:
    # Links carry no bucket type, and Riak clients only parse the /buckets and /riak forms.
    legacy = path.form is UrlForm.LEGACY
    up = _up_link(path.bucket, legacy)
    if not links:
        return up
    if not legacy:
        path = BucketPath(path.bucket_type, path.bucket, UrlForm.BUCKETS)
    parts = [up]
    parts += [f'<{path.key_url(key, bucket)}>; riaktag="{quote(tag, safe="")}"'
              for bucket, key, tag in links]
    return ", ".join(parts)


@lru_cache(maxsize=UP_LINK_CACHE_ENTRIES)
def _up_link(bucket: str, legacy: bool) -> str:
    # The /buckets form of a bucket's URL does not depend on its type.
    path = BucketPath(DEFAULT_TYPE, bucket, UrlForm.LEGACY if legacy else UrlForm.BUCKETS)
    return f'<{path.bucket_url()}>; rel="up"'


def index_headers(indexes: Iterable[Index]) -> list[tuple[str, str]]:
    grouped: dict[str, list[str]] = {}
    for field, term in indexes:
        grouped.setdefault(field, []).append(str(term))
    return [(f"X-Riak-Index-{field}", ", ".join(terms)) for field, terms in grouped.items()]


def sibling_headers(path: BucketPath, sibling: Sibling, *, in_multipart: bool = False
                    ) -> list[tuple[str, str]]:
    """The headers describing one sibling: of the response itself, or of its multipart part."""
    meta = sibling.meta
    headers = [("Content-Type", content_type_of(meta))]
    if meta.encoding:
        headers.append(("Content-Encoding", meta.encoding))
    headers.append(("Link", link_header(path, meta.links)))
    # Riak quotes the response ETag (webmachine) but writes the bare vtag in multipart parts.
    headers.append(("Etag", meta.vtag) if in_multipart else ("ETag", f'"{meta.vtag}"'))
    headers.append(("Last-Modified", http_date(meta.last_modified_ms)))
    if meta.usermeta:
        headers += [(f"X-Riak-Meta-{name}", value) for name, value in meta.usermeta]
    if meta.indexes:
        headers += index_headers(meta.indexes)
    if meta.deleted:
        headers.append((DELETED, "true"))
    return headers


def harvest_text(harvest: float) -> str:
    return str(round(harvest, 6))
