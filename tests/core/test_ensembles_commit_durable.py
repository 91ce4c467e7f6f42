"""Hosts whose batch commit is their durability (a node's "commit" sync mode) tell members their
writes are durable within the event, with no flush round trip; others wait for the flush."""

from __future__ import annotations

from typing import Any

import pytest

from sapwood.core.effects import Flush, Reply
from sapwood.core.ensemble_groups import ENSEMBLE_RAFT_CONFIG, STEPPING_CLOCK_RAFT_CONFIG
from sapwood.core.kvobject import Metadata
from sapwood.core.requests import GetRequest, PutRequest, PutResult
from sapwood.core.ring import BKey
from support.clusternet import ClusterNet

TEXT = Metadata(content_type="text/plain")
KEY = BKey("sc", "b", "k")


def single_node(commit_is_durable: bool) -> ClusterNet:
    net = ClusterNet(["n1"], members=["n1"])
    core = net.core("n1")
    core.ensembles.commit_is_durable = commit_is_durable

    def create(core: Any) -> None:
        core.kv.create_type("sc", {"props": {"consistent": True}})
        core.kv.activate_type("sc")

    net.operate("n1", create)
    net.run_for(200)
    return net


def write(net: ClusterNet, value: bytes, context: Any) -> list[Any]:
    """Submit a compare-and-set straight to the core; the effects of that one event."""
    request = PutRequest(KEY, value, TEXT, context, return_body=True)
    return net.core("n1").submit(10_000, request, net.now)


@pytest.mark.parametrize("commit_is_durable", [True, False])
def test_a_write_is_answered_within_its_event_only_when_commits_are_durable(
        commit_is_durable: bool) -> None:
    net = single_node(commit_is_durable)
    created = net.call("n1", PutRequest(KEY, b"v1", TEXT, {}, return_body=True))
    assert isinstance(created, PutResult) and created.obj is not None
    net.run_for(1_000)  # settle the group (commit index known to every member)

    effects = write(net, b"v2", created.obj.clock)
    replies = [e for e in effects if isinstance(e, Reply) and e.req_id == 10_000]
    flushes = [e for e in effects if isinstance(e, Flush)]
    if commit_is_durable:
        assert len(replies) == 1 and isinstance(replies[0].result, PutResult)
        assert flushes == []
    else:
        assert replies == [] and flushes != []
        net._execute("n1", effects)  # the flush completes: then the answer comes
        assert net.run_until(lambda: 10_000 in net.replies, 5_000)
        assert isinstance(net.replies[10_000], PutResult)
    read = net.call("n1", GetRequest(KEY))
    assert read.obj is not None and read.obj.siblings[0].value == b"v2"


def test_nodes_read_from_leases_and_a_stepping_clock_config_has_the_same_timing() -> None:
    assert ENSEMBLE_RAFT_CONFIG.leases_enabled and ENSEMBLE_RAFT_CONFIG.lease_ms > 0
    assert STEPPING_CLOCK_RAFT_CONFIG.lease_ms == 0
    timing = ("election_timeout_min_ms", "election_timeout_max_ms", "heartbeat_interval_ms",
              "max_clock_drift_rate")
    for name in timing:
        assert getattr(STEPPING_CLOCK_RAFT_CONFIG, name) == getattr(ENSEMBLE_RAFT_CONFIG, name)
