"""Register (LWW) and flag (enable-wins) on their own, outside a map."""

from __future__ import annotations

from sapwood.core.crdt import Flag, FlagOp, Register, RegisterOp, decode_datatype

A, B = b"vnode-a", b"vnode-b"


def test_register_keeps_the_greatest_timestamp() -> None:
    r = Register.new()
    assert r.value() is None
    r.update(RegisterOp(b"first"), A, 10)
    other = Register.new().update(RegisterOp(b"second"), B, 20)
    assert r.merge(other).value() == other.merge(r).value() == "second"
    r.update(RegisterOp(b"third"), A, 30)
    assert r.merge(other).value() == "third"


def test_register_replaces_what_it_observed() -> None:
    r = Register.new().update(RegisterOp(b"a"), A, 1).update(RegisterOp(b"b"), A, 2)
    assert len(r.store.entries) == 1
    assert decode_datatype(r.encode()).value() == "b"


def test_flag_enable_wins_and_disable_removes_what_it_saw() -> None:
    f = Flag.new()
    assert f.value() is False
    f.update(FlagOp(True), A, 0)
    seen = f.context()
    g = f.copy().update(FlagOp(True), B, 0)  # a concurrent enable
    f = f.merge(g)
    f.update(FlagOp(False), A, 0, seen)  # disable with the stale context
    assert f.value() is True
    f.update(FlagOp(False), A, 0)  # disable everything this replica sees
    assert f.value() is False
    assert f.merge(g).value() is False
    assert decode_datatype(f.encode()).value() is False
