"""G-set: grows only; merge is union."""

from __future__ import annotations

import pytest

import sapwood.core.crdt.gset as gset_module
from sapwood.core.crdt import CorruptDatatype, GSet, SetOp, parse_op
from sapwood.core.errors import BadRequest

A, B = b"vnode-a", b"vnode-b"


def test_adds_and_union_merge() -> None:
    a = GSet.new().update(parse_op("gset", {"add": "x", "add_all": ["z", "y"]}), A, 0)
    b = GSet.new().update(parse_op("gset", {"add": "w"}), B, 0)
    assert a.merge(b).value() == ["w", "x", "y", "z"]
    assert a.value() == ["x", "y", "z"]
    assert a.context()  # Riak returns a context for gsets too; updates ignore it
    assert a.update(parse_op("gset", {"add": "v"}), A, 0, a.context()).value() == [
        "v",
        "x",
        "y",
        "z",
    ]


def test_removes_are_refused() -> None:
    with pytest.raises(BadRequest, match="unknown keys"):
        parse_op("gset", {"remove": "x"})
    g = GSet.new().update(SetOp(adds=(b"x",)), A, 0)
    with pytest.raises(BadRequest, match="only grows"):
        g.update(SetOp(removes=(b"x",)), A, 0)
    assert g.value() == ["x"]


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gset_module, "MAX_GSET_ELEMENTS", 2)
    g = GSet.new().update(SetOp(adds=(b"a", b"b")), A, 0)
    with pytest.raises(BadRequest, match="more than 2"):
        g.update(SetOp(adds=(b"c",)), A, 0)


def test_round_trip_and_damage() -> None:
    g = GSet.new().update(SetOp(adds=(b"\x00", b"text")), A, 0)
    assert GSet.decode(g.encode()) == g
    with pytest.raises(CorruptDatatype):
        GSet.decode(g.encode()[:2] + b"\x91\x05")
