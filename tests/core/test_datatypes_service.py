"""Data type updates through the KV service: coordinated at one vnode, replicated as state."""

from __future__ import annotations

import pytest

from sapwood.core.crdt import parse_op
from sapwood.core.datatypes import join_state
from sapwood.core.errors import BadRequest, Conflict, PreconditionFailed
from sapwood.core.requests import GetRequest, PutRequest, UpdateRequest
from sapwood.core.ring import BKey
from support.kvnet import Net

NODES = ["a@h", "b@h", "c@h"]


@pytest.fixture
def net() -> Net:
    n = Net(NODES)
    meta = n.services["a@h"].metadata
    for name, datatype in (("sets", "set"), ("counters", "counter"), ("maps", "map")):
        meta.create_type(name, {"props": {"datatype": datatype}})
        meta.activate_type(name)
    meta.create_type("plain", {"props": {}})
    meta.activate_type("plain")
    return n


def update(net: Net, node: str, key: BKey, type_name: str, body: object,
           context: bytes | None = None) -> object:
    return net.call(node, UpdateRequest(key, type_name, parse_op(type_name, body), context))


def value(net: Net, node: str, key: BKey) -> object:
    state = join_state(net.ok(node, GetRequest(key)).obj)
    return None if state is None else state.value()


def test_counter_increments_through_every_node_add_up(net: Net) -> None:
    key = BKey("counters", "c", "k")
    for i, node in enumerate(NODES * 3):
        update(net, node, key, "counter", {"increment": i + 1})
    assert value(net, "b@h", key) == sum(range(1, 10))


def test_concurrent_set_adds_through_a_partition_merge(net: Net) -> None:
    key = BKey("sets", "s", "k")
    update(net, "a@h", key, "set", {"add": "x"})
    net.down.add("c@h")
    update(net, "a@h", key, "set", {"add": "left"})
    net.down = {"a@h"}
    update(net, "c@h", key, "set", {"add": "right"})
    net.down.clear()
    assert value(net, "b@h", key) == ["left", "right", "x"]


def test_remove_without_context_of_unseen_element_is_refused(net: Net) -> None:
    key = BKey("sets", "s", "k")
    update(net, "a@h", key, "set", {"add": "x"})
    result = update(net, "a@h", key, "set", {"remove": "nope"})
    assert isinstance(result, PreconditionFailed)
    assert value(net, "a@h", key) == ["x"]


def test_wrong_bucket_kind_is_refused(net: Net) -> None:
    assert isinstance(update(net, "a@h", BKey("plain", "b", "k"), "set", {"add": "x"}), BadRequest)
    assert isinstance(update(net, "a@h", BKey("sets", "b", "k"), "counter", 1), BadRequest)
    assert isinstance(net.call("a@h", PutRequest(BKey("sets", "b", "k"), b"v")), BadRequest)
    legacy = UpdateRequest(BKey("default", "b", "k"), "counter", parse_op("counter", 1), legacy=True)
    assert isinstance(net.call("a@h", legacy), Conflict)


def test_map_updates_merge_fields(net: Net) -> None:
    key = BKey("maps", "m", "k")
    update(net, "a@h", key, "map", {"update": {"n_counter": 2, "tags_set": {"add": "a"}}})
    update(net, "b@h", key, "map", {"update": {"name_register": "ada", "n_counter": 3}})
    assert value(net, "c@h", key) == {"n_counter": 5, "tags_set": ["a"], "name_register": "ada"}
