"""The simulated world and network: partitions of every shape, message faults, node faults."""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.cluster import ClusterNode
from sapwood.core.requests import GetRequest, PutRequest
from sapwood.core.ring import BKey
from sapwood.sim.disk import SimBackend
from sapwood.sim.network import MIN_NODES, SHAPES, Network, NetworkConfig
from sapwood.sim.world import TRACE_CHUNK, LostInCrash, NotRunning, World

NODES = [f"n{i}" for i in range(1, 6)]
KEY = BKey("default", "b", "k")


def reachable(net: Network, a: str, b: str) -> bool:
    return net.can_reach(a, b)


def network(seed: int = 1, **config: Any) -> Network:
    return Network(random.Random(seed), NetworkConfig(**config))


# --- partitions -------------------------------------------------------------------------------


def test_halves_cut_every_link_across_and_none_within() -> None:
    net = network()
    net.halves(NODES)
    side = {n: frozenset(m for m in NODES if reachable(net, n, m)) for n in NODES}
    assert len(set(side.values())) == 2
    for a, b in itertools.permutations(NODES, 2):
        assert reachable(net, a, b) == (side[a] == side[b])
    assert sorted(len(s) for s in set(side.values())) == [2, 3]


def test_isolate_leaves_one_node_alone_and_heal_restores_everything() -> None:
    net = network()
    net.isolate("n3", NODES)
    for other in NODES:
        if other != "n3":
            assert not reachable(net, "n3", other) and not reachable(net, other, "n3")
    assert reachable(net, "n1", "n2")
    net.heal()
    assert all(reachable(net, a, b) for a, b in itertools.permutations(NODES, 2))


def test_bridge_node_talks_to_both_halves_which_cannot_talk() -> None:
    net = network(4)
    net.bridge(NODES)
    bridge = [n for n in NODES if all(reachable(net, n, m) and reachable(net, m, n)
                                      for m in NODES)]
    assert len(bridge) == 1
    rest = [n for n in NODES if n != bridge[0]]
    cut_pairs = [(a, b) for a, b in itertools.permutations(rest, 2) if not reachable(net, a, b)]
    assert len(cut_pairs) == 2 * 2 * 2  # two halves of two, both directions


def test_majorities_ring_gives_every_node_a_different_majority() -> None:
    net = network(5)
    net.majorities_ring(NODES)
    seen = {n: frozenset(m for m in NODES if reachable(net, n, m)) for n in NODES}
    assert all(len(s) == 3 for s in seen.values())  # a majority of 5, counting itself
    assert len(set(seen.values())) == len(NODES)
    assert all(reachable(net, a, b) == reachable(net, b, a) for a, b in itertools.product(NODES, NODES))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), shape=st.sampled_from(SHAPES), size=st.integers(2, 7))
def test_one_way_partitions_only_ever_cut_one_direction(seed: int, shape: str, size: int) -> None:
    nodes = [f"n{i}" for i in range(max(size, MIN_NODES[shape]))]
    net = network(seed)
    net.partition(shape, nodes, one_way=True)
    assert net.cut, "a partition must cut something"
    for a, b in net.cut:
        assert (b, a) not in net.cut


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), shape=st.sampled_from(SHAPES), size=st.integers(2, 7))
def test_symmetric_partitions_cut_both_directions(seed: int, shape: str, size: int) -> None:
    nodes = [f"n{i}" for i in range(max(size, MIN_NODES[shape]))]
    net = network(seed)
    net.partition(shape, nodes)
    assert net.cut
    assert all((b, a) in net.cut for a, b in net.cut)


def test_unknown_or_too_small_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown partition shape"):
        network().partition("donut", NODES)
    with pytest.raises(ValueError, match="at least 4 nodes"):
        network().partition("majorities_ring", NODES[:3])


# --- message faults ---------------------------------------------------------------------------


def test_loss_drops_and_duplication_doubles() -> None:
    lossy = network(loss=1.0)
    assert lossy.delays("a", "b") == ()
    assert lossy.delays("a", "a") == (0,)  # a node always hears itself
    doubled = network(duplication=1.0)
    assert len(doubled.delays("a", "b")) == 2


def test_slow_tail_reorders_messages() -> None:
    net = network(slow_fraction=0.5, latency_ms=(1, 5), slow_latency_ms=(50, 60))
    delays = [net.delays("a", "b")[0] for _ in range(200)]
    assert any(d >= 50 for d in delays) and any(d <= 5 for d in delays)


def test_bad_network_config_is_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        NetworkConfig(loss=1.5)
    with pytest.raises(ValueError, match="range"):
        NetworkConfig(latency_ms=(5, 1))


# --- node faults ------------------------------------------------------------------------------


def formed(seed: int = 1) -> World:
    world = World(seed, NODES[:3], members=NODES[:3])
    world.run_for(1_000)
    return world


def test_the_digest_hashes_the_repr_of_every_delivery_and_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    entries: list[tuple[Any, ...]] = []
    world = World(3, NODES[:3], members=NODES[:3], drift=0.01)
    deliver = ClusterNode.on_message

    def on_message(core: ClusterNode, sender: str, msg: Any, now_ms: int) -> Any:
        entries.append((world.now, core.name, sender, type(msg).__name__))
        return deliver(core, sender, msg, now_ms)

    monkeypatch.setattr(ClusterNode, "on_message", on_message)
    world.record("note", "it's", 1)
    entries.append((world.now, "note", "it's", 1))
    world.run_for(1_000)
    for i in range(5):
        world.call(NODES[i % 3], PutRequest(KEY, b"v%d" % i, w=3, dw=3))
    world.record("end", None, (1, "x"))
    entries.append((world.now, "end", None, (1, "x")))
    assert 50 < len(entries) < TRACE_CHUNK  # one chunk
    assert world.digest() == hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def test_a_formed_world_serves_writes() -> None:
    world = formed()
    result = world.call("n1", PutRequest(KEY, b"v", w=3, dw=3))
    assert not isinstance(result, Exception), result
    assert world.call("n2", GetRequest(KEY, r=3)).found


def test_requests_to_a_down_or_paused_node_fail_at_once() -> None:
    world = formed()
    world.crash("n2")
    answers: list[object] = []
    world.submit("n2", GetRequest(KEY), answers.append)
    assert isinstance(answers[0], NotRunning)
    world.restart("n2")
    world.pause("n2")
    world.submit("n2", GetRequest(KEY), answers.append)
    assert isinstance(answers[1], NotRunning)


def test_a_crash_with_a_request_in_flight_reports_it_indeterminate() -> None:
    world = formed()
    answers: list[object] = []
    world.submit("n1", PutRequest(KEY, b"v"), answers.append)
    world.crash("n1")
    assert len(answers) == 1 and isinstance(answers[0], LostInCrash)


def test_a_crash_loses_exactly_the_unsynced_writes() -> None:
    world = formed()
    backend = world.nodes["n1"].backend
    backend.put(0, b"synced", b"1")
    backend.sync()
    backend.put(0, b"unsynced", b"2")
    world.crash("n1")
    assert backend.get(0, b"synced") == b"1"
    assert backend.get(0, b"unsynced") is None
    world.restart("n1")
    assert world.nodes["n1"].incarnation == 2
    assert world.core("n1").state.owners == world.core("n2").state.owners


def test_a_flush_covers_only_the_writes_made_before_it_started() -> None:
    backend = SimBackend()
    backend.put(0, b"early", b"1")
    mark = backend.mark()
    backend.put(0, b"late", b"2")
    backend.sync_through(mark)
    backend.crash()
    assert backend.get(0, b"early") == b"1"
    assert backend.get(0, b"late") is None
    stale = backend.mark()
    backend.put(0, b"after", b"3")
    backend.crash()
    backend.put(0, b"again", b"4")
    backend.sync_through(stale)  # a mark from before a crash covers nothing written since
    backend.crash()
    assert backend.get(0, b"again") is None


def backend_contents(backend: SimBackend) -> tuple[Any, ...]:
    return (list(backend.fold_objects(0)), list(backend.index_range(0, b"", b"\xff")),
            list(backend.meta_items(b"")))


BACKEND_STEP = st.one_of(
    st.tuples(st.just("put"), st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=2),
              st.lists(st.sampled_from([b"i1", b"i2"]), max_size=2)),
    st.tuples(st.just("delete"), st.sampled_from([b"a", b"b", b"c"]),
              st.lists(st.sampled_from([b"i1", b"i2"]), max_size=2)),
    st.tuples(st.just("meta"), st.sampled_from([b"m1", b"m2"]), st.binary(max_size=2)),
    st.tuples(st.just("mark")),
    st.tuples(st.just("flush"), st.integers(0, 3)),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(BACKEND_STEP, max_size=25))
def test_a_crash_restores_the_state_of_the_latest_completed_flush(steps: list[Any]) -> None:
    backend = SimBackend()
    marks: list[tuple[int, tuple[Any, ...]]] = []  # flushes started: (mark, contents then)
    durable_mark, durable = 0, backend_contents(backend)
    for step in steps:
        if step[0] == "put":
            backend.put(0, step[1], step[2], add_index=step[3])
        elif step[0] == "delete":
            backend.delete(0, step[1], remove_index=step[2])
        elif step[0] == "meta":
            backend.meta_put(step[1], step[2])
        elif step[0] == "mark":
            marks.append((backend.mark(), backend_contents(backend)))
        elif marks:  # a flush completes, not necessarily the latest one started
            mark, contents = marks.pop(max(0, len(marks) - 1 - step[1]))
            backend.sync_through(mark)
            if mark > durable_mark:  # an older flush completing late adds nothing
                durable_mark, durable = mark, contents
    backend.crash()
    assert backend_contents(backend) == durable


def test_a_paused_node_answers_after_it_resumes() -> None:
    world = formed()
    answers: list[object] = []
    world.submit("n1", PutRequest(KEY, b"v", w=3, dw=3), answers.append)
    world.pause("n2")
    world.run_for(1_000)
    assert answers == []  # n2 holds a replica and hears nothing while paused
    world.resume("n2")
    world.run_for(1_000)
    assert len(answers) == 1 and not isinstance(answers[0], Exception), answers


def test_clocks_are_skewed_and_drift() -> None:
    world = World(3, NODES, skew_ms=500, drift=0.01)
    world.run_for(100_000)
    clocks = {world.clock(node) for node in world.nodes.values()}
    assert len(clocks) == len(NODES)
    assert max(clocks) - min(clocks) > 500  # drift has added to the initial skew
