"""A small deterministic world for driving RaftReplica objects in tests.

One seeded `random.Random` decides everything: message delays (so reordering), loss,
duplication, disk write latency, clock rates. Each node has its own clock running at a rate
within +-`drift_rate` of real time and an arbitrary offset. A crash drops the replica object
(volatile state), its timers and every `Persist` not yet completed (unsynced writes); a restart
builds a new replica from what was durable.

The `SafetyChecker` watches every event: election safety, state machine safety (no two replicas
apply different entries at one index, each replica applies in order), leader completeness (a new
leader holds every entry anyone has applied); `check_log_matching` compares logs pairwise.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sapwood.core.consensus import (
    DurableState,
    Entry,
    MemoryRaftStorage,
    Ok,
    Persist,
    RaftConfig,
    RaftReplica,
    RaftTimer,
    Result,
    Role,
    Snapshot,
)
from sapwood.core.consensus.kvstate import KvState
from sapwood.core.consensus.messages import ClientCommand, Delete, Get, Put, Version
from sapwood.core.consensus.results import Absent
from sapwood.core.effects import CancelTimer, Reply, Send, SetTimer

FAST = RaftConfig(
    election_timeout_min_ms=150,
    election_timeout_max_ms=300,
    heartbeat_interval_ms=30,
    snapshot_interval_entries=40,
    snapshot_trailing_entries=4,
    max_inflight_entries=16,
    max_entries_per_append=8,
    max_snapshot_chunk_bytes=128,
    proposal_timeout_ms=5_000,
)


@dataclass
class NetConfig:
    min_delay_ms: float = 1.0
    max_delay_ms: float = 10.0
    loss: float = 0.0
    duplicate: float = 0.0
    min_disk_ms: float = 0.2
    max_disk_ms: float = 3.0
    slow_disk: float = 0.0  # chance that a write takes up to `slow_disk_ms`
    slow_disk_ms: float = 40.0


@dataclass
class Clock:
    """Local time = offset + rate * real time, truncated to whole milliseconds."""

    offset: float
    rate: float

    def local(self, real: float) -> int:
        return int(self.offset + self.rate * real)

    def real_at(self, local_ms: int) -> float:
        real = (local_ms - self.offset) / self.rate
        while self.local(real) < local_ms:
            real += 1e-6
        return real


@dataclass
class Node:
    node_id: str
    clock: Clock
    storage: MemoryRaftStorage = field(default_factory=MemoryRaftStorage)
    replica: RaftReplica | None = None
    incarnation: int = 0
    timers: dict[Any, int] = field(default_factory=dict)
    pending: deque[Persist] = field(default_factory=deque)
    disk_free_at: float = 0.0
    peers: tuple[str, ...] = ()


@dataclass
class Op:
    req_id: int
    node: str
    kind: str  # put / delete / get / read / member
    key: bytes | None
    command: Any
    invoked: float
    incarnation: int = 0
    completed: float | None = None
    result: Result | None = None


class Violation(AssertionError):
    pass


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.applied: dict[int, Entry] = {}
        self.node_applied: dict[str, int] = {}
        self.checked_terms: dict[str, int] = {}

    def observe(self, node_id: str, item: Entry | Snapshot) -> None:
        if isinstance(item, Snapshot):
            meta = item.meta
            known = self.applied.get(meta.index)
            if known is not None and known.term != meta.term:
                raise Violation(f"{node_id} installed a snapshot at {meta.index} of term "
                                f"{meta.term}, but term {known.term} was applied there")
            self.node_applied[node_id] = meta.index
            return
        expected_index = self.node_applied.get(node_id, 0) + 1
        if item.index != expected_index:
            raise Violation(f"{node_id} applied {item.index} after {expected_index - 1}")
        self.node_applied[node_id] = item.index
        known = self.applied.setdefault(item.index, item)
        if known != item:
            raise Violation(f"state machine safety: index {item.index}: {known} vs {item}")

    def restarted(self, node_id: str, applied_index: int) -> None:
        self.node_applied[node_id] = applied_index

    def check_leader(self, replica: RaftReplica) -> None:
        if replica.role is not Role.LEADER:
            return
        term = replica.term
        holder = self.leaders.setdefault(term, replica.self_id)
        if holder != replica.self_id:
            raise Violation(f"election safety: {holder} and {replica.self_id} lead term {term}")
        if self.checked_terms.get(replica.self_id) == term:
            return
        self.checked_terms[replica.self_id] = term
        log = replica.log
        for index, entry in self.applied.items():
            if index > log.snapshot_index and log.term_at(index) != entry.term:
                raise Violation(f"leader completeness: {replica.self_id} (term {term}) lacks "
                                f"committed entry {index}")


class Cluster:
    def __init__(
        self,
        ids: list[str],
        *,
        seed: int,
        config: RaftConfig = FAST,
        net: NetConfig | None = None,
        drift_rate: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.net = net or NetConfig()
        self.drift_rate = drift_rate
        self.now = 0.0
        self.checker = SafetyChecker()
        self.nodes: dict[str, Node] = {}
        self.side: dict[str, int] = {}
        self.cuts: set[tuple[str, str]] = set()
        self.ops: dict[int, Op] = {}
        self._queue: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self._next_req = 1
        self.events = 0
        for node_id in ids:
            self._add_node(node_id, tuple(ids))

    # --- Topology, crashes ----------------------------------------------------------------------

    def _add_node(self, node_id: str, peers: tuple[str, ...]) -> Node:
        rate = 1.0 + self.rng.uniform(-self.drift_rate, self.drift_rate)
        clock = Clock(offset=self.rng.uniform(0, 1_000_000), rate=rate)
        node = Node(node_id, clock, peers=peers)
        self.nodes[node_id] = node
        self.side[node_id] = 0
        return node

    def start(self) -> None:
        for node_id in self.nodes:
            self._boot(node_id)

    def join(self, node_id: str) -> None:
        """A new, empty replica that waits to be added to the group."""
        self._add_node(node_id, ())
        self._boot(node_id)

    def _boot(self, node_id: str) -> None:
        node = self.nodes[node_id]
        durable: DurableState = node.storage.state()
        node.replica = RaftReplica(
            "g", node_id, node.peers, random.Random(self.rng.random()), self.config,
            durable, self.checker.observe,
        )
        self.checker.restarted(node_id, node.replica.applied_index)
        self._execute(node, node.replica.start(self.local(node_id)))

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.replica = None
        node.incarnation += 1
        node.timers.clear()
        node.pending.clear()  # unsynced writes are lost

    def restart(self, node_id: str) -> None:
        if self.nodes[node_id].replica is None:
            self._boot(node_id)

    def alive(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.replica is not None]

    def partition(self, *groups: set[str]) -> None:
        for i, group in enumerate(groups):
            for node_id in group:
                self.side[node_id] = i + 1

    def isolate(self, node_id: str) -> None:
        self.side[node_id] = -1 - len(self.side)

    def heal(self) -> None:
        for node_id in self.side:
            self.side[node_id] = 0
        self.cuts.clear()

    def connected(self, a: str, b: str) -> bool:
        return self.side[a] == self.side[b] and (a, b) not in self.cuts

    def replica(self, node_id: str) -> RaftReplica:
        replica = self.nodes[node_id].replica
        assert replica is not None, f"{node_id} is down"
        return replica

    def set_rate(self, node_id: str, rate: float) -> None:
        """Change a clock's rate from now on, keeping it continuous and monotonic."""
        clock = self.nodes[node_id].clock
        clock.offset = clock.offset + clock.rate * self.now - rate * self.now
        clock.rate = rate

    def local(self, node_id: str) -> int:
        return self.nodes[node_id].clock.local(self.now)

    # --- Clients --------------------------------------------------------------------------------

    def propose(self, node_id: str, command: ClientCommand) -> int:
        req_id = self._new_op(node_id, _kind(command), getattr(command, "key", None), command)
        self._execute(self.nodes[node_id], self.replica(node_id).propose(
            req_id, command, self.local(node_id)))
        return req_id

    def read(self, node_id: str, key: bytes) -> int:
        req_id = self._new_op(node_id, "read", key, None)
        self._execute(self.nodes[node_id], self.replica(node_id).read(
            req_id, key, self.local(node_id)))
        return req_id

    def _new_op(self, node_id: str, kind: str, key: bytes | None, command: Any) -> int:
        req_id = self._next_req
        self._next_req += 1
        incarnation = self.nodes[node_id].incarnation
        self.ops[req_id] = Op(req_id, node_id, kind, key, command, self.now, incarnation)
        return req_id

    def result(self, req_id: int) -> Result | None:
        return self.ops[req_id].result

    def wait(self, req_id: int, timeout_ms: float) -> Result | None:
        """Run until request `req_id` is answered (or the timeout passes); its result."""
        op = self.ops[req_id]
        self.run_until(lambda: op.result is not None, timeout_ms)
        return op.result

    def unanswered(self) -> list[Op]:
        """Requests never answered although their replica has not crashed since."""
        return [
            op for op in self.ops.values()
            if op.result is None and self.nodes[op.node].incarnation == op.incarnation
        ]

    def leader(self) -> str | None:
        """The live leader of the highest term, if any."""
        best: RaftReplica | None = None
        for node_id in self.alive():
            r = self.replica(node_id)
            if r.role is Role.LEADER and (best is None or r.term > best.term):
                best = r
        return best.self_id if best else None

    # --- Running --------------------------------------------------------------------------------

    def _schedule(self, at: float, kind: str, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(at, self.now), self._seq, kind, payload))

    def step(self) -> bool:
        if not self._queue:
            return False
        at, _, kind, payload = heapq.heappop(self._queue)
        self.now = at
        self.events += 1
        if kind == "msg":
            self._deliver(*payload)
        elif kind == "timer":
            self._fire(*payload)
        else:
            self._complete_write(*payload)
        return True

    def run_for(self, ms: float) -> None:
        end = self.now + ms
        while self._queue and self._queue[0][0] <= end:
            self.step()
        self.now = max(self.now, end)

    def run_until(self, predicate: Any, timeout_ms: float) -> bool:
        end = self.now + timeout_ms
        while not predicate():
            if not self._queue or self._queue[0][0] > end:
                self.now = max(self.now, end)
                return bool(predicate())
            self.step()
        return True

    def _deliver(self, src: str, dst: str, msg: Any) -> None:
        node = self.nodes[dst]
        if node.replica is None or not self.connected(src, dst):
            return
        self._execute(node, node.replica.on_message(src, msg, self.local(dst)))

    def _fire(self, node_id: str, incarnation: int, key: RaftTimer, generation: int) -> None:
        node = self.nodes[node_id]
        if node.replica is None or node.incarnation != incarnation:
            return
        if node.timers.get(key) != generation:
            return
        del node.timers[key]
        self._execute(node, node.replica.on_timer(key, self.local(node_id)))

    def _complete_write(self, node_id: str, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.replica is None or node.incarnation != incarnation or not node.pending:
            return
        persist = node.pending.popleft()
        node.storage.apply(persist)
        self._execute(node, node.replica.on_persisted(persist.token, self.local(node_id)))

    def _execute(self, node: Node, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._transmit(node.node_id, effect.to, effect.msg)
            elif isinstance(effect, Reply):
                op = self.ops[effect.req_id]
                assert op.result is None, f"request {effect.req_id} answered twice"
                op.result = effect.result
                op.completed = self.now
            elif isinstance(effect, SetTimer):
                self._seq += 1
                node.timers[effect.key] = self._seq
                at = node.clock.real_at(effect.at_ms)
                self._schedule(at, "timer", (node.node_id, node.incarnation, effect.key, self._seq))
            elif isinstance(effect, CancelTimer):
                node.timers.pop(effect.key, None)
            elif isinstance(effect, Persist):
                node.pending.append(effect)
                net = self.net
                slowest = net.slow_disk_ms if self.rng.random() < net.slow_disk else net.max_disk_ms
                delay = self.rng.uniform(net.min_disk_ms, slowest)
                node.disk_free_at = max(node.disk_free_at, self.now) + delay
                self._schedule(node.disk_free_at, "disk", (node.node_id, node.incarnation))
            else:
                raise AssertionError(f"unknown effect {effect!r}")
        if node.replica is not None:
            self.checker.check_leader(node.replica)

    def _transmit(self, src: str, dst: str, msg: Any) -> None:
        net = self.net
        if dst not in self.nodes or not self.connected(src, dst) or self.rng.random() < net.loss:
            return
        copies = 2 if self.rng.random() < net.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(net.min_delay_ms, net.max_delay_ms)
            self._schedule(self.now + delay, "msg", (src, dst, msg))

    # --- Whole-run checks -----------------------------------------------------------------------

    def check_log_matching(self) -> None:
        """Log matching: same (index, term) in two logs implies identical prefixes."""
        logs = {n: self.replica(n).log for n in self.alive()}
        names = sorted(logs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                la, lb = logs[a], logs[b]
                low = max(la.first_index, lb.first_index)
                high = min(la.last_index, lb.last_index)
                matched = False
                for index in range(high, low - 1, -1):
                    matched = matched or la.term_at(index) == lb.term_at(index)
                    if matched and la.entry(index) != lb.entry(index):
                        raise Violation(f"log matching: {a} and {b} differ at {index}")

    def check_reads(self) -> None:
        """A partial linearizability check: no acknowledged write is missing from the applied
        history, and reads (and log gets) return a state that was written and not superseded
        by a write acknowledged before the read began."""
        history = _key_history(self.checker.applied)
        acked_at: dict[int, float] = {}
        for op in self.ops.values():
            if op.kind in ("put", "delete") and isinstance(op.result, Ok):
                acked_at[op.result.version.index] = op.completed or 0.0
                known = self.checker.applied.get(op.result.version.index)
                if known is None or known.term != op.result.version.term:
                    raise Violation(f"acknowledged write {op.result.version} was lost")
        for op in self.ops.values():
            if op.kind not in ("read", "get") or op.key is None:
                continue
            if isinstance(op.result, Ok):
                state: Version | None = op.result.version
            elif isinstance(op.result, Absent):
                state = None
            else:
                continue
            changes = history.get(op.key, [(0, None)])
            starts = [k for k, (_, version) in enumerate(changes) if version == state]
            if not starts:
                raise Violation(f"read {op.req_id} returned a state never written: {op.result}")
            # Valid if for some interval with that state, the write ending it was not
            # acknowledged before the read was invoked.
            if not any(
                k + 1 >= len(changes) or acked_at.get(changes[k + 1][0], float("inf")) > op.invoked
                for k in starts
            ):
                raise Violation(f"stale read {op.req_id} at {op.node}: {op.result}")


def _kind(command: Any) -> str:
    if isinstance(command, Put):
        return "put"
    if isinstance(command, Delete):
        return "delete"
    if isinstance(command, Get):
        return "get"
    return "member"


def _key_history(applied: dict[int, Entry]) -> dict[bytes, list[tuple[int, Any]]]:
    """Per key: (index, version or None) each time the key's state changed, from index 0."""
    model = KvState(1 << 40)
    history: dict[bytes, list[tuple[int, Any]]] = {}
    index = 1
    while index in applied:
        entry = applied[index]
        command = entry.command
        if isinstance(command, Put | Delete):
            result = model.apply(command, Version(entry.term, entry.index))
            if isinstance(result, Ok):
                changes = history.setdefault(command.key, [(0, None)])
                changes.append((index, result.version if isinstance(command, Put) else None))
        index += 1
    return history
