"""Consistent buckets on a real 3-node cluster of `sapwood start` processes.

Kill -9 the node leading a key's group: a new leader takes over and operations continue, losing
nothing acknowledged. Stop two of the three nodes: consistent reads and writes answer 503 (the
group has no majority) while an available bucket still takes writes, side by side: each bucket
type's choice of CAP. Deadlines only guard against hangs; nothing asserts how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner

from integration.clusterkit import (
    TEXT,
    Cluster,
    ClusterError,
    client_timeout,
    form_cluster,
    log_tails,
    wait_view,
)
from sapwood import PreconditionFailed
from sapwood.cli.main import main as cli
from sapwood.client.http import Client

if TYPE_CHECKING:
    from integration.conftest import NodeProcess

pytestmark = pytest.mark.integration

OP_DEADLINE_S = 45.0  # a group elects a leader (after a crash: once the old one is noticed gone)
OP_TIMEOUT = {"timeout": "3000"}  # server-side deadline of each consistent operation
AVAILABLE = {"n_val": 3, "w": 1, "dw": 1, "r": 1}


@pytest.fixture(scope="module")
def cluster(module_node_factory: Callable[..., Any],
            tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    formed = form_cluster(module_node_factory, tmp_path_factory.mktemp("consistent"), count=3)
    formed.create_type("sc", {"consistent": True})
    formed.create_type("av", AVAILABLE)
    return formed


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=client_timeout()) as client:
        yield client


def key_path(key: str) -> str:
    return f"/types/sc/buckets/b/keys/{key}"


def spread_key(http: httpx.Client, node: NodeProcess, prefix: str) -> tuple[str, str]:
    """A key whose group has one member on each node, and that group's id."""
    for i in range(200):
        key = f"{prefix}{i}"
        preflist = http.get(node.url + key_path(key) + "/preflist").json()["preflist"]
        if len({entry["node"] for entry in preflist}) == 3:
            return key, f"g{preflist[0]['partition']}/3"
    raise AssertionError("no key has its preference list on three nodes")


def until_done(what: str, nodes: Sequence[NodeProcess],
               attempt: Callable[[], httpx.Response], want: int) -> httpx.Response:
    """Repeat `attempt` while it answers 503 (an election may be running); it must then give
    `want`."""
    deadline = time.monotonic() + OP_DEADLINE_S
    while True:
        try:
            response: httpx.Response | None = attempt()
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code != 503:
            assert response.status_code == want, (
                f"{what}: {response.status_code} {response.text}\n{log_tails(nodes)}")
            return response
        if time.monotonic() > deadline:
            last = "no answer" if response is None else f"{response.status_code} {response.text}"
            raise ClusterError(f"{what}: still unavailable after {OP_DEADLINE_S} s ({last})\n"
                               f"{log_tails(nodes)}")
        time.sleep(0.2)


def leader_of(http: httpx.Client, nodes: Sequence[NodeProcess], group: str
              ) -> tuple[NodeProcess, int]:
    """The node hosting the leader of `group` (highest term) and that term."""
    best: tuple[int, NodeProcess] | None = None
    for node in nodes:
        for row in http.get(node.url + "/admin/ensembles").json()["members"]:
            if row["group"] == group and row["role"] == "leader" and (
                    best is None or row["term"] > best[0]):
                best = (row["term"], node)
    assert best is not None, f"{group} has no leader"
    return best[1], best[0]


def test_the_python_client_sees_compare_and_set(cluster: Cluster, http: httpx.Client) -> None:
    key, _ = spread_key(http, cluster.first, "client")
    until_done("first write", cluster.nodes, lambda: http.put(
        cluster.first.url + key_path(key), content=b"1", headers=TEXT, params=OP_TIMEOUT), 204)
    with Client(cluster.nodes[1].url) as client:
        bucket = client.bucket_type("sc").bucket("b")
        first = bucket.get(key)
        second = bucket.get(key)
        first.data = "2"
        first.store()
        second.data = "lost"
        with pytest.raises(PreconditionFailed):
            second.store()
        with pytest.raises(PreconditionFailed):
            bucket.new(key, "again").store()
        assert bucket.get(key).data == "2"
        assert bucket.delete(bucket.get(key)) is True
        assert bucket.get(key).exists is False


def test_kill_9_of_the_leader_a_new_leader_takes_over(cluster: Cluster,
                                                        http: httpx.Client) -> None:
    nodes = cluster.nodes
    key, group = spread_key(http, nodes[0], "failover")
    path = key_path(key)
    until_done("first write", nodes, lambda: http.put(
        nodes[0].url + path, content=b"v1", headers=TEXT, params=OP_TIMEOUT), 204)
    written = until_done("read", nodes, lambda: http.get(nodes[1].url + path), 200)
    assert written.content == b"v1"
    leader, term = leader_of(http, nodes, group)

    leader.kill9()
    survivors = [n for n in nodes if n is not leader]
    read = until_done("read after the crash", survivors,
                      lambda: http.get(survivors[0].url + path, params=OP_TIMEOUT), 200)
    assert read.content == b"v1"
    assert read.headers["X-Riak-Vclock"] == written.headers["X-Riak-Vclock"]
    until_done("compare-and-set after the crash", survivors, lambda: http.put(
        survivors[1].url + path, content=b"v2", headers={
            **TEXT, "X-Riak-Vclock": read.headers["X-Riak-Vclock"]}, params=OP_TIMEOUT), 204)
    new_leader, new_term = leader_of(http, survivors, group)
    assert new_term > term and new_leader is not leader
    stale = http.put(survivors[0].url + path, content=b"v3", params=OP_TIMEOUT,
                     headers={**TEXT, "X-Riak-Vclock": read.headers["X-Riak-Vclock"]})
    assert stale.status_code == 412, stale.text

    leader.start()
    wait_view(nodes, {n.name: True for n in nodes})
    back = until_done("read from the restarted node", nodes,
                      lambda: http.get(leader.url + path, params=OP_TIMEOUT), 200)
    assert back.content == b"v2"

    status = CliRunner().invoke(cli, ["ensemble", "status", "--node", leader.url])
    assert status.exit_code == 0, status.output
    row = next(line for line in status.output.splitlines() if line.startswith(group + " "))
    assert new_leader.name in row and "(none)" not in row
    stats = http.get(new_leader.url + "/stats").json()["sapwood_ensembles"]
    assert stats["elections"] >= 1 and stats["commits"] >= 1


def test_without_a_majority_consistent_buckets_refuse_and_available_ones_accept(
        cluster: Cluster, http: httpx.Client) -> None:
    nodes = cluster.nodes
    wait_view(nodes, {n.name: True for n in nodes})
    key, _ = spread_key(http, nodes[0], "cap")
    path, available = key_path(key), f"/types/av/buckets/b/keys/{key}"
    until_done("write before the outage", nodes, lambda: http.put(
        nodes[0].url + path, content=b"before", headers=TEXT, params=OP_TIMEOUT), 204)
    assert http.put(nodes[0].url + available, content=b"before", headers=TEXT).status_code == 204

    survivor, stopped = nodes[0], nodes[1:]
    for node in stopped:
        node.stop()
    try:
        wait_view([survivor], {n.name: False for n in stopped})
        vclock = http.get(nodes[0].url + available).headers["X-Riak-Vclock"]
        answers = {
            "consistent read": http.get(survivor.url + path, params=OP_TIMEOUT),
            "consistent create": http.put(survivor.url + key_path(key + "-new"), content=b"x",
                                          headers=TEXT, params=OP_TIMEOUT),
            "consistent delete": http.delete(survivor.url + path, params=OP_TIMEOUT),
        }
        for what, answer in answers.items():
            assert answer.status_code == 503, f"{what}: {answer.status_code} {answer.text}"
            assert "unavailable" in answer.text and "majority" in answer.text, answer.text
        accepted = http.put(survivor.url + available, content=b"during",
                            headers={**TEXT, "X-Riak-Vclock": vclock})
        assert accepted.status_code == 204, accepted.text
        assert http.get(survivor.url + available).content == b"during"
    finally:
        for node in stopped:
            node.start()
    wait_view(nodes, {n.name: True for n in nodes})
    after = until_done("read once the majority is back", nodes,
                       lambda: http.get(nodes[2].url + path, params=OP_TIMEOUT), 200)
    assert after.content == b"before"
