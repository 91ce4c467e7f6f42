"""Answering with a stored object: one sibling as a plain body, several as 300 Multiple Choices.

With siblings, Riak offers `text/plain` (a list of vtags) and `multipart/mixed` (every sibling
with its own headers), chosen by the Accept header; clients ask for multipart.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from aiohttp import web
from multidict import CIMultiDict

from sapwood.core.causal import encode_context
from sapwood.core.kvobject import KVObject, Sibling
from sapwood.http.headers import VCLOCK, sibling_headers
from sapwood.http.paths import BucketPath

MULTIPART = "multipart/mixed"
CRLF = "\r\n"


def _accept_q(accept: str, media: str) -> float:
    """The quality the Accept header gives `media` (the most specific matching range wins)."""
    main = media.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        kind = kind.lower()
        specificity = {media: 2, f"{main}/*": 1, "*/*": 0}.get(kind, -1)
        if specificity < best[0] or specificity < 0:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = (specificity, q)
    return best[1]


def wants_multipart(accept: str | None) -> bool:
    """True when the client prefers multipart/mixed to text/plain (ties go to text/plain)."""
    if not accept:
        return False
    multipart = _accept_q(accept, MULTIPART)
    return multipart > 0 and multipart > _accept_q(accept, "text/plain")


def vtag_list(siblings: Sequence[Sibling]) -> bytes:
    return ("Siblings:\n" + "".join(f"{s.meta.vtag}\n" for s in siblings)).encode()


def _boundary(siblings: Sequence[Sibling]) -> str:
    while True:
        boundary = secrets.token_urlsafe(18)
        marker = boundary.encode()
        if not any(marker in s.value for s in siblings):
            return boundary


def multipart_body(path: BucketPath, siblings: Sequence[Sibling], boundary: str) -> bytes:
    """Riak's layout: CRLF--boundary, part headers, blank line, value; finally CRLF--boundary--."""
    out = bytearray()
    for sibling in siblings:
        head = "".join(f"{name}: {value}{CRLF}"
                       for name, value in sibling_headers(path, sibling, in_multipart=True))
        out += f"{CRLF}--{boundary}{CRLF}{head}{CRLF}".encode("utf-8", "surrogateescape")
        out += sibling.value
    out += f"{CRLF}--{boundary}--{CRLF}".encode()
    return bytes(out)


def single_response(path: BucketPath, obj: KVObject, sibling: Sibling, status: int = 200
                    ) -> web.Response:
    headers = sibling_headers(path, sibling)
    headers.append((VCLOCK, encode_context(obj.clock)))
    return web.Response(status=status, body=sibling.value, headers=headers)


def siblings_response(path: BucketPath, obj: KVObject, accept: str | None) -> web.Response:
    headers = CIMultiDict({VCLOCK: encode_context(obj.clock)})
    if wants_multipart(accept):
        boundary = _boundary(obj.siblings)
        headers["Content-Type"] = f"{MULTIPART}; boundary={boundary}"
        body = multipart_body(path, obj.siblings, boundary)
    else:
        headers["Content-Type"] = "text/plain"
        body = vtag_list(obj.siblings)
    return web.Response(status=300, body=body, headers=headers)


def object_response(path: BucketPath, obj: KVObject, accept: str | None, status: int = 200
                    ) -> web.Response:
    """200 (or `status`) with the value for one sibling, 300 for several."""
    if len(obj.siblings) == 1:
        return single_response(path, obj, obj.siblings[0], status)
    return siblings_response(path, obj, accept)
