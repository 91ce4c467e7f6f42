"""Riak HTTP on the client side, without I/O: each operation is a request to send and a function
that reads the answer. The sync and async clients run the same operations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx

from sapwood.client.buckets import DEFAULT_TYPE, IndexSpec, Location, Params, Stored
from sapwood.client.model import BucketTypeInfo, Fetched, IndexPage, Sibling, Term
from sapwood.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    SapwoodError,
    TooLarge,
    Unavailable,
)
from sapwood.core.limits import MAX_SIBLINGS

T = TypeVar("T")

ACCEPT_SIBLINGS = "multipart/mixed, application/json, */*;q=0.5"
VCLOCK = "X-Riak-Vclock"
META_PREFIX = "x-riak-meta-"
INDEX_PREFIX = "x-riak-index-"
MAX_ERROR_MESSAGE_CHARS = 4096
ADMIN_TYPES = "/admin/bucket-types"

ERRORS_BY_STATUS: dict[int, type[SapwoodError]] = {
    400: BadRequest, 404: NotFound, 409: Conflict, 412: PreconditionFailed, 413: TooLarge,
    503: Unavailable,
}

_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z][\w-]*\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,]*))*)')
_LINK_PARAM = re.compile(r';\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,]*)')
_LINK_TARGETS = (
    re.compile(r"^/riak/([^/]+)/([^/]+)$"),
    re.compile(r"^/buckets/([^/]+)/keys/([^/]+)$"),
    re.compile(r"^/types/[^/]+/buckets/([^/]+)/keys/([^/]+)$"),
)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise SapwoodError(f"the server answered {self.status} with a body that is not "
                               f"JSON: {self.body[:200]!r}") from None


@dataclass(frozen=True, slots=True)
class Op(Generic[T]):
    call: Call
    read: Callable[[Answer], T]


# --- errors ---------------------------------------------------------------------------------


def error_for(answer: Answer) -> SapwoodError:
    """The typed exception for an error status, carrying the server's message."""
    text = answer.body.decode("utf-8", "replace").strip()[:MAX_ERROR_MESSAGE_CHARS]
    message = text or f"HTTP {answer.status}"
    error_class = ERRORS_BY_STATUS.get(answer.status)
    if error_class is not None:
        return error_class(message)
    error = SapwoodError(message)
    # `status` is a ClassVar (core/errors.py: compiled exceptions need that); an error of a
    # status no class stands for carries its own.
    error.status = answer.status  # type: ignore[misc]
    return error


def expect(answer: Answer, *statuses: int) -> Answer:
    if answer.status not in statuses:
        raise error_for(answer)
    return answer


# --- paths ----------------------------------------------------------------------------------


def _q(name: str) -> str:
    return quote(name, safe="")


def bucket_path(bucket_type: str, bucket: str) -> str:
    if bucket_type == DEFAULT_TYPE:
        return f"/buckets/{_q(bucket)}"
    return f"/types/{_q(bucket_type)}/buckets/{_q(bucket)}"


def object_path(loc: Location) -> str:
    base = bucket_path(loc.bucket_type, loc.bucket) + "/keys"
    return base if loc.key is None else f"{base}/{_q(loc.key)}"


def _query(params: Params) -> dict[str, str]:
    return {name: (str(v).lower() if isinstance(v, bool) else str(v)) for name, v in params.items()}


# --- siblings <-> headers -------------------------------------------------------------------


def parse_content_type(value: str) -> tuple[str, str | None]:
    media, *params = value.split(";")
    charset = None
    for param in params:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip('"') or None
    return media.strip() or "application/octet-stream", charset


def parse_links(values: Iterable[str]) -> list[tuple[str, str, str]]:
    """Riak Link headers; the `rel="up"` link to the bucket is not one of the object's links."""
    links = []
    for value in values:
        for match in _LINK.finditer(value):
            params = {m.group(1).lower(): _unquote_param(m.group(2))
                      for m in _LINK_PARAM.finditer(match.group(2))}
            if "riaktag" not in params:
                continue
            for pattern in _LINK_TARGETS:
                target = pattern.match(match.group(1))
                if target is not None:
                    links.append((unquote(target.group(1)), unquote(target.group(2)),
                                  unquote(params["riaktag"])))
                    break
    return links


def _unquote_param(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _index_term(field: str, text: str) -> Term:
    if field.endswith("_int"):
        try:
            return int(text)
        except ValueError:
            return text
    return text


def _last_modified(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def sibling_from_headers(items: list[tuple[str, str]], body: bytes) -> Sibling:
    """One sibling from a response's (or a multipart part's) headers, names in their own case."""
    lower: dict[str, str] = {}
    links: list[str] = []
    usermeta: dict[str, str] = {}
    indexes: set[tuple[str, Term]] = set()
    for name, value in items:
        key = name.lower()
        if key == "link":
            links.append(value)
        elif key.startswith(META_PREFIX) and len(key) > len(META_PREFIX):
            usermeta[name[len(META_PREFIX):]] = value
        elif key.startswith(INDEX_PREFIX):
            index = key[len(INDEX_PREFIX):]
            indexes.update((index, _index_term(index, term.strip()))
                           for term in value.split(",") if term.strip())
        else:
            lower[key] = value
    content_type, charset = parse_content_type(lower.get("content-type", ""))
    etag = lower.get("etag", "").strip()
    return Sibling(
        value=body, content_type=content_type, charset=charset,
        content_encoding=lower.get("content-encoding") or None, usermeta=usermeta,
        indexes=indexes, links=parse_links(links),
        last_modified=_last_modified(lower.get("last-modified")),
        vtag=(etag[2:] if etag.startswith("W/") else etag).strip('"') or None,
        deleted=lower.get("x-riak-deleted", "").strip().lower() == "true",
    )


def _header_value(what: str, text: str) -> bytes:
    if "\r" in text or "\n" in text:
        raise BadRequest(f"{what} cannot contain line breaks over HTTP")
    return text.encode("utf-8")


def sibling_headers(content: Sibling) -> list[tuple[str, bytes]]:
    """Request headers that store `content` as Riak's HTTP API expects."""
    ctype = content.content_type
    if content.charset:
        ctype += f"; charset={content.charset}"
    headers = [("Content-Type", _header_value("content type", ctype))]
    if content.content_encoding:
        headers.append(("Content-Encoding", _header_value("encoding", content.content_encoding)))
    for name, value in content.usermeta.items():
        if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise BadRequest(f"usermeta name {name!r} is not a valid HTTP header name suffix")
        headers.append((f"X-Riak-Meta-{name}", _header_value(f"usermeta {name}", value)))
    grouped: dict[str, list[str]] = {}
    for index, term in content.indexes:
        text = str(term)
        if "," in text or text != text.strip():
            raise BadRequest(f"index {index}: term {text!r} has a comma or surrounding spaces, "
                             "which Riak's HTTP API cannot carry")
        grouped.setdefault(index, []).append(text)
    for index, terms in sorted(grouped.items()):
        headers.append((f"X-Riak-Index-{index}", _header_value("index", ", ".join(terms))))
    if content.links:
        links = ", ".join(f'</buckets/{_q(b)}/keys/{_q(k)}>; riaktag="{_q(t)}"'
                          for b, k, t in content.links)
        headers.append(("Link", links.encode("ascii")))
    return headers


# --- multipart/mixed ------------------------------------------------------------------------


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    raise SapwoodError(f"multipart answer without a boundary: {content_type!r}")


def _split_part(part: bytes) -> tuple[list[tuple[str, str]], bytes]:
    for eol in (b"\r\n", b"\n"):
        if part.startswith(eol):
            return [], part[len(eol):]
        head, sep, body = part.partition(eol + eol)
        if sep:
            return _header_lines(head.decode("utf-8", "surrogateescape"), eol.decode()), body
    raise SapwoodError("malformed multipart answer: a part without a blank line")


def _header_lines(text: str, eol: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in text.split(eol):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif line.strip():
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return headers


def parse_multipart(content_type: str, body: bytes) -> list[tuple[list[tuple[str, str]], bytes]]:
    """The parts of a multipart/mixed body, byte-exact (values may be binary)."""
    delimiter = b"--" + _boundary(content_type).encode()
    pos = body.find(delimiter)
    if pos < 0:
        raise SapwoodError("malformed multipart answer: no boundary found")
    parts: list[tuple[list[tuple[str, str]], bytes]] = []
    while True:
        pos += len(delimiter)
        if body[pos:pos + 2] == b"--":
            return parts
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            raise SapwoodError("malformed multipart answer: truncated")
        start = line_end + 1
        end = body.find(b"\n" + delimiter, start)
        if end < 0:
            raise SapwoodError("malformed multipart answer: no closing boundary")
        part = body[start:end - 1] if body[end - 1:end] == b"\r" else body[start:end]
        parts.append(_split_part(part))
        if len(parts) > MAX_SIBLINGS:
            raise SapwoodError(f"the answer holds more than {MAX_SIBLINGS} siblings")
        pos = end + 1


def read_object(answer: Answer) -> Fetched:
    """A GET (or returnbody PUT) answer: 200 one sibling, 300 several, 404 none (or tombstone)."""
    context = answer.headers.get(VCLOCK)
    if answer.status == 404:
        deleted = answer.headers.get("X-Riak-Deleted", "").lower() == "true"
        return Fetched([], context if deleted else None)
    if answer.status == 300:
        content_type = answer.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            raise SapwoodError("the server listed siblings without multipart/mixed bodies")
        parts = parse_multipart(content_type, answer.body)
        return Fetched([sibling_from_headers(h, b) for h, b in parts], context)
    expect(answer, 200, 201)
    items = [(name.decode("latin-1"), value.decode("utf-8", "replace"))
             for name, value in answer.headers.raw]
    return Fetched([sibling_from_headers(items, answer.body)], context)


# --- operations -----------------------------------------------------------------------------


def fetch(loc: Location, params: Params) -> Op[Fetched]:
    call = Call("GET", object_path(loc), _query(params),
                [("Accept", ACCEPT_SIBLINGS.encode())])

    def read(answer: Answer) -> Fetched:
        if answer.status == 404 and not _is_object_404(answer):
            raise error_for(answer)
        if answer.status not in (200, 300, 404):
            raise error_for(answer)
        return read_object(answer)

    return Op(call, read)


def _is_object_404(answer: Answer) -> bool:
    """Riak answers a missing key with `not found`; a missing bucket type is an error instead."""
    if answer.headers.get(VCLOCK):
        return True
    text = answer.body.decode("utf-8", "replace").strip().lower()
    return text == "" or text.startswith("not found")


def store(loc: Location, content: Sibling, context: str | None, params: Params,
          return_body: bool) -> Op[Stored]:
    query = _query(params)
    if return_body:
        query["returnbody"] = "true"
    headers = sibling_headers(content)
    headers.append(("Accept", ACCEPT_SIBLINGS.encode()))
    if context:
        headers.append((VCLOCK, context.encode("ascii")))
    method = "PUT" if loc.key is not None else "POST"
    call = Call(method, object_path(loc), query, headers, content.value)

    def read(answer: Answer) -> Stored:
        expect(answer, 200, 201, 204, 300)
        key = loc.key if loc.key is not None else _key_from_location(answer)
        if not return_body or answer.status == 204:
            return Stored(key, None)
        return Stored(key, read_object(answer))

    return Op(call, read)


def _key_from_location(answer: Answer) -> str:
    location = answer.headers.get("Location")
    if not location:
        raise SapwoodError("the server created a key but sent no Location header")
    return unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])


def delete(loc: Location, context: str | None, params: Params) -> Op[bool]:
    headers = [(VCLOCK, context.encode("ascii"))] if context else []
    call = Call("DELETE", object_path(loc), _query(params), headers)

    def read(answer: Answer) -> bool:
        if answer.status == 404 and _is_object_404(answer):
            return False
        expect(answer, 200, 204)
        return True

    return Op(call, read)


def index(spec: IndexSpec) -> Op[IndexPage]:
    path = bucket_path(spec.bucket_type, spec.bucket) + "/index/" + quote(spec.field, safe="$")
    path += "/" + _q(str(spec.start))
    if spec.end is not None:
        path += "/" + _q(str(spec.end))
    query: dict[str, str] = {}
    if spec.return_terms:
        query["return_terms"] = "true"
    if spec.max_results is not None:
        query["max_results"] = str(spec.max_results)
    if spec.continuation:
        query["continuation"] = spec.continuation
    if spec.term_regex is not None:
        query["term_regex"] = spec.term_regex
    if spec.timeout is not None:
        query["timeout"] = str(spec.timeout)

    def read(answer: Answer) -> IndexPage:
        body = expect(answer, 200).json()
        continuation = body.get("continuation") or None
        if "results" in body:
            terms = [(_index_term(spec.field, str(term)), key)
                     for item in body["results"] for term, key in item.items()]
            return IndexPage([key for _, key in terms], terms, continuation)
        return IndexPage(list(body.get("keys", [])), None, continuation)

    return Op(Call("GET", path, query), read)


def _timeout_query(timeout: int | None, **query: str) -> dict[str, str]:
    return query if timeout is None else {**query, "timeout": str(timeout)}


def keys(bucket_type: str, bucket: str, timeout: int | None) -> Op[list[str]]:
    call = Call("GET", bucket_path(bucket_type, bucket) + "/keys",
                _timeout_query(timeout, keys="true"))
    return Op(call, lambda a: list(expect(a, 200).json().get("keys", [])))


def buckets(bucket_type: str, timeout: int | None) -> Op[list[str]]:
    path = "/buckets" if bucket_type == DEFAULT_TYPE else f"/types/{_q(bucket_type)}/buckets"
    call = Call("GET", path, _timeout_query(timeout, buckets="true"))
    return Op(call, lambda a: sorted(expect(a, 200).json().get("buckets", [])))


def _json_body(props: Mapping[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    return [("Content-Type", b"application/json")], json.dumps({"props": dict(props)}).encode()


def _props(answer: Answer) -> dict[str, Any]:
    body = expect(answer, 200).json()
    return dict(body.get("props", body))


def _done(answer: Answer) -> None:
    expect(answer, 200, 201, 204)


def bucket_props(bucket_type: str, bucket: str) -> Op[dict[str, Any]]:
    return Op(Call("GET", bucket_path(bucket_type, bucket) + "/props"), _props)


def set_bucket_props(bucket_type: str, bucket: str, props: Mapping[str, Any]) -> Op[None]:
    headers, body = _json_body(props)
    return Op(Call("PUT", bucket_path(bucket_type, bucket) + "/props", {}, headers, body), _done)


def reset_bucket_props(bucket_type: str, bucket: str) -> Op[None]:
    return Op(Call("DELETE", bucket_path(bucket_type, bucket) + "/props"), _done)


def type_props(name: str) -> Op[dict[str, Any]]:
    return Op(Call("GET", f"/types/{_q(name)}/props"), _props)


def create_type(name: str, props: Mapping[str, Any]) -> Op[None]:
    headers, body = _json_body(props)
    return Op(Call("POST", f"{ADMIN_TYPES}/{_q(name)}", {}, headers, body), _done)


def activate_type(name: str) -> Op[None]:
    return Op(Call("POST", f"{ADMIN_TYPES}/{_q(name)}/activate"), _done)


def update_type(name: str, props: Mapping[str, Any]) -> Op[None]:
    """Riak's own route (not the admin one), so updating works against Riak too."""
    headers, body = _json_body(props)
    return Op(Call("PUT", f"/types/{_q(name)}/props", {}, headers, body), _done)


def list_types() -> Op[list[BucketTypeInfo]]:
    def read(answer: Answer) -> list[BucketTypeInfo]:
        entries = expect(answer, 200).json().get("types", [])
        return sorted((_type_info(entry) for entry in entries), key=lambda info: info.name)

    return Op(Call("GET", ADMIN_TYPES), read)


def _type_info(entry: Mapping[str, Any]) -> BucketTypeInfo:
    """`{"name", "status": "created"|"active", "props"}` as the admin routes describe a type."""
    props = dict(entry.get("props", {}))
    active = entry.get("status") == "active"
    props["active"] = active
    return BucketTypeInfo(str(entry["name"]), active, props)


def ping() -> Op[bool]:
    return Op(Call("GET", "/ping"), lambda a: a.status == 200)


def stats() -> Op[dict[str, Any]]:
    return Op(Call("GET", "/stats", {}, [("Accept", b"application/json")]),
              lambda a: dict(expect(a, 200).json()))
