"""Data types over real HTTP on a 3-node devrel: Riak's JSON op shapes sent through different
nodes merge, contexts fetched from one node work on another, bad ops change nothing, and a
counter keeps every acknowledged increment through a kill -9 of one node.

One module-scoped cluster (ring of 16, n_val 3) with a bucket type per data type. Updates use the
default quorums: each is coordinated by a vnode on the node it was sent to and acknowledged once
two replicas hold it, so a default (r=2) read through any node sees it. Deadlines only guard
against hangs: no test asserts on how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from integration.clusterkit import (
    REQUEST_TIMEOUT_MS,
    Cluster,
    RoundRobin,
    client_timeout,
    form_cluster,
    wait_view,
)

if TYPE_CHECKING:
    from integration.conftest import NodeProcess

pytestmark = pytest.mark.integration

DATATYPES = {"counters": "counter", "sets": "set", "gsets": "gset", "hlls": "hll", "maps": "map"}
JSON = {"Content-Type": "application/json"}
ROUND_ACKS = 15  # acknowledged increments wanted in each phase of the crash test


@pytest.fixture(scope="module")
def cluster(module_node_factory: Callable[..., Any],
            tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    formed = form_cluster(module_node_factory, tmp_path_factory.mktemp("dtcluster"), count=3)
    for name, datatype in DATATYPES.items():
        formed.create_type(name, {"datatype": datatype})
    return formed


@pytest.fixture
def nodes(cluster: Cluster) -> list[NodeProcess]:
    """The members, every one up and every handoff done before the test starts."""
    cluster.wait_all_up()
    cluster.wait_settled()
    return list(cluster.nodes)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=client_timeout()) as client:
        yield client


def url(node: NodeProcess, bucket_type: str, key: str, bucket: str = "b") -> str:
    return f"{node.url}/types/{bucket_type}/buckets/{bucket}/datatypes/{key}"


def update(http: httpx.Client, node: NodeProcess, bucket_type: str, key: str, op: Any,
           context: str | None = None) -> None:
    body = op if context is None else {**op, "context": context}
    answer = http.post(url(node, bucket_type, key), json=body)
    assert answer.status_code == 204, f"{op} via {node.name}: {answer.status_code} {answer.text}"


def fetch(http: httpx.Client, node: NodeProcess, bucket_type: str, key: str) -> dict[str, Any]:
    answer = http.get(url(node, bucket_type, key))
    assert answer.status_code == 200, f"{key} via {node.name}: {answer.status_code} {answer.text}"
    body: dict[str, Any] = answer.json()
    assert body["type"] == DATATYPES[bucket_type]
    assert ("context" in body) == (bucket_type not in ("counters", "hlls")), body
    return body


def values(http: httpx.Client, nodes: Sequence[NodeProcess], bucket_type: str, key: str
           ) -> dict[str, Any]:
    """node name -> the value a fetch through that node answers."""
    return {node.name: fetch(http, node, bucket_type, key)["value"] for node in nodes}


def everywhere(nodes: Sequence[NodeProcess], value: Any) -> dict[str, Any]:
    return {node.name: value for node in nodes}


# --- ops through different nodes merge ----------------------------------------------------------


def test_counter_ops_through_every_node_add_up(nodes: list[NodeProcess],
                                               http: httpx.Client) -> None:
    ops: list[Any] = [{"increment": 5}, {"decrement": 2}, 3, -1, {"increment": 10}]
    for round_ in range(2):  # each op through two different nodes
        for i, op in enumerate(ops):
            update(http, nodes[(i + round_) % len(nodes)], "counters", "sum", op)
    assert values(http, nodes, "counters", "sum") == everywhere(nodes, 2 * (5 - 2 + 3 - 1 + 10))


def test_set_removes_with_a_context_fetched_from_another_node(nodes: list[NodeProcess],
                                                               http: httpx.Client) -> None:
    first, second, third = nodes
    update(http, first, "sets", "ctx", {"add_all": ["a", "b", "c"]})
    seen = fetch(http, second, "sets", "ctx")
    assert seen["value"] == ["a", "b", "c"]
    update(http, first, "sets", "ctx", {"add": "d"})  # after the fetch: its context misses it
    update(http, third, "sets", "ctx", {"remove_all": ["a", "d"]}, seen["context"])
    # "a" was seen and goes; the unseen add of "d" wins over the remove.
    assert values(http, nodes, "sets", "ctx") == everywhere(nodes, ["b", "c", "d"])

    # A context fetched through the third node removes, through the first, what it saw.
    again = fetch(http, third, "sets", "ctx")
    update(http, second, "sets", "ctx", {"add": "e"})
    update(http, first, "sets", "ctx", {"remove_all": ["b", "c", "d"], "add": "f"},
           again["context"])
    assert values(http, nodes, "sets", "ctx") == everywhere(nodes, ["e", "f"])


def test_gset_and_hll_adds_through_every_node_merge(nodes: list[NodeProcess],
                                                    http: httpx.Client) -> None:
    for i, node in enumerate(nodes):
        update(http, node, "gsets", "union", {"add_all": [f"g{i}", f"g{i + 1}"]})
        update(http, node, "gsets", "union", {"add": "shared"})
        update(http, node, "hlls", "union", {"add_all": [f"h{j}" for j in range(4 * i, 4 * i + 6)]})
    gset = fetch(http, nodes[0], "gsets", "union")
    # A gset's context travels, though it removes nothing: an add carrying it is accepted.
    update(http, nodes[2], "gsets", "union", {"add": "late"}, gset["context"])
    assert values(http, nodes, "gsets", "union") == everywhere(
        nodes, ["g0", "g1", "g2", "g3", "late", "shared"])
    assert values(http, nodes, "hlls", "union") == everywhere(nodes, 4 * 2 + 6)


def test_map_field_updates_through_different_nodes_merge(nodes: list[NodeProcess],
                                                         http: httpx.Client) -> None:
    first, second, third = nodes
    update(http, first, "maps", "m", {"update": {"visits_counter": {"increment": 2},
                                                 "name_register": "ada"}})
    update(http, second, "maps", "m", {"update": {"tags_set": {"add_all": ["x", "y"]},
                                                  "vip_flag": "enable", "visits_counter": 3}})
    update(http, third, "maps", "m", {"update": {"address_map": {"update": {
        "city_register": "paris", "zips_set": {"add_all": ["75001", "75002"]},
        "hits_counter": 1}}}})
    update(http, first, "maps", "m", {"update": {"address_map": {"update": {
        "hits_counter": {"increment": 4}, "geo_map": {"update": {"lat_register": "48.8"}}}}}})
    merged = {"visits_counter": 5, "name_register": "ada", "tags_set": ["x", "y"],
              "vip_flag": True, "address_map": {"city_register": "paris", "hits_counter": 5,
                                                "zips_set": ["75001", "75002"],
                                                "geo_map": {"lat_register": "48.8"}}}
    assert values(http, nodes, "maps", "m") == everywhere(nodes, merged)

    seen = fetch(http, first, "maps", "m")
    update(http, second, "maps", "m", {"update": {"tags_set": {"add": "z"}}})  # unseen by `seen`
    update(http, third, "maps", "m", {
        "remove": ["tags_set", "name_register"],
        "update": {"vip_flag": "disable", "address_map": {
            "remove": ["geo_map"], "update": {"zips_set": {"remove": "75001"}}}}},
        seen["context"])
    # The removed set keeps only the concurrent add; everything else follows the remove.
    assert values(http, nodes, "maps", "m") == everywhere(nodes, {
        "visits_counter": 5, "tags_set": ["z"], "vip_flag": False,
        "address_map": {"city_register": "paris", "hits_counter": 5, "zips_set": ["75002"]}})


def test_a_missing_key_is_a_typed_notfound_on_every_node(nodes: list[NodeProcess],
                                                         http: httpx.Client) -> None:
    for bucket_type, datatype in DATATYPES.items():
        for node in nodes:
            answer = http.get(url(node, bucket_type, "never-written"))
            assert (answer.status_code, answer.json()) == (
                404, {"type": datatype, "error": "notfound"}), (node.name, answer.text)


# --- bad ops change nothing -----------------------------------------------------------------------

NOT_JSON = {"content": b'{"add": ', "headers": JSON}
WRONG_MEDIA = {"content": b'{"add": "x"}', "headers": {"Content-Type": "text/plain"}}
# bucket type -> (a valid op to start from, [(bad request, status, words the message holds)])
BAD_OPS: dict[str, tuple[Any, list[tuple[dict[str, Any], int, str]]]] = {
    "counters": ({"increment": 7}, [
        ({"json": {"add": "x"}}, 400, "counter op"),
        ({"json": {"increment": "one"}}, 400, "integer"),
    ]),
    "sets": ({"add_all": ["kept", "also"]}, [
        ({"json": {"increment": 1}}, 400, "set op"),
        ({"json": {"remove": "unseen"}}, 412, "unseen"),
        ({"json": {"remove_all": ["kept", "unseen"]}}, 412, "unseen"),
        ({"json": {"add": "x", "context": "not base64!"}}, 400, "context"),
    ]),
    "gsets": ({"add": "kept"}, [
        ({"json": {"remove": "kept"}}, 400, "unknown keys"),
        ({"json": 5}, 400, "gset op"),
    ]),
    "hlls": ({"add_all": ["a", "b"]}, [
        ({"json": {"remove": "a"}}, 400, "unknown keys"),
        ({"json": {"add": ["nested"]}}, 400, "string"),
    ]),
    "maps": ({"update": {"kept_counter": 1, "tags_set": {"add": "t"}}}, [
        ({"json": {"add": "x"}}, 400, "unknown keys"),
        ({"json": {"update": {"nosuffix": 1}}}, 400, "must be a name ending"),
        ({"json": {"remove": ["ghost_counter"]}}, 412, "ghost"),
        ({"json": {"remove": ["kept_counter"],
                   "update": {"tags_set": {"remove": "unseen"}}}}, 412, "unseen"),
    ]),
}


@pytest.mark.parametrize("bucket_type", sorted(BAD_OPS))
def test_bad_ops_are_4xx_with_a_message_and_change_nothing(
        nodes: list[NodeProcess], http: httpx.Client, bucket_type: str) -> None:
    start, bad = BAD_OPS[bucket_type]
    update(http, nodes[0], bucket_type, "bad", start)
    before = values(http, nodes, bucket_type, "bad")
    attempts = [*bad, (NOT_JSON, 400, "not valid JSON"), (WRONG_MEDIA, 415, "application/json")]
    for i, (request, status, words) in enumerate(attempts):
        node = nodes[i % len(nodes)]
        answer = http.post(url(node, bucket_type, "bad"), **request)
        assert (answer.status_code, words in answer.text) == (status, True), (
            f"{request} via {node.name}: {answer.status_code} {answer.text}")
    assert values(http, nodes, bucket_type, "bad") == before


def test_a_bucket_type_without_a_datatype_refuses_data_type_ops(
        nodes: list[NodeProcess], http: httpx.Client) -> None:
    for node in nodes:
        answer = http.post(url(node, "default", "plain"), json={"increment": 1})
        assert (answer.status_code, "no datatype" in answer.text) == (400, True), answer.text
    assert http.get(f"{nodes[0].url}/types/default/buckets/b/keys/plain").status_code == 404


# --- a kill -9 under counter increments -----------------------------------------------------------


class Outcome(Enum):
    ACKED = "acked"  # a 2xx answer: applied, and must be in the final value
    FAILED = "failed"  # refused (4xx) or never sent (connection refused): not applied
    UNKNOWN = "unknown"  # 5xx, timeout, reset: may or may not have been applied


@dataclass(frozen=True, slots=True)
class Increment:
    node: str
    delta: int
    outcome: Outcome
    detail: str
    sent_at: float  # time.monotonic() when sent


def outcome_of(answer: httpx.Response | httpx.HTTPError) -> tuple[Outcome, str]:
    if isinstance(answer, httpx.ConnectError):
        return Outcome.FAILED, f"not connected: {answer}"
    if isinstance(answer, httpx.HTTPError):
        return Outcome.UNKNOWN, f"{type(answer).__name__}: {answer}"
    if 200 <= answer.status_code < 300:
        return Outcome.ACKED, ""
    kind = Outcome.FAILED if answer.status_code < 500 else Outcome.UNKNOWN
    return kind, f"{answer.status_code} {answer.text.strip()[:160]}"


class Incrementer(RoundRobin[Increment]):
    """Increments one counter round-robin over `targets` until stopped, recording every outcome.

    Targets can be dropped (a killed node) and added back (once restarted).
    """

    noun = "increments"

    def __init__(self, targets: Sequence[NodeProcess], path: str) -> None:
        super().__init__(targets)
        self.path = path

    def succeeded(self, record: Increment) -> bool:
        return record.outcome == Outcome.ACKED

    def send(self, http: httpx.Client, node: NodeProcess, i: int) -> Increment:
        delta = 1 + i % 3  # unequal deltas: a lost or doubled one shows in the sum
        sent = time.monotonic()
        answer: httpx.Response | httpx.HTTPError
        try:
            answer = http.post(node.url + self.path, json={"increment": delta},
                               params={"timeout": str(REQUEST_TIMEOUT_MS)})
        except httpx.HTTPError as exc:
            answer = exc
        outcome, detail = outcome_of(answer)
        return Increment(node.name, delta, outcome, detail, sent)


def total(sent: Sequence[Increment], outcome: Outcome) -> int:
    return sum(s.delta for s in sent if s.outcome == outcome)


def test_a_counter_keeps_every_acknowledged_increment_through_a_kill9(
        cluster: Cluster, nodes: list[NodeProcess], http: httpx.Client) -> None:
    victim = nodes[2]
    survivors = [n for n in nodes if n is not victim]
    incrementer = Incrementer(nodes, "/types/counters/buckets/crash/datatypes/c")
    incrementer.start()
    try:
        incrementer.wait_for_succeeded(ROUND_ACKS, nodes)
        # Killed while still a target: an increment in flight to it is cut off (indeterminate),
        # and one sent before the drop is refused (not applied).
        victim.kill9()
        incrementer.drop_target(victim)
        wait_view(survivors, {victim.name: False})
        noticed = time.monotonic()
        incrementer.wait_for_succeeded(incrementer.count_succeeded() + ROUND_ACKS, survivors)
        victim.start()  # a new incarnation on the same data: its vnodes take new actor ids
        cluster.wait_all_up()
        incrementer.add_target(victim)
        incrementer.wait_for_succeeded(incrementer.count_succeeded() + ROUND_ACKS, nodes)
    finally:
        sent = incrementer.finish()
        if not victim.running:
            victim.start()
    after = [s for s in sent if s.sent_at >= noticed]
    failed_after = [s for s in after if s.outcome != Outcome.ACKED]
    assert after and not failed_after, (
        f"increments failed after the crash was noticed: {failed_after[:5]}")
    assert any(s.node == victim.name and s.outcome == Outcome.ACKED for s in after), (
        "no increment went through the restarted node")

    cluster.wait_all_up()
    cluster.wait_settled()
    acked, unknown = total(sent, Outcome.ACKED), total(sent, Outcome.UNKNOWN)
    for node in nodes:
        for params in ({}, {"r": "all"}):
            answer = http.get(url(node, "counters", "c", "crash"), params=params)
            assert answer.status_code == 200, answer.text
            value = answer.json()["value"]
            assert acked <= value <= acked + unknown, (
                f"via {node.name} {params}: {value}, acknowledged {acked}, unknown {unknown}; "
                f"not acknowledged: {[s for s in sent if s.outcome != Outcome.ACKED][:5]}")
