"""A tiny deterministic network of KV services with memory backends, for core tests.

Messages are delivered in FIFO order; nodes in `down` drop everything sent to them; flushes
complete at once. Virtual time only moves when a test advances it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.errors import SapwoodError
from sapwood.core.metadata import ClusterMetadata
from sapwood.core.requests import Request
from sapwood.core.ring import Ring
from sapwood.core.service import KVService
from sapwood.storage.memory import MemoryBackend


class Net:
    def __init__(self, nodes: list[str], ring_size: int = 16) -> None:
        owners = tuple(nodes[i % len(nodes)] for i in range(ring_size))
        self.ring = Ring(owners)
        self.metadata = ClusterMetadata()
        self.down: set[str] = set()
        self.now = 1_000_000
        self.services = {
            n: KVService(n, self.ring, MemoryBackend(), 1, self.metadata, self.is_up) for n in nodes
        }
        self.queue: deque[tuple[str, Effect]] = deque()
        self.timers: list[tuple[int, int, str, Any]] = []
        self.cancelled: set[Any] = set()
        self.replies: dict[int, list[Any]] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()

    def is_up(self, node: str) -> bool:
        return node not in self.down

    def submit(self, node: str, request: Request) -> int:
        req_id = next(self._ids)
        self._enqueue(node, self.services[node].submit(req_id, request, self.now))
        return req_id

    def _enqueue(self, node: str, effects: list[Effect]) -> None:
        self.queue.extend((node, e) for e in effects)

    def run(self) -> None:
        while self.queue:
            node, effect = self.queue.popleft()
            if isinstance(effect, Send):
                if effect.to not in self.down:
                    self._enqueue(effect.to, self.services[effect.to].on_message(effect.msg, self.now))
            elif isinstance(effect, Flush):
                if effect.to not in self.down:
                    self._enqueue(effect.to, self.services[effect.to].on_message(effect.done, self.now))
            elif isinstance(effect, Reply):
                self.replies.setdefault(effect.req_id, []).append(effect.result)
            elif isinstance(effect, SetTimer):
                heapq.heappush(self.timers, (effect.at_ms, next(self._seq), node, effect.key))
            elif isinstance(effect, CancelTimer):
                self.cancelled.add(effect.key)

    def advance(self, ms: int) -> None:
        self.now += ms
        while self.timers and self.timers[0][0] <= self.now:
            _, _, node, key = heapq.heappop(self.timers)
            if node not in self.down:
                self._enqueue(node, self.services[node].on_timer(key, self.now))
            self.run()

    def call(self, node: str, request: Request) -> Any:
        req_id = self.submit(node, request)
        self.run()
        results = self.replies.get(req_id)
        if not results:
            self.advance(120_000)
            results = self.replies.get(req_id)
        assert results, "request never answered"
        return results[-1]

    def ok(self, node: str, request: Request) -> Any:
        result = self.call(node, request)
        if isinstance(result, SapwoodError):
            raise result
        return result
