"""Consistent-group bugs the simulator's `consistent` scenario found, each pinned by a focused test
(the seeds are in tests/sim/test_consistent_scenario.py, CONSISTENT_REGRESSION_SEEDS).

- Stranded members: a member created while the ring was changing joins empty and waits to be
  added; if the group never formed (or was founded from the old ring by members that have since
  retired), nobody ever adds it, and the key stayed unavailable for good after a leave.
- Leases under clock steps: a leader's lease is measured on its own clock, which is wall-clock
  time on a node; a step backwards let a deposed leader keep serving reads from its lease while
  a new leader accepted writes (stale reads).
"""

from __future__ import annotations

from typing import Any

from core.consensus.raft_harness import Cluster
from sapwood.core.cluster import AdminRequest
from sapwood.core.consensus import Ok, Put, Role
from sapwood.core.ensemble_groups import STEPPING_CLOCK_RAFT_CONFIG
from sapwood.core.errors import Unavailable
from sapwood.core.requests import GetRequest, PutRequest, PutResult
from sapwood.core.ring import BKey
from support.clusternet import ClusterNet


def sc(key: str) -> BKey:
    return BKey("sc", "b", key)


def _add_consistent_type(net: ClusterNet) -> None:
    def create(core: Any) -> None:
        core.kv.create_type("sc", {"props": {"consistent": True}})
        core.kv.activate_type("sc")

    net.operate("n1", create)
    net.run_for(200)


def _settled(net: ClusterNet) -> bool:
    cores = list(net.cores.values())
    return all(not c.state.next_owners and not c.handoff.active()
               and not c.handoff_candidates() for c in cores) and \
        len({c.state.owners for c in cores}) == 1


def _eventually(net: ClusterNet, attempt: Any, limit_ms: int = 30_000) -> Any:
    deadline = net.now + limit_ms
    while True:
        result = attempt()
        if not isinstance(result, Unavailable) or net.now >= deadline:
            return result
        net.run_for(200)


def test_groups_first_used_during_a_leave_serve_once_the_ring_settles() -> None:
    net = ClusterNet(["n1", "n2", "n3", "n4"], members=["n1", "n2", "n3", "n4"], seed=5)
    _add_consistent_type(net)
    net.call("n1", AdminRequest("leave", ("n3",)))
    net.call("n1", AdminRequest("commit"))
    assert net.run_until(lambda: all(not c.ensembles.ring.settled for c in net.cores.values()),
                         5_000)
    keys = [f"k{i}" for i in range(8)]
    for key in keys:  # first use while every node sees the plan: the members join empty
        for node in ("n1", "n2", "n4"):
            net.submit(node, PutRequest(sc(key), b"early", timeout_ms=3_000))
    net.run_for(1_000)
    assert net.run_until(lambda: _settled(net), 300_000)
    net.run_for(2_000)

    for key in keys:
        written = _eventually(net, lambda key=key: net.call(
            "n2", PutRequest(sc(key), b"later", context=_context(net, key), timeout_ms=2_000)))
        assert isinstance(written, PutResult), f"{key}: {written}"


def _context(net: ClusterNet, key: str) -> dict[bytes, int]:
    read = net.call("n2", GetRequest(sc(key), timeout_ms=2_000))
    return dict(read.obj.clock) if getattr(read, "obj", None) is not None else {}


def test_a_deposed_leader_whose_clock_steps_back_serves_no_stale_read() -> None:
    cluster = Cluster(["a", "b", "c"], seed=7, config=STEPPING_CLOCK_RAFT_CONFIG)
    cluster.start()
    assert cluster.run_until(lambda: cluster.leader() is not None, 20_000)
    old = cluster.leader()
    assert old is not None
    first = cluster.wait(cluster.propose(old, Put(b"k", b"v1", None)), 5_000)
    assert isinstance(first, Ok)
    cluster.run_for(300)  # a heartbeat round: a lease (if any) is fresh

    cluster.isolate(old)
    cluster.nodes[old].clock.offset -= 3_000  # an NTP step on the old leader
    assert cluster.run_until(lambda: cluster.leader() not in (None, old), 20_000)
    new = cluster.leader()
    assert new is not None and cluster.replica(old).role is Role.LEADER
    second = cluster.wait(cluster.propose(new, Put(b"k", b"v2", first.version)), 5_000)
    assert isinstance(second, Ok)

    stale = cluster.wait(cluster.read(old, b"k"), 200)
    assert not (isinstance(stale, Ok) and stale.value == b"v1"), "stale read from a lease"
