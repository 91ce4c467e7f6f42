"""Consistent groups whose nodes take the messages of one read as one event
(`ClusterNode.on_messages` -> `EnsembleHost.on_messages`), as a running node does: the same
compare-and-set answers, every acknowledged write kept across crashes, with or without commits
that are durable by themselves."""

from __future__ import annotations

from typing import Any

import pytest

from sapwood.core.cluster import ClusterNode
from sapwood.core.effects import Effect
from sapwood.core.errors import PreconditionFailed, Unavailable
from sapwood.core.kvobject import Metadata
from sapwood.core.requests import GetRequest, GetResult, PutRequest, PutResult
from sapwood.core.ring import BKey
from support.clusternet import ClusterNet

NODES = ["n1", "n2", "n3"]
TEXT = Metadata(content_type="text/plain")
FAILOVER_MS = 20_000


class BatchingNet(ClusterNet):
    """Messages from one node to another due at the same instant arrive together, in the
    order they were sent, as one `on_messages` event (one read of a connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pending: dict[tuple[str, str, int], list[Any]] = {}
        self.batch_sizes: list[int] = []
        super().__init__(*args, **kwargs)

    def _send(self, sender: str, to: str, msg: Any) -> None:
        if to not in self.backends or not self._connected(sender, to):
            return
        at = self.now + 1  # one latency for every message: what is sent together lands together
        slot = (sender, to, at)
        queued = self._pending.get(slot)
        if queued is None:
            self._pending[slot] = [msg]
            self._schedule(at, self._deliver_batch, slot)
        else:
            queued.append(msg)

    def _deliver_batch(self, slot: tuple[str, str, int]) -> None:
        sender, to, _ = slot
        msgs = self._pending.pop(slot)
        core = self.cores.get(to)
        if core is not None and self._connected(sender, to):
            self.batch_sizes.append(len(msgs))
            effects: list[Effect] = core.on_messages(sender, msgs, self.now)
            self._execute(to, effects)


def sc(key: str) -> BKey:
    return BKey("sc", "b", key)


def trio(commit_is_durable: bool) -> BatchingNet:
    net = BatchingNet(NODES, members=NODES, seed=11)
    for name in NODES:
        net.core(name).ensembles.commit_is_durable = commit_is_durable

    def create(core: ClusterNode) -> None:
        core.kv.create_type("sc", {"props": {"consistent": True}})
        core.kv.activate_type("sc")

    net.operate("n1", create)
    net.run_for(3_000)  # the type reaches every node's metadata
    return net


def eventually(net: ClusterNet, attempt: Any) -> Any:
    deadline = net.now + FAILOVER_MS
    while True:
        result = attempt()
        if not isinstance(result, Unavailable) or net.now >= deadline:
            return result
        net.run_for(100)


def put_request(key: str, value: bytes, context: Any) -> PutRequest:
    return PutRequest(sc(key), value, TEXT, context or {}, return_body=True)


def submit_all_and_wait(net: BatchingNet, calls: list[tuple[str, Any]]) -> list[Any]:
    """Submit every (node, request) at once; their results in order."""
    ids = [net.submit(node, request) for node, request in calls]
    assert net.run_until(lambda: all(i in net.replies for i in ids), FAILOVER_MS)
    return [net.replies.pop(i) for i in ids]


def value_and_clock(net: ClusterNet, node: str, key: str) -> tuple[bytes | None, Any]:
    read = eventually(net, lambda: net.call(node, GetRequest(sc(key))))
    assert isinstance(read, GetResult)
    if read.obj is None:
        return None, None
    return read.obj.siblings[0].value, read.obj.clock


@pytest.mark.parametrize("commit_is_durable", [True, False])
def test_concurrent_compare_and_set_rounds_through_batched_events(
        commit_is_durable: bool) -> None:
    net = trio(commit_is_durable)
    keys = [f"k{i}" for i in range(6)]
    created = [eventually(net, lambda k=k: net.call(NODES[0], put_request(k, b"0", None)))
               for k in keys]
    clocks = {k: r.obj.clock for k, r in zip(keys, created, strict=True)}
    for round_ in range(1, 6):
        # Every node writes every key with the same context: exactly one write per key wins.
        calls = [(node, put_request(k, f"{round_}:{node}".encode(), clocks[k]))
                 for k in keys for node in NODES]
        results = submit_all_and_wait(net, calls)
        for i, key in enumerate(keys):
            answers = results[3 * i: 3 * i + 3]
            won = [(node, a) for node, a in zip(NODES, answers, strict=True)
                   if isinstance(a, PutResult)]
            assert len(won) == 1, answers
            assert all(isinstance(a, PutResult | PreconditionFailed) for a in answers), answers
            node, answer = won[0]
            assert answer.obj is not None
            clocks[key] = answer.obj.clock
            for reader in NODES:
                assert value_and_clock(net, reader, key) == (f"{round_}:{node}".encode(),
                                                             clocks[key])
    assert max(net.batch_sizes) > 1  # the events really held several messages


def test_no_acknowledged_write_is_lost_when_every_node_crashes() -> None:
    # Crashes here lose unsynced writes (power loss), so members wait for real flushes.
    net = trio(commit_is_durable=False)
    calls = [(NODES[i % 3], put_request(f"k{i}", b"%d" % i, None)) for i in range(12)]
    for _ in range(20):
        if all(isinstance(r, PutResult) for r in submit_all_and_wait(net, calls[:1])):
            break
        net.run_for(500)  # the first group elects its leader
    acked = {}
    for (_, request), result in zip(calls[1:], submit_all_and_wait(net, calls[1:]), strict=True):
        if isinstance(result, PutResult):
            assert result.obj is not None
            acked[request.bkey.key] = (request.value, result.obj.clock)
    assert acked
    for name in NODES:
        net.crash(name)
    for name in NODES:
        net.restart(name)
    for key, expected in acked.items():
        assert value_and_clock(net, "n2", key) == expected, key
