"""The KV service driven over a small deterministic network: quorums, siblings, deletes, repair."""

from __future__ import annotations

import pytest

from sapwood.core.errors import BadRequest, Conflict, NotFound, Unavailable
from sapwood.core.index import make_query
from sapwood.core.kvobject import Metadata
from sapwood.core.limits import MAX_SIBLINGS
from sapwood.core.requests import (
    CoverageRequest,
    DeleteRequest,
    GetRequest,
    GetResult,
    ListKeys,
    PutRequest,
)
from sapwood.core.ring import BKey
from support.kvnet import Net

NODES = ["a@h", "b@h", "c@h"]


@pytest.fixture
def net() -> Net:
    n = Net(NODES)
    n.services["a@h"].metadata.create_type("mult", {"props": {}})
    n.services["a@h"].metadata.activate_type("mult")
    return n


def test_put_then_get_from_any_node(net: Net) -> None:
    key = BKey("default", "b", "k")
    net.ok("a@h", PutRequest(key, b"v1", Metadata(content_type="text/plain")))
    for node in NODES:
        result = net.ok(node, GetRequest(key))
        assert [s.value for s in result.obj.siblings] == [b"v1"]


def test_stale_context_writes_become_siblings_and_resolve(net: Net) -> None:
    key = BKey("mult", "b", "k")
    net.ok("a@h", PutRequest(key, b"base"))
    context = dict(net.ok("a@h", GetRequest(key)).obj.clock)
    for i in range(5):
        net.ok(NODES[i % 3], PutRequest(key, b"v%d" % i, context=context))
    obj = net.ok("b@h", GetRequest(key)).obj
    assert sorted(s.value for s in obj.siblings) == [b"v%d" % i for i in range(5)]
    net.ok("c@h", PutRequest(key, b"merged", context=dict(obj.clock)))
    assert [s.value for s in net.ok("a@h", GetRequest(key)).obj.siblings] == [b"merged"]


def test_allow_mult_false_resolves_to_newest(net: Net) -> None:
    key = BKey("default", "b", "k")
    net.ok("a@h", PutRequest(key, b"old"))
    net.now += 5
    net.ok("b@h", PutRequest(key, b"new"))
    obj = net.ok("c@h", GetRequest(key)).obj
    assert [s.value for s in obj.siblings] == [b"new"]


def test_write_survives_one_node_down_with_sloppy_quorum(net: Net) -> None:
    key = BKey("default", "b", "k")
    net.down.add("c@h")
    net.ok("a@h", PutRequest(key, b"v", w=2))
    assert net.ok("b@h", GetRequest(key, r=2)).found


def test_pw_fails_when_primaries_are_down(net: Net) -> None:
    key = BKey("default", "b", "k")
    net.down.update({"b@h", "c@h"})
    result = net.call("a@h", PutRequest(key, b"v", pw=3))
    assert isinstance(result, Unavailable)
    assert "PW-value unsatisfied" in result.message


def test_quorum_validation(net: Net) -> None:
    key = BKey("default", "b", "k")
    assert isinstance(net.call("a@h", GetRequest(key, r=4)), BadRequest)
    assert isinstance(net.call("a@h", PutRequest(key, b"v", w=0)), BadRequest)
    assert isinstance(net.call("a@h", GetRequest(key, r="most")), BadRequest)
    assert not net.ok("a@h", GetRequest(key)).found


def test_too_many_siblings_is_refused_and_nothing_stored(net: Net) -> None:
    key = BKey("mult", "b", "k")
    for i in range(MAX_SIBLINGS):
        net.ok("a@h", PutRequest(key, b"%d" % i))
    result = net.call("a@h", PutRequest(key, b"one too many"))
    assert isinstance(result, Conflict)
    values = {s.value for s in net.ok("a@h", GetRequest(key)).obj.siblings}
    assert len(values) == MAX_SIBLINGS and b"one too many" not in values


def test_delete_then_reap_after_delete_mode(net: Net) -> None:
    key = BKey("default", "b", "k")
    net.ok("a@h", PutRequest(key, b"v"))
    net.ok("a@h", DeleteRequest(key))
    result: GetResult = net.ok("b@h", GetRequest(key))
    assert not result.found and result.obj is not None and result.obj.is_tombstone
    net.advance(3_001)
    after: GetResult = net.ok("b@h", GetRequest(key))
    assert after.obj is None
    assert isinstance(net.call("a@h", DeleteRequest(key)), NotFound)


def test_read_repair_fills_a_replica_that_missed_the_write(net: Net) -> None:
    key = BKey("default", "b", "k")
    primaries = net.ring.primaries(key, 3)
    missed = primaries[2]
    net.down.add(missed.node)
    net.ok("a@h" if missed.node != "a@h" else "b@h", PutRequest(key, b"v", w=2))
    net.down.clear()
    vnode = net.services[missed.node].vnode(missed.partition)
    assert vnode.read(key) is None
    net.ok(primaries[0].node, GetRequest(key))
    repaired = vnode.read(key)
    assert repaired is not None and repaired.siblings[0].value == b"v"


def test_coverage_lists_every_key_once_and_reports_harvest(net: Net) -> None:
    keys = {f"k{i}" for i in range(40)}
    for k in keys:
        net.ok("a@h", PutRequest(BKey("default", "b", k), b"v"))
    full = net.ok("b@h", CoverageRequest(ListKeys("default", "b")))
    assert sorted(full.items) == sorted(keys) and full.harvest == 1.0
    net.ok("a@h", PutRequest(BKey("default", "one", "x"), b"v"))
    net.metadata.set_bucket_props("default", "one", {"props": {"n_val": 1}})
    net.down.add("c@h")
    partial = net.ok("a@h", CoverageRequest(ListKeys("default", "one")))
    assert partial.harvest < 1.0


def test_index_query_pages_through_every_match(net: Net) -> None:
    for i in range(25):
        meta = Metadata(indexes=(("n_int", i), ("tag_bin", "x")))
        net.ok("a@h", PutRequest(BKey("default", "b", f"k{i:02d}"), b"v", meta))
    seen: list[str] = []
    continuation = None
    while True:
        query = make_query("default", "b", "n_int", "5", "19", max_results=4,
                           continuation=continuation)
        page = net.ok("c@h", CoverageRequest(query))
        seen += [key for _, key in page.index_results]
        continuation = page.continuation
        if continuation is None:
            break
    assert seen == [f"k{i:02d}" for i in range(5, 20)]


def test_too_few_reachable_replicas_answer_at_once(net: Net) -> None:
    """With two of three nodes down, a read needing r=3 and a write needing w=3 fail at once
    (Riak's "insufficient vnodes") instead of waiting for a timeout that is never armed."""
    key = BKey("default", "b", "k")
    net.ok("a@h", PutRequest(key, b"v"))
    net.down.update({"b@h", "c@h"})
    req = net.submit("a@h", GetRequest(key, r=3))
    net.run()
    (result,) = net.replies[req]
    assert isinstance(result, Unavailable) and "R-value unsatisfied" in result.message
    req = net.submit("a@h", PutRequest(key, b"v2", w=3))
    net.run()
    (result,) = net.replies[req]
    assert isinstance(result, Unavailable) and "W-value unsatisfied" in result.message


def test_a_request_finished_in_its_own_step_leaves_no_timer_armed() -> None:
    from sapwood.core.effects import CancelTimer, Flush, SetTimer
    from sapwood.core.ring import Ring
    from sapwood.core.service import KVService
    from sapwood.storage.memory import MemoryBackend

    service = KVService("a@h", Ring.single("a@h", 8), MemoryBackend(), 1)
    service.set_commit_durable(True)
    key = BKey("default", "b", "k")
    for req_id, request in enumerate([PutRequest(key, b"v", Metadata()), GetRequest(key)], 1):
        effects = service.submit(req_id, request, 0)
        assert [type(e).__name__ for e in effects] == ["Reply"]
    service.set_commit_durable(False)  # now the put waits for its flushes: a later step
    effects = service.submit(3, PutRequest(key, b"w", Metadata()), 0)
    assert any(isinstance(e, SetTimer) for e in effects)
    later = [e for flush in effects if isinstance(flush, Flush)
             for e in service.on_message(flush.done, 0)]
    assert [e.key for e in later if isinstance(e, CancelTimer)] == [("request", 3)]
