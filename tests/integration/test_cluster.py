"""A real cluster of `sapwood start` processes on 127.0.0.1: membership, failures, handoff.

One 3-node cluster (ring of 16 partitions) is shared by the module; tests that crash, pause or
add nodes put it back as they found it. Deadlines only guard against hangs: no test asserts on
how long anything took.
"""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import Message
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from integration.clusterkit import (
    TEXT,
    VIEW_DEADLINE_S,
    Answer,
    Cluster,
    Traffic,
    active_members,
    admin,
    client_timeout,
    closed_port,
    comparable,
    form_cluster,
    owners,
    paused,
    status,
    wait_until,
    wait_view,
    write_secret,
)

if TYPE_CHECKING:
    from integration.conftest import NodeProcess

pytestmark = pytest.mark.integration

TYPES = {"n2": {"n_val": 2}, "n1": {"n_val": 1}, "multi": {}}
MULTIPART = {"Accept": "multipart/mixed, application/json, */*;q=0.5"}
# Every replica must hold the key: a notfound counts as a failure, not as an answer.
STRICT_N2 = {"r": "2", "pr": "2", "notfound_ok": "false"}
EXTRA_ROUNDS = 10  # requests made after the cluster noticed a failure
SHORT_WAIT_S = 5.0  # the client's bound on a request with ?timeout=1000


@pytest.fixture(scope="module")
def shared(module_node_factory: Callable[..., Any],
           tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    cluster = form_cluster(module_node_factory, tmp_path_factory.mktemp("cluster"), count=3)
    for name, props in TYPES.items():
        cluster.create_type(name, props)
    return cluster


@pytest.fixture
def cluster(shared: Cluster) -> Cluster:
    """The shared cluster, every member up and every handoff done before the test starts."""
    shared.wait_all_up()
    shared.wait_settled()
    return shared


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=client_timeout()) as client:
        yield client


def read_failures(http: httpx.Client, nodes: Sequence[NodeProcess], paths: Sequence[str],
                  params: dict[str, str]) -> list[str]:
    """Read every path (round-robin over `nodes`); describe those not found with their value."""
    failures = []
    for i, path in enumerate(paths):
        node = nodes[i % len(nodes)]
        response = http.get(node.url + path, params=params)
        if response.status_code != 200 or response.content != path.encode():
            failures.append(f"{path} via {node.name}: {response.status_code} "
                            f"{response.text.strip()[:120]}")
    return failures


def acked(answers: Sequence[Answer], prefix: str = "") -> list[str]:
    return [a.path for a in answers if a.ok and a.path.startswith(prefix)]


def describe(answers: Sequence[Answer]) -> str:
    return "\n".join(f"{a.node} {a.path}: {a.status} {a.detail}" for a in answers[:10])


def put_keys(http: httpx.Client, nodes: Sequence[NodeProcess], paths: Sequence[str],
             params: dict[str, str] | None = None) -> None:
    for i, path in enumerate(paths):
        node = nodes[i % len(nodes)]
        response = http.put(node.url + path, content=path.encode(), headers=TEXT,
                            params=params or {})
        assert response.status_code == 204, f"{path}: {response.status_code} {response.text}"


def parts_of(response: httpx.Response) -> list[Message]:
    boundary = re.search(r"boundary=([^;]+)", response.headers["content-type"])
    assert boundary is not None
    pattern = rb"\r?\n--" + re.escape(boundary.group(1).encode()) + rb"(?:--)?\r?\n"
    return [email.message_from_bytes(p) for p in re.split(pattern, response.content)[1:-1]]


def sibling_values(response: httpx.Response) -> set[str]:
    if response.status_code == 300:
        return {str(p.get_payload()) for p in parts_of(response)}
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    return {response.text}


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strangers(shared: Cluster, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, NodeProcess]:
    """Standalone nodes that must not get in: another cluster name, another secret."""
    other_secret = write_secret(tmp_path_factory.mktemp("stranger") / "other.secret")
    args = ["--ring-size", str(shared.ring_size)]
    return {
        "cluster name": shared.factory(name="othername@127.0.0.1", args=[
            *args, "--secret-file", str(shared.secret_file), "--cluster-name", "elsewhere"]),
        "secret": shared.factory(name="othersecret@127.0.0.1", args=[
            *args, "--secret-file", str(other_secret)]),
    }


def views(nodes: Sequence[NodeProcess]) -> dict[str, Any]:
    return {node.name: comparable(status(node)) for node in nodes}


@pytest.mark.parametrize(("reason", "code", "expected"), [
    ("cluster name", 400, "cluster name mismatch"),
    ("secret", 400, "wrong cluster secret"),
    ("unreachable", 503, "cannot connect"),
])
def test_a_refused_join_names_the_reason_and_changes_nothing(
        cluster: Cluster, strangers: dict[str, NodeProcess], reason: str, code: int,
        expected: str) -> None:
    if reason == "unreachable":
        joiner, target = strangers["secret"], f"nobody@127.0.0.1:{closed_port()}"
    else:
        joiner, target = strangers[reason], cluster.first.cluster_address
    before = views([*cluster.nodes, joiner])
    answer = admin(joiner, "POST", "join", {"node": target})
    assert (answer.status_code, expected in answer.text) == (code, True), answer.text
    assert views([*cluster.nodes, joiner]) == before


def test_bad_membership_commands_are_refused_and_change_nothing(
        cluster: Cluster, strangers: dict[str, NodeProcess]) -> None:
    loner = strangers["secret"]  # a standalone node: a cluster of one
    nodes = [*cluster.nodes, loner]
    before = views(nodes)
    refusals = [
        (cluster.claimant(), "POST", "commit", None, 400, "no staged changes"),
        (cluster.nodes[1], "POST", "commit", None, 400, "no staged changes"),
        (loner, "POST", "leave", None, 409, "last member"),
        (cluster.first, "POST", "force-remove", {"node": "ghost@127.0.0.1"}, 404,
         "ghost@127.0.0.1 is not a member"),
        (cluster.first, "POST", "leave", {"node": "ghost@127.0.0.1"}, 404,
         "ghost@127.0.0.1 is not a member"),
        (cluster.nodes[1], "POST", "join", {"node": cluster.first.cluster_address}, 400,
         "already in a cluster"),
        (cluster.first, "POST", "join", {"node": "not an address"}, 400, "expected name@host"),
    ]
    for node, method, path, body, code, message in refusals:
        answer = admin(node, method, path, body)
        assert (answer.status_code, message in answer.text) == (code, True), (
            f"{method} {path} {body} on {node.name}: {answer.status_code} {answer.text}")
    assert views(nodes) == before


# --- siblings --------------------------------------------------------------------------------


def test_concurrent_writers_through_different_coordinators_keep_every_write(
        cluster: Cluster) -> None:
    path = "/types/multi/buckets/concurrent/keys/k"
    rounds = 6
    with httpx.Client(timeout=client_timeout()) as http:
        root = http.put(cluster.first.url + path, content=b"root", headers=TEXT,
                        params={"w": "all"})
        assert root.status_code == 204, root.text
    start = threading.Barrier(len(cluster.nodes))
    # (value written, sibling values its context covered, status)
    writes: list[tuple[str, set[str], int]] = []
    errors: list[str] = []

    def writer(index: int, node: NodeProcess) -> None:
        try:
            with httpx.Client(timeout=client_timeout()) as http:
                read = http.get(node.url + path, headers=MULTIPART)
                start.wait()  # all read the same version, so their first writes are concurrent
                for i in range(rounds):
                    value = f"w{index}-{i}"
                    context = read.headers["x-riak-vclock"]
                    written = http.put(node.url + path, content=value.encode(),
                                       headers={**TEXT, "X-Riak-Vclock": context})
                    writes.append((value, sibling_values(read), written.status_code))
                    read = http.get(node.url + path, headers=MULTIPART)
        except Exception as exc:  # reported by the test below
            errors.append(f"writer {index} via {node.name}: {exc!r}")
            start.abort()

    threads = [threading.Thread(target=writer, args=(i, node), daemon=True)
               for i, node in enumerate(cluster.nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(rounds * 2 * client_timeout())
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert not errors, errors
    assert len(writes) == rounds * len(cluster.nodes)
    assert all(code == 204 for _, _, code in writes), writes

    with httpx.Client(timeout=client_timeout()) as http:
        final = http.get(cluster.first.url + path, headers=MULTIPART, params={"r": "all"})
        siblings = sibling_values(final)
        # A write read by a later write is in that write's past (its descendant survives);
        # every other write must still be a sibling, and nothing replaced may come back.
        replaced = set().union(*(seen for _, seen, _ in writes))
        frontier = {"root", *(value for value, _, _ in writes)} - replaced
        assert siblings == frontier, (
            f"lost: {sorted(frontier - siblings)}, resurrected: {sorted(siblings - frontier)}")
        assert len(siblings) > 1 or any(len(seen) > 1 for _, seen, _ in writes)

        merged = http.put(cluster.nodes[1].url + path, content=b"merged", params={"w": "all"},
                          headers={**TEXT, "X-Riak-Vclock": final.headers["x-riak-vclock"]})
        assert merged.status_code == 204, merged.text
        for node in cluster.nodes:
            resolved = http.get(node.url + path, headers=MULTIPART, params={"r": "all"})
            assert (resolved.status_code, resolved.content) == (200, b"merged"), resolved.text


# --- coverage --------------------------------------------------------------------------------


def test_listing_keys_with_a_node_down_reports_harvest_and_returns_the_rest(
        cluster: Cluster, http: httpx.Client) -> None:
    bucket = "/types/n1/buckets/coverage"
    paths = [f"{bucket}/keys/k{i}" for i in range(40)]
    put_keys(http, cluster.nodes, paths)
    holder = {}
    for path in paths:
        preflist = http.get(cluster.first.url + path + "/preflist").json()["preflist"]
        holder[path.rsplit("/", 1)[1]] = preflist[0]["node"]
    victim, live = cluster.nodes[2], cluster.nodes[:2]
    share = owners(cluster.first).count(victim.name) / cluster.ring_size
    expected = sorted(k for k, node in holder.items() if node != victim.name)
    assert 0 < share < 1 and 0 < len(expected) < len(paths)

    victim.stop()
    try:
        wait_view(live, {victim.name: False})
        for node in live:
            listed = http.get(node.url + bucket + "/keys", params={"keys": "true"})
            assert listed.status_code == 200, listed.text
            assert float(listed.headers["x-sapwood-harvest"]) == pytest.approx(1 - share)
            body = listed.json()
            assert body["harvest"] == pytest.approx(1 - share)
            assert sorted(body["keys"]) == expected
    finally:
        if not victim.running:
            victim.start()
    cluster.wait_all_up()
    listed = http.get(victim.url + bucket + "/keys", params={"keys": "true"})
    assert float(listed.headers["x-sapwood-harvest"]) == 1.0
    assert "harvest" not in listed.json()
    assert sorted(listed.json()["keys"]) == sorted(holder)


# --- failures --------------------------------------------------------------------------------


def writes_of(buckets: Sequence[str], params: dict[str, str]
              ) -> Callable[[int], tuple[str, str, dict[str, str]]]:
    """Traffic: the i-th request writes key i of one of `buckets`, in turn."""

    def make(i: int) -> tuple[str, str, dict[str, str]]:
        return "PUT", f"{buckets[i % len(buckets)]}/keys/k{i}", params

    return make


def test_writes_go_on_through_a_kill9_and_hinted_handoff_returns_the_data(
        cluster: Cluster, http: httpx.Client) -> None:
    default, typed = "/buckets/crash", "/types/n2/buckets/crash"
    victim = cluster.nodes[2]
    survivors = [n for n in cluster.nodes if n is not victim]
    traffic = Traffic(cluster.nodes, writes_of([default, typed], {"w": "2"}))
    traffic.start()
    try:
        traffic.wait_for_succeeded(20, cluster.nodes)
        traffic.drop_target(victim)  # only requests already in flight can meet the crash
        victim.kill9()
        wait_view(survivors, {victim.name: False})
        noticed = time.monotonic()
        traffic.wait_for_succeeded(traffic.count_succeeded() + 2 * EXTRA_ROUNDS, survivors)
    finally:
        answers = traffic.finish()
        if not victim.running:
            victim.start()
    after = [a for a in answers if a.sent_at >= noticed]
    assert after and all(a.ok for a in after), (
        f"writes failed after the crash was noticed:\n{describe([a for a in after if not a.ok])}")

    cluster.wait_all_up()
    cluster.wait_settled()
    # Some of the keys written while it was down have the victim as a primary: handoff owes it.
    owed = [a.path for a in after if a.path.startswith(typed) and victim.name in {
        e["node"] for e in http.get(victim.url + a.path + "/preflist").json()["preflist"]}]
    assert owed
    completed = [t for n in survivors for t in status(n)["handoffs"]["completed_recently"]]
    assert any(t[1] == victim.name and t[2] == "hinted" for t in completed), completed
    # The first reads since the crash: only handoff can have given the victim these keys.
    assert not read_failures(http, cluster.nodes, acked(answers, typed), STRICT_N2)
    assert not read_failures(http, [victim], acked(answers, default), {"pr": "3"})


def test_a_paused_node_is_treated_as_down_and_catches_up(
        cluster: Cluster, http: httpx.Client) -> None:
    default, typed = "/buckets/pause", "/types/n2/buckets/pause"
    victim = cluster.nodes[1]
    live = [n for n in cluster.nodes if n is not victim]
    timeout = {"timeout": "2000"}
    answers: list[tuple[str, str, int]] = []
    noticed_at = None
    with paused(victim):
        i = 0
        while noticed_at is None or i < noticed_at + EXTRA_ROUNDS:
            node = live[i % len(live)]
            for path in (f"{default}/keys/k{i}", f"{typed}/keys/k{i}"):
                try:
                    put = http.put(node.url + path, content=path.encode(), headers=TEXT,
                                   params=timeout)
                    got = http.get(node.url + path, params=timeout)
                except httpx.TimeoutException as exc:
                    pytest.fail(f"{path} via {node.name} got no answer in time: {exc}")
                # A write that timed out may or may not have reached a replica.
                allowed = (200, 503) if put.status_code == 204 else (200, 404, 503)
                assert (put.status_code in (204, 503), got.status_code in allowed) == (
                    True, True), (f"{path} via {node.name}: PUT {put.status_code} {put.text}, "
                                  f"GET {got.status_code} {got.text}")
                answers.append(("PUT", path, put.status_code))
            if noticed_at is None and all(
                    not {m["name"]: m["up"] for m in status(n)["members"]}[victim.name]
                    for n in live):
                noticed_at = i
            i += 1
            assert i < 1000, "the paused node was never seen down"
    written = [path for method, path, code in answers if method == "PUT" and code == 204]
    assert any(p.startswith(typed) for p in written) and any(
        p.startswith(default) for p in written)

    cluster.wait_all_up()
    cluster.wait_settled()
    assert not read_failures(http, cluster.nodes, [p for p in written if p.startswith(typed)],
                             STRICT_N2)
    assert not read_failures(http, [victim], [p for p in written if p.startswith(default)],
                             {"pr": "3"})


def test_a_read_that_cannot_reach_r_replicas_is_answered_within_its_timeout(
        cluster: Cluster) -> None:
    victim = cluster.nodes[2]
    live = [n for n in cluster.nodes if n is not victim]
    with paused(victim):
        wait_view(live, {victim.name: False})
        # Two replicas can answer (no third node is left to stand in): r=3 cannot be met.
        try:
            answer = httpx.get(live[0].url + "/buckets/short/keys/k",
                               params={"r": "3", "timeout": "1000"}, timeout=SHORT_WAIT_S)
        except httpx.TimeoutException:
            pytest.fail(f"no answer within {SHORT_WAIT_S} s to a read with a 1 s timeout")
    assert answer.status_code == 503, answer.text


# --- membership changes under load -----------------------------------------------------------


def test_a_fourth_node_joins_and_leaves_a_loaded_cluster_without_losing_a_key(
        cluster: Cluster, http: httpx.Client) -> None:
    bucket = "/buckets/grow"
    preloaded = [f"{bucket}/keys/pre{i}" for i in range(200)]
    put_keys(http, cluster.nodes, preloaded)
    originals = list(cluster.nodes)
    before = owners(cluster.first)
    size = cluster.ring_size

    def make(i: int) -> tuple[str, str, dict[str, str]]:
        if i % 2:
            return "GET", preloaded[(i // 2) % len(preloaded)], {}
        return "PUT", f"{bucket}/keys/during{i}", {}

    traffic = Traffic(originals, make)
    traffic.start()
    try:
        newcomer, plan = cluster.add_node()
        committed = time.monotonic()
        # Through the newcomer too, once it knows who is up (before, see test_a_read_that_...).
        wait_view([newcomer], {n.name: True for n in cluster.nodes})
        traffic.add_target(newcomer)
        cluster.wait_settled()
        settled = time.monotonic()
        traffic.wait_for_succeeded(traffic.count_succeeded() + EXTRA_ROUNDS, cluster.nodes)
    finally:
        answers = traffic.finish()
    joined = owners(cluster.first)
    moved = [p for p in range(size) if before[p] != joined[p]]
    assert joined.count(newcomer.name) == size // 4
    # About a quarter: at least the newcomer's share, at most claim's bound for one join
    # (its share plus one spacing window, target_n_val 4).
    assert len(moved) == plan["transfers"] and size // 4 <= len(moved) <= size // 2, (
        before, joined)
    assert any(committed <= a.sent_at <= settled for a in answers), "no request met the handoff"
    failed = [a for a in answers if not a.ok]
    assert not failed, f"requests failed during the join:\n{describe(failed)}"
    written = acked(answers, f"{bucket}/keys/during")
    assert not read_failures(http, cluster.nodes, [*preloaded, *written], {"pr": "3"})

    traffic = Traffic(originals, make)
    traffic.start()
    try:
        plan = cluster.leave(newcomer)
        committed = time.monotonic()
        cluster.nodes.remove(newcomer)
        # Not the leaver: once removed, nobody pings it, so it may never see the new owner of a
        # partition it still holds writes for as up again (see the report of this test).
        cluster.wait_settled()
        settled = time.monotonic()
        traffic.wait_for_succeeded(traffic.count_succeeded() + EXTRA_ROUNDS, originals)
    finally:
        answers = traffic.finish()
    assert any(committed <= a.sent_at <= settled for a in answers), "no request met the handoff"
    wait_until(lambda: (
        active_members(status(newcomer)).get(newcomer.name) is None, str(status(newcomer))),
        "the leaver to learn it left", [*cluster.nodes, newcomer], VIEW_DEADLINE_S)
    left = owners(cluster.first)
    assert newcomer.name not in left
    moved = [p for p in range(size) if joined[p] != left[p]]
    assert len(moved) == plan["transfers"] and size // 4 <= len(moved) <= size // 2, (
        joined, left)
    removed = {m["name"]: m["status"] for m in status(cluster.first)["members"]}
    assert removed[newcomer.name] == "removed"
    failed = [a for a in answers if not a.ok]
    assert not failed, f"requests failed during the leave:\n{describe(failed)}"
    written += acked(answers, f"{bucket}/keys/during")
    assert not read_failures(http, cluster.nodes, [*preloaded, *written], {"pr": "3"})
    newcomer.stop()

