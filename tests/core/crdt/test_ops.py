"""Parsing Riak's JSON op shapes: every accepted shape, and a clear BadRequest for the rest."""

from __future__ import annotations

from typing import Any

import pytest

import sapwood.core.crdt.ops as ops_module
from sapwood.core.crdt import (
    TYPES,
    CorruptDatatype,
    Counter,
    CounterOp,
    FieldKey,
    FlagOp,
    HllOp,
    MapOp,
    RegisterOp,
    SetOp,
    decode_datatype,
    merge_datatypes,
    new_datatype,
    parse_field_name,
    parse_op,
)
from sapwood.core.errors import BadRequest


def test_counter_shapes() -> None:
    assert parse_op("counter", 5) == CounterOp(5)
    assert parse_op("counter", {"increment": 2}) == CounterOp(2)
    assert parse_op("counter", {"decrement": 2}) == CounterOp(-2)
    assert parse_op("counter", {"increment": -2, "context": "ignored"}) == CounterOp(-2)


def test_set_shapes_combine_adds_and_removes() -> None:
    op = parse_op("set", {"add": "a", "add_all": ["b", "a"], "remove": "c", "remove_all": ["d"]})
    assert op == SetOp(adds=(b"a", b"b"), removes=(b"c", b"d"))
    assert parse_op("gset", {"add_all": ["é"]}) == SetOp(adds=("é".encode(),))
    assert parse_op("hll", {"add": "x", "add_all": ["y"]}) == HllOp((b"x", b"y"))


def test_map_shapes_nest() -> None:
    op = parse_op(
        "map",
        {
            "remove": ["old_set"],
            "update": {
                "a_counter": 5,
                "b_register": "v",
                "c_flag": "enable",
                "d_map": {"update": {"e_flag": "disable"}, "remove": "f_counter"},
                "e_set": {"add": "x"},
            },
            "context": "base64 for the caller",
        },
    )
    assert op == MapOp(
        removes=(FieldKey("old", "set"),),
        updates=(
            (FieldKey("a", "counter"), CounterOp(5)),
            (FieldKey("b", "register"), RegisterOp(b"v")),
            (FieldKey("c", "flag"), FlagOp(True)),
            (
                FieldKey("d", "map"),
                MapOp((FieldKey("f", "counter"),), ((FieldKey("e", "flag"), FlagOp(False)),)),
            ),
            (FieldKey("e", "set"), SetOp(adds=(b"x",))),
        ),
    )


def test_field_names_split_on_the_last_underscore() -> None:
    assert parse_field_name("first_name_register") == FieldKey("first_name", "register")
    assert FieldKey("first_name", "register").json_name == "first_name_register"


BAD_OPS: list[tuple[str, Any, str]] = [
    ("counter", "5", "integer"),
    ("counter", True, "integer"),
    ("counter", 1.5, "integer"),
    ("counter", {"increment": 1, "decrement": 1}, "increment"),
    ("counter", {"add": 1}, "increment"),
    ("counter", {"increment": "1"}, "integer"),
    ("counter", 2**64, "beyond"),
    ("set", [], "object"),
    ("set", {}, "object"),
    ("set", {"add": 1}, "string"),
    ("set", {"add_all": "x"}, "list"),
    ("set", {"insert": "x"}, "unknown keys"),
    ("gset", {"remove": "x"}, "unknown keys"),
    ("hll", {"remove": "x"}, "unknown keys"),
    ("hll", {"add": None}, "null"),
    ("map", {"update": {"x": 1}}, "must be a name ending"),
    ("map", {"update": {"x_gset": {"add": "a"}}}, "must be a name ending"),
    ("map", {"update": {"_counter": 1}}, "must be a name ending"),
    ("map", {"update": {"x_flag": "on"}}, "enable"),
    ("map", {"update": {"x_register": 5}}, "string"),
    ("map", {"update": {"x_set": {"remove_all": [1]}}}, "string"),
    ("map", {"update": []}, "object"),
    ("map", {"remove": [5]}, "string"),
    ("map", {"remove": {}}, "list"),
    ("map", {}, "object"),
    ("map", {"remove": [], "update": {}}, "nothing"),
    ("map", {"add": "x_set"}, "unknown keys"),
    ("map", {"update": {"m_map": {"update": {"c_counter": {"context": 1}}}}}, "increment"),
    ("register", {"assign": "x"}, "string"),
    ("bogus", {}, "unknown data type"),
]


@pytest.mark.parametrize(("type_name", "body", "message"), BAD_OPS)
def test_bad_shapes_are_bad_requests(type_name: str, body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_op(type_name, body)


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    big = "x" * (ops_module.MAX_SET_ELEMENT_BYTES + 1)
    with pytest.raises(BadRequest, match="larger than"):
        parse_op("set", {"add": big})
    with pytest.raises(BadRequest, match="longer than"):
        parse_field_name("f" * ops_module.MAX_FIELD_NAME_BYTES + "_set")
    monkeypatch.setattr(ops_module, "MAX_OP_ELEMENTS", 3)
    with pytest.raises(BadRequest, match="more than 3 elements"):
        parse_op("set", {"add_all": ["a", "b"], "remove_all": ["c", "d"]})
    with pytest.raises(BadRequest, match="more than 3 elements"):
        parse_op(
            "map",
            {
                "update": {
                    "a_map": {"update": {"b_counter": 1, "c_set": {"add_all": ["1", "2", "3"]}}}
                }
            },
        )
    monkeypatch.setattr(ops_module, "MAX_MAP_DEPTH", 2)
    parse_op("map", {"update": {"a_map": {"update": {"b_counter": 1}}}})
    with pytest.raises(BadRequest, match="deeper than 2"):
        parse_op(
            "map", {"update": {"a_map": {"update": {"b_map": {"update": {"c_flag": "enable"}}}}}}
        )


def test_registry_creates_decodes_and_merges() -> None:
    assert set(TYPES) == {"counter", "set", "gset", "hll", "map"}
    for name in TYPES:
        state = new_datatype(name)
        assert state.type_name == name
        assert type(decode_datatype(state.encode())) is type(state)
    with pytest.raises(BadRequest, match="unknown data type"):
        new_datatype("register")
    with pytest.raises(CorruptDatatype):
        decode_datatype(b"\x7f\x01")
    with pytest.raises(CorruptDatatype):
        decode_datatype(b"")
    a = Counter.new().update(CounterOp(1), b"a", 0)
    assert merge_datatypes(a, Counter.new().update(CounterOp(2), b"b", 0)).value() == 3
    with pytest.raises(CorruptDatatype):
        merge_datatypes(a, new_datatype("set"))
