"""Consistent buckets stay linearizable under faults: production ClusterNodes in the seeded
simulated world (message loss, duplication and reordering, crashes that lose unsynced writes,
pauses, isolated nodes, clock offsets), every client call recorded and the history checked.

Clients read, create (a write without context), compare-and-set with the context of their last
read, and delete with or without it. Values are unique, so a context names a value and a
compare-and-set is a register cas. A 503 may hide a write that took effect, so it is recorded as
indeterminate; a 412 is a cas that certainly did not.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import pytest

from sapwood.core.errors import NotFound, PreconditionFailed, Unavailable
from sapwood.core.kvobject import Metadata
from sapwood.core.requests import DeleteRequest, GetRequest, GetResult, PutRequest, Request
from sapwood.core.ring import BKey
from sapwood.sim import linearizability
from sapwood.sim.history import HistoryRecorder, OpKind
from sapwood.sim.network import NetworkConfig
from sapwood.sim.world import LostInCrash, NotRunning, World

NODES = ["n1", "n2", "n3"]
KEYS = ["a", "b", "c"]
CLIENTS = 5
OPS = 200
TIMEOUT_MS = 3_000
# A clock drift of 0: the world's conversion of drifting node time rounds timers early.
NETWORK = NetworkConfig(loss=0.02, duplication=0.02, slow_fraction=0.05)


class Workload:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.world = World(seed, NODES, members=NODES, network=NETWORK, skew_ms=500)
        self.history = HistoryRecorder()
        self.contexts: dict[tuple[int, str], tuple[Hashable, dict[bytes, int]]] = {}
        self.remaining = OPS
        self.in_flight = 0
        self.written = 0

    def setup(self) -> None:
        def create(core: Any) -> None:
            core.kv.create_type("sc", {"props": {"consistent": True}})
            core.kv.activate_type("sc")

        self.world.operate("n1", create)
        self.world.run_for(3_000)
        self.world.sync_all()

    def run(self) -> None:
        for client in range(CLIENTS):
            self.world.schedule(self.rng.randint(0, 20), lambda c=client: self.next_op(c))
        self.world.schedule(2_000, self.fault)
        assert self.world.run_until(lambda: self.remaining == 0 and not self.in_flight,
                                    3_000_000), "the clients never finished"

    # --- clients --------------------------------------------------------------------------------

    def next_op(self, client: int) -> None:
        if self.remaining == 0:
            return
        self.remaining -= 1
        key = self.rng.choice(KEYS)
        bkey = BKey("sc", "b", key)
        known = self.contexts.pop((client, key), None)
        roll = self.rng.random()
        self.written += 1
        value = f"{client}:{self.written}".encode()
        record = self.history.invoke
        now = self.world.now
        request: Request
        if roll < 0.35:
            op = record(client, key, OpKind.READ, now)
            request = GetRequest(bkey, timeout_ms=TIMEOUT_MS)
        elif roll < 0.55 or known is None:
            op = record(client, key, OpKind.CAS, now, value=value, expected=None)
            request = PutRequest(bkey, value, Metadata(), {}, timeout_ms=TIMEOUT_MS)
        elif roll < 0.85:
            seen, context = known
            op = record(client, key, OpKind.CAS, now, value=value, expected=seen)
            request = PutRequest(bkey, value, Metadata(), context, timeout_ms=TIMEOUT_MS)
        elif roll < 0.93 and known[1]:
            op = record(client, key, OpKind.CAS, now, value=None, expected=known[0])
            request = DeleteRequest(bkey, known[1], timeout_ms=TIMEOUT_MS)
        else:
            op = record(client, key, OpKind.DELETE, now)
            request = DeleteRequest(bkey, None, timeout_ms=TIMEOUT_MS)
        self.in_flight += 1
        self.world.submit(self.rng.choice(NODES), request,
                          lambda result: self.answered(client, key, op, result))

    def answered(self, client: int, key: str, op: int, result: Any) -> None:
        now = self.world.now
        if isinstance(result, GetResult):
            obj = result.obj
            value = obj.siblings[0].value if obj is not None else None
            self.history.ok(op, now, value=value)
            self.contexts[(client, key)] = (value, dict(obj.clock) if obj else {})
        elif isinstance(result, PreconditionFailed | NotRunning):
            self.history.fail(op, now)
        elif isinstance(result, Unavailable | LostInCrash):
            self.history.info(op)
        elif isinstance(result, Exception) and not isinstance(result, NotFound):
            raise AssertionError(f"unexpected answer {result!r}")
        else:  # a write, or an unconditional delete that found nothing to delete
            self.history.ok(op, now)
        self.in_flight -= 1
        self.world.schedule(self.rng.randint(0, 50), lambda: self.next_op(client))

    # --- faults ---------------------------------------------------------------------------------

    def fault(self) -> None:
        if self.remaining == 0:
            return
        world, rng = self.world, self.rng
        name, roll = rng.choice(NODES), rng.random()
        if roll < 0.3:
            world.crash(name)
            world.schedule(rng.randint(500, 4_000), lambda: world.restart(name))
        elif roll < 0.6:
            world.network.isolate(name, NODES)
            world.schedule(rng.randint(500, 4_000), world.network.heal)
        elif roll < 0.8:
            world.pause(name)
            world.schedule(rng.randint(200, 3_000), lambda: world.resume(name))
        world.schedule(rng.randint(1_000, 5_000), self.fault)


@pytest.mark.parametrize("seed", range(6))
def test_histories_under_faults_are_linearizable(seed: int) -> None:
    workload = Workload(seed)
    workload.setup()
    workload.run()
    history = workload.history.history()
    result = linearizability.check(history, budget_s=20)
    assert result.verdict is linearizability.Verdict.OK, result.explain()
    assert sum(op.outcome == "ok" and op.kind is not OpKind.READ for op in history) > 10
