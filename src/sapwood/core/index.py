"""Secondary indexes (2i): term parsing, sortable encoding, queries, pagination continuations.

Index entries live beside the objects of each partition, keyed so that a range of terms of one
field in one bucket is one contiguous range of the store: bucket prefix, field, term, key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from sapwood.core.errors import BadRequest
from sapwood.core.limits import (
    MAX_INDEX_ENTRIES,
    MAX_INDEX_TERM_BYTES,
    MAX_RESULTS_PAGE,
    MAX_TERM_REGEX_BYTES,
)
from sapwood.core.ring import encode_bucket_prefix

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
SPECIAL_FIELDS = ("$bucket", "$key")
_TERM_END = b"\x00\x01"
_TERM_AFTER = b"\x00\x02"

Term = str | int


def parse_index_name(name: str) -> str:
    """Normalise an index name (lowercase) and check its suffix."""
    lowered = name.strip().lower()
    if not (lowered.endswith("_bin") or lowered.endswith("_int")) or len(lowered) <= 4:
        raise BadRequest(f"index name {name!r} must end in _bin or _int")
    return lowered


def parse_term(field: str, text: str) -> Term:
    if field.endswith("_int"):
        try:
            value = int(text.strip())
        except ValueError:
            raise BadRequest(f"index {field}: {text!r} is not an integer") from None
        if not INT_MIN <= value <= INT_MAX:
            raise BadRequest(f"index {field}: {value} is outside the signed 64-bit range")
        return value
    if len(text.encode("utf-8", "surrogateescape")) > MAX_INDEX_TERM_BYTES:
        raise BadRequest(f"index {field}: term longer than {MAX_INDEX_TERM_BYTES} bytes")
    return text


def parse_index_header(name: str, values: str) -> list[tuple[str, Term]]:
    """`X-Riak-Index-<name>: v1, v2` -> [(field, term), ...] (values split on commas)."""
    field = parse_index_name(name)
    return [(field, parse_term(field, v.strip())) for v in values.split(",") if v.strip() != ""]


def check_index_count(indexes: Sequence[tuple[str, Term]]) -> None:
    if len(indexes) > MAX_INDEX_ENTRIES:
        raise BadRequest(f"an object may carry at most {MAX_INDEX_ENTRIES} index entries")


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff")


def encode_term(field: str, term: Term) -> bytes:
    """Bytes whose order is the term order: offset big-endian for ints, escaped bytes for bins."""
    if field.endswith("_int"):
        return (int(term) - INT_MIN).to_bytes(8, "big")
    return _escape(str(term).encode("utf-8", "surrogateescape")) + _TERM_END


def decode_term_and_key(field: str, data: bytes) -> tuple[Term, str]:
    if field.endswith("_int"):
        return int.from_bytes(data[:8], "big") + INT_MIN, data[8:].decode("utf-8", "surrogateescape")
    end = _find_term_end(data)
    term = data[:end].replace(b"\x00\xff", b"\x00").decode("utf-8", "surrogateescape")
    return term, data[end + 2 :].decode("utf-8", "surrogateescape")


def _find_term_end(data: bytes) -> int:
    pos = 0
    while True:
        pos = data.index(b"\x00", pos)
        if data[pos + 1 : pos + 2] == b"\x01":
            return pos
        pos += 2


def field_prefix(bucket_type: str, bucket: str, field: str) -> bytes:
    f = field.encode("utf-8")
    return encode_bucket_prefix(bucket_type, bucket) + len(f).to_bytes(1, "big") + f


def entry_key(bucket_type: str, bucket: str, field: str, term: Term, key: str) -> bytes:
    return (
        field_prefix(bucket_type, bucket, field)
        + encode_term(field, term)
        + key.encode("utf-8", "surrogateescape")
    )


def term_range(
    bucket_type: str, bucket: str, field: str, start: Term, end: Term
) -> tuple[bytes, bytes]:
    """[low, high) store range holding every entry with start <= term <= end."""
    prefix = field_prefix(bucket_type, bucket, field)
    low = prefix + encode_term(field, start)
    if field.endswith("_int"):
        top = int(end)
        high = prefix + (encode_term(field, top + 1) if top < INT_MAX else b"\xff" * 9)
    else:
        high = prefix + encode_term(field, end)[: -len(_TERM_END)] + _TERM_AFTER
    return low, high


@dataclass(frozen=True, slots=True)
class IndexQuery:
    """One 2i query. `start == end` for an exact match. Field may be `$bucket` or `$key`."""

    bucket_type: str
    bucket: str
    field: str
    start: Term
    end: Term
    return_terms: bool = False
    max_results: int | None = None
    continuation: tuple[Term, str] | None = None
    term_regex: str | None = None

    @property
    def is_range(self) -> bool:
        return self.start != self.end or self.field == "$key"


def make_query(
    bucket_type: str,
    bucket: str,
    field: str,
    start: str,
    end: str | None = None,
    *,
    return_terms: bool = False,
    max_results: int | None = None,
    continuation: str | None = None,
    term_regex: str | None = None,
) -> IndexQuery:
    """Validate a query's parts as they come from a URL; BadRequest on anything off."""
    if field == "$bucket":
        if end is not None:
            raise BadRequest("$bucket takes one value (the bucket name)")
        lo: Term = ""
        hi: Term = ""
    elif field == "$key":
        lo, hi = start, start if end is None else end
    else:
        field = parse_index_name(field)
        lo = parse_term(field, start)
        hi = lo if end is None else parse_term(field, end)
    if max_results is not None and not 1 <= max_results <= MAX_RESULTS_PAGE:
        raise BadRequest(f"max_results must be from 1 to {MAX_RESULTS_PAGE}")
    if term_regex is not None:
        _check_regex(field, term_regex, end is not None)
    return IndexQuery(
        bucket_type, bucket, field, lo, hi, return_terms and (end is not None or field == "$key"),
        max_results, decode_continuation(continuation) if continuation else None, term_regex,
    )


def _check_regex(field: str, pattern: str, is_range: bool) -> None:
    if len(pattern) > MAX_TERM_REGEX_BYTES:
        raise BadRequest(f"term_regex longer than {MAX_TERM_REGEX_BYTES} characters")
    if field.endswith("_int"):
        raise BadRequest("term_regex can only be used on _bin indexes and $key")
    if not is_range:
        raise BadRequest("term_regex can only be used with range queries")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BadRequest(f"term_regex is not a valid regular expression: {exc}") from None


def encode_continuation(term: Term, key: str) -> str:
    return base64.urlsafe_b64encode(msgpack.packb([term, key])).decode("ascii")


def decode_continuation(text: str) -> tuple[Term, str]:
    try:
        term, key = msgpack.unpackb(base64.urlsafe_b64decode(text.encode("ascii")))
        if not isinstance(key, str) or not isinstance(term, str | int):
            raise ValueError
        return term, key
    except (binascii.Error, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError):
        raise BadRequest("malformed continuation") from None


def after_continuation(query: IndexQuery, items: Iterable[tuple[Term, str]]) -> list[tuple[Term, str]]:
    if query.continuation is None:
        return list(items)
    mark = query.continuation
    return [item for item in items if _sort_key(item) > _sort_key(mark)]


def _sort_key(item: tuple[Term, str]) -> tuple[int, Term, str]:
    term, key = item
    return (0 if isinstance(term, int) else 1, term, key)


def finish_page(
    query: IndexQuery, items: Iterable[tuple[Term, str]]
) -> tuple[list[tuple[Term, str]], str | None]:
    """Merge per-vnode results into one ordered page and its continuation."""
    ordered = sorted(set(after_continuation(query, items)), key=_sort_key)
    if query.max_results is None or len(ordered) < query.max_results:
        return ordered, None
    page = ordered[: query.max_results]
    return page, encode_continuation(*page[-1])


def index_terms_of(indexes: Iterable[tuple[str, Term]]) -> set[tuple[str, Term]]:
    return set(indexes)
