"""The simulated world and network: partitions of every shape, message faults, node faults."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.requests import GetRequest, PutRequest
from sapwood.core.ring import BKey
from sapwood.sim.network import MIN_NODES, SHAPES, Network, NetworkConfig
from sapwood.sim.world import LostInCrash, NotRunning, SimBackend, World

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
