"""Header parsing and formatting: links, content types, entity tags, dates, Accept, multipart."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from sapwood.core.causal import Dot
from sapwood.core.errors import BadRequest
from sapwood.core.kvobject import Metadata, Sibling
from sapwood.http.headers import (
    http_date,
    link_header,
    metadata_from_request,
    parse_content_type,
    parse_etags,
    parse_http_date,
    parse_links,
)
from sapwood.http.paths import BucketPath, UrlForm
from sapwood.http.siblings import multipart_body, wants_multipart

names = st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s)
links = st.lists(st.tuples(names, names, names), max_size=5, unique=True)
forms = st.sampled_from(list(UrlForm))


@settings(max_examples=200)
@given(links, forms)
def test_links_round_trip(stored: list[tuple[str, str, str]], form: UrlForm) -> None:
    path = BucketPath("t", "b", form)
    assert parse_links([link_header(path, stored)]) == tuple(stored)


def test_link_forms_and_errors() -> None:
    header = ('</riak/b1/k1>; riaktag="t1", </buckets/b2/keys/k%202>; riaktag="t 2",'
              '</types/x/buckets/b3/keys/k3>;riaktag=t3, </buckets/b>; rel="up"')
    assert parse_links([header]) == (("b1", "k1", "t1"), ("b2", "k 2", "t 2"), ("b3", "k3", "t3"))
    for bad in ("garbage", "</buckets/b/keys/k>", '</elsewhere/x>; riaktag="t"', "<a>; x=1 junk"):
        with pytest.raises(BadRequest):
            parse_links([bad])


def test_content_types() -> None:
    assert parse_content_type("text/plain") == ("text/plain", None)
    assert parse_content_type('text/html; charset="ISO-8859-1"') == ("text/html", "ISO-8859-1")
    assert parse_content_type("application/json;boundary=x; charset=utf-8") == (
        "application/json", "utf-8")


def _headers(pairs: list[tuple[str, str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_metadata_from_request() -> None:
    meta = metadata_from_request(_headers([
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Riak-Meta-A", "1"), ("x-riak-meta-b", "2"),
        ("X-Riak-Index-Tags_bin", "x, y"), ("X-Riak-Index-tags_bin", "y, z"),
        ("X-Riak-Index-n_int", "3, 1"),
    ]))
    assert (meta.content_type, meta.charset) == ("text/plain", "utf-8")
    assert meta.usermeta == (("A", "1"), ("b", "2"))
    assert meta.indexes == (("n_int", 1), ("n_int", 3), ("tags_bin", "x"), ("tags_bin", "y"),
                            ("tags_bin", "z"))
    with pytest.raises(BadRequest, match="Content-Type"):
        metadata_from_request(_headers([]))


def test_entity_tags_and_dates() -> None:
    assert parse_etags('"a", W/"b", c') == ["a", "b", "c"]
    assert parse_etags("*") == ["*"]
    assert parse_etags(None) is None
    assert http_date(1_268_244_701_000) == "Wed, 10 Mar 2010 18:11:41 GMT"
    assert parse_http_date("Wed, 10 Mar 2010 18:11:41 GMT") == 1_268_244_701
    assert parse_http_date("yesterday") is None


@pytest.mark.parametrize(("accept", "multipart"), [
    ("multipart/mixed, application/json, */*;q=0.5", True),
    ("*/*", False),
    (None, False),
    ("text/plain", False),
    ("text/plain;q=0.2, multipart/*", True),
    ("multipart/mixed;q=0", False),
])
def test_sibling_format_negotiation(accept: str | None, multipart: bool) -> None:
    assert wants_multipart(accept) is multipart


@settings(max_examples=100)
@given(st.lists(st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r"),
                        max_size=40), min_size=2, max_size=5))
def test_multipart_parts_split_back_into_siblings(values: list[str]) -> None:
    siblings = [Sibling(v.encode(), Metadata(content_type="text/plain", vtag=f"v{i}",
                                             last_modified_ms=1000 * i), Dot(b"a", i + 1))
                for i, v in enumerate(values)]
    body = multipart_body(BucketPath("default", "b"), siblings, "BOUNDARY")
    # The way Riak clients split it (riak-python-client's regex).
    parts = re.split(rb"\r?\n--BOUNDARY(?:--)?\r?\n", body)[1:-1]
    assert len(parts) == len(values)
    for part, value, i in zip(parts, values, range(len(values)), strict=True):
        head, _, payload = part.partition(b"\r\n\r\n")
        assert payload == value.encode()
        assert f"Etag: v{i}".encode() in head
