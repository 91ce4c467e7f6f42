"""One running node: owns the KV service, executes its effects on an asyncio loop.

Durable acknowledgements go through a group committer: every flush asked for while an fsync is
running waits for the next one, so concurrent writes share fsyncs instead of queueing for their own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sapwood.core.cluster import AdminRequest, ClusterConfig, ClusterNode
from sapwood.core.consensus import RaftConfig
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.ensemble_groups import ENSEMBLE_RAFT_CONFIG
from sapwood.core.errors import SapwoodError, Unavailable
from sapwood.core.requests import CoverageChunk, Request
from sapwood.core.service import KVService
from sapwood.node.local import DEFAULT_NODE, core_ms, open_cluster_node
from sapwood.node.timers import TimerQueue

log = logging.getLogger("sapwood.node")

# commit: an acknowledged write is committed to LMDB (it survives the process being killed, not
# the machine losing power), as Riak's default backends do. fsync: durable acks also wait for a
# batched fsync (group commit), so they survive power loss too.
SYNC_MODES = ("commit", "fsync")
LATENCY_SAMPLES = 10_000  # per operation, for the percentiles in /stats
MAX_INFLIGHT_REQUESTS = 10_000
# Requests made in one event-loop turn go to the core together, this many at most per event: their
# writes share one commit.
MAX_SUBMIT_BATCH = 256


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NodeConfig:
    data_dir: Path
    name: str = DEFAULT_NODE
    http_host: str = "127.0.0.1"
    http_port: int = 8098
    ring_size: int = 64
    sync: str = "commit"
    cluster_host: str = "127.0.0.1"
    cluster_port: int = 8099
    cluster_name: str = "sapwood"
    secret_file: Path | None = None
    seed: int | None = None  # randomness for gossip peers and timeouts; None: from the OS
    # Timing of consistent groups; every node of a cluster must run with the same values.
    # core_ms is monotonic, so consistent groups may read from leader leases.
    ensemble_raft: RaftConfig = ENSEMBLE_RAFT_CONFIG

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def cluster_addr(self) -> str:
        return f"{self.cluster_host}:{self.cluster_port}"


@dataclass
class LatencyStats:
    samples: dict[str, deque[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def record(self, op: str, seconds: float) -> None:
        window = self.samples.get(op)
        if window is None:
            window = self.samples[op] = deque(maxlen=LATENCY_SAMPLES)
        window.append(seconds)
        self.counts[op] = self.counts.get(op, 0) + 1

    def percentiles(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for op, window in self.samples.items():
            ordered = sorted(window)
            if not ordered:
                continue

            def pick(q: float, ordered: list[float] = ordered) -> float:
                return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6)

            out[op] = {"p50_us": pick(0.5), "p95_us": pick(0.95), "p99_us": pick(0.99),
                       "count": self.counts[op]}
        return out


class GroupCommitter:
    """Batches flushes: one fsync (off the loop) serves every flush asked for before it started."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.waiting: list[Flush] = []
        self.running = False
        self.fsyncs = 0

    def add(self, flush: Flush) -> None:
        self.waiting.append(flush)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                if self.node.config.sync == "fsync":
                    await loop.run_in_executor(None, self.node.service.backend.sync)
                    self.fsyncs += 1
                for flush in batch:
                    self.node.deliver_to(flush.to, flush.done)
        finally:
            self.running = False


class Node:
    def __init__(self, config: NodeConfig) -> None:
        if config.sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.config = config
        cluster_config = ClusterConfig(
            cluster_name=config.cluster_name, cluster_addr=config.cluster_addr,
            http_url=config.http_url, ring_size=config.ring_size, raft=config.ensemble_raft,
        )
        self.core: ClusterNode = open_cluster_node(
            config.data_dir, config.name, cluster_config, random.Random(config.seed))
        self.name = config.name
        self.core.kv.set_commit_durable(config.sync == "commit")
        self.core.ensembles.commit_is_durable = config.sync == "commit"
        # Set by the server when the inter-node listener runs: send(node, msg) -> None, and
        # probe(address) -> the node name answering there (after a successful handshake).
        self.send_remote: Callable[[str, Any], None] | None = None
        self.probe_remote: Callable[[str], Awaitable[str]] | None = None
        self._ids = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[Any] | asyncio.Queue[Any]] = {}
        self._timers = TimerQueue(core_ms, self._fire)
        self._unsubmitted: list[tuple[int, Request | AdminRequest]] = []
        self.committer = GroupCommitter(self)
        self.latency = LatencyStats()
        self.started_ms = wall_ms()

    # --- requests -----------------------------------------------------------------------------

    def _check_capacity(self) -> None:
        if len(self._waiters) >= MAX_INFLIGHT_REQUESTS:
            raise Unavailable(f"node overloaded: {MAX_INFLIGHT_REQUESTS} requests in flight")

    async def request(self, request: Request | AdminRequest, op: str | None = None) -> Any:
        """Run a request; return its result or raise its SapwoodError."""
        self._check_capacity()
        started = time.perf_counter()
        req_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiters[req_id] = future
        if not self._unsubmitted:
            loop.call_soon(self._submit_turn)
        self._unsubmitted.append((req_id, request))
        try:
            result = await future
        finally:
            self._waiters.pop(req_id, None)
        self.latency.record(op or type(request).__name__, time.perf_counter() - started)
        if isinstance(result, SapwoodError):
            raise result
        return result

    def _submit_turn(self) -> None:
        """Hand this turn's requests to the core, in batches that share a commit."""
        pending, self._unsubmitted = self._unsubmitted, []
        for start in range(0, len(pending), MAX_SUBMIT_BATCH):
            self._submit_batch(pending[start:start + MAX_SUBMIT_BATCH])

    def _submit_batch(self, batch: list[tuple[int, Request | AdminRequest]]) -> None:
        try:
            if len(batch) == 1:
                effects = self.core.submit(batch[0][0], batch[0][1], core_ms())
            else:
                effects = self.core.submit_all(batch, core_ms())
        except Exception as exc:
            log.exception("submitting %d requests failed", len(batch))
            for req_id, _ in batch:
                self._fail(req_id, exc)
            return
        self.execute(effects)

    def _fail(self, req_id: int, exc: Exception) -> None:
        waiter = self._waiters.get(req_id)
        if isinstance(waiter, asyncio.Future) and not waiter.done():
            waiter.set_exception(exc)

    async def stream(self, request: Request) -> AsyncIterator[Any]:
        """Run a streamed coverage request: yields CoverageChunks, then the final result."""
        self._check_capacity()
        req_id = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiters[req_id] = queue
        try:
            self.execute(self.core.submit(req_id, request, core_ms()))
            while True:
                item = await queue.get()
                if isinstance(item, SapwoodError):
                    raise item
                yield item
                if not isinstance(item, CoverageChunk):
                    return
        finally:
            self._waiters.pop(req_id, None)

    # --- effects ------------------------------------------------------------------------------

    async def probe(self, address: str) -> str:
        """Handshake with the node at `address` (host:port) and return its name."""
        if self.probe_remote is None:
            raise Unavailable("the inter-node transport is not running on this node")
        return await self.probe_remote(address)

    @property
    def service(self) -> KVService:
        return self.core.kv

    def start(self) -> None:
        """Start the core's timers (heartbeats, gossip, handoff); call once the loop runs."""
        self.execute(self.core.start(core_ms()))

    def deliver(self, sender: str, msg: Any) -> None:
        """A message from `sender` (this node itself for local flush completions)."""
        self.execute(self.core.on_message(sender, msg, core_ms()))

    def deliver_batch(self, sender: str, msgs: list[Any]) -> None:
        """Messages from `sender` that arrived together: one core event, so the replicas' writes
        among them share one commit."""
        if len(msgs) == 1:
            self.deliver(sender, msgs[0])
        else:
            self.execute(self.core.on_messages(sender, msgs, core_ms()))

    def deliver_to(self, node: str, msg: Any) -> None:
        if node == self.name:
            self.deliver(self.name, msg)
        elif self.send_remote is not None:
            self.send_remote(node, msg)
        else:
            log.debug("no inter-node transport; dropping %s to %s", type(msg).__name__, node)

    def execute(self, effects: list[Effect]) -> None:
        for effect in effects:  # the commonest kinds first
            if isinstance(effect, Send):
                self.deliver_to(effect.to, effect.msg)
            elif isinstance(effect, Reply):
                self._answer(effect)
            elif isinstance(effect, SetTimer):
                self._timers.set(effect.key, effect.at_ms)
            elif isinstance(effect, CancelTimer):
                self._timers.cancel(effect.key)
            elif isinstance(effect, Flush):
                self.committer.add(effect)

    def _answer(self, reply: Reply) -> None:
        waiter = self._waiters.get(reply.req_id)
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait(reply.result)
        elif not waiter.done():
            waiter.set_result(reply.result)

    def _fire(self, key: Any) -> None:
        self.execute(self.core.on_timer(key, core_ms()))

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._timers.clear()
        self.service.backend.sync()
        self.service.backend.close()
