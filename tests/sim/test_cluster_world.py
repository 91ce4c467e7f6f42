"""Cluster behaviour in the simulated world: join, ownership handoff, fallbacks, hinted handoff."""

from __future__ import annotations

import pytest

from sapwood.core.cluster import AdminRequest
from sapwood.core.errors import BadRequest, Conflict, NotFound
from sapwood.core.ownership import check_spacing
from sapwood.core.requests import GetRequest, PutRequest
from sapwood.core.ring import BKey
from sapwood.sim.world import World

NODES = ["n1", "n2", "n3"]


def settle(world: World, limit_ms: int = 120_000) -> None:
    """Run until no handoff is waiting or running anywhere."""
    waited = 0
    while waited < limit_ms:
        world.run_for(500)
        waited += 500
        busy = [
            n for n, s in world.nodes.items()
            if s.core and (s.core.handoff_candidates() or s.core.handoff.active()
                           or s.core.state.next_owners)
        ]
        if not busy:
            return
    raise AssertionError(f"handoff did not settle: {busy}")


def test_join_and_commit_balances_the_ring() -> None:
    world = World(1, NODES)
    world.run_for(100)
    world.form_cluster()
    settle(world)
    states = {n: world.core(n).state for n in NODES}
    assert len({s.epoch for s in states.values()}) == 1
    owners = states["n1"].owners
    assert {owners.count(n) for n in NODES} <= {5, 6}
    assert check_spacing(owners, 2) == []  # 3 members cannot space 3 apart on 16 partitions


def test_writes_survive_a_crash_and_hinted_handoff_returns_them() -> None:
    world = World(2, NODES)
    world.run_for(100)
    world.form_cluster()
    settle(world)
    world.crash("n3")
    world.run_for(3_000)  # the others notice
    keys = [BKey("default", "b", f"k{i}") for i in range(30)]
    for key in keys:
        result = world.call("n1", PutRequest(key, b"v", w=2, dw=2))
        assert not isinstance(result, Exception), result
    world.restart("n3")
    settle(world)
    for key in keys:
        found = world.call("n2", GetRequest(key, pr=3))
        assert not isinstance(found, Exception) and found.found, key


def test_admin_errors_change_nothing() -> None:
    world = World(3, ["n1", "n2"])
    world.run_for(100)
    with pytest.raises(BadRequest):
        world.admin("n1", AdminRequest("commit"))
    with pytest.raises(Conflict):
        world.admin("n1", AdminRequest("leave"))
    with pytest.raises(NotFound):
        world.admin("n1", AdminRequest("force-remove", ("nobody",)))
    assert world.core("n1").state.epoch == 1


def test_leave_hands_everything_off() -> None:
    world = World(4, NODES)
    world.run_for(100)
    world.form_cluster()
    settle(world)
    keys = [BKey("default", "b", f"k{i}") for i in range(40)]
    for key in keys:
        world.call("n1", PutRequest(key, b"v"))
    world.admin("n1", AdminRequest("leave", ("n3",)))
    world.admin("n1", AdminRequest("commit"))
    settle(world)
    state = world.core("n1").state
    assert "n3" not in state.owners
    assert world.nodes["n3"].backend.partitions() == []
    for key in keys:
        assert world.call("n2", GetRequest(key, pr=3)).found
