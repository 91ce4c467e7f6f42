"""Coverage plans for list-keys and 2i, and the coordinator that gathers their answers.

A key with first partition f lives on vnodes f..f+n-1, so vnode q can answer for the keys whose
first partition is in q-n+1..q. A plan picks vnodes on up nodes until every first partition is
covered once. What cannot be covered is reported as harvest < 1.0, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sapwood.core.effects import Effect, Reply, Send, SetTimer
from sapwood.core.errors import BadRequest, Unavailable
from sapwood.core.index import IndexQuery, finish_page
from sapwood.core.messages import Fold, FoldReply
from sapwood.core.requests import CoverageChunk, CoverageResult, ListBuckets
from sapwood.core.ring import Ring


@dataclass(frozen=True, slots=True)
class CoveragePlan:
    vnodes: dict[int, tuple[str, frozenset[int]]]  # partition -> (node, first partitions it answers)
    uncovered: frozenset[int]
    ring_size: int

    @property
    def harvest(self) -> float:
        return 1.0 - len(self.uncovered) / self.ring_size


def plan_coverage(ring: Ring, n_val: int, is_up: Callable[[str], bool]) -> CoveragePlan:
    size = ring.size
    n = min(n_val, size)
    uncovered = set(range(size))
    vnodes: dict[int, tuple[str, frozenset[int]]] = {}
    missing: set[int] = set()
    for first in range(size):
        if first not in uncovered:
            continue
        # Prefer the vnode that covers the most still-uncovered first partitions.
        for offset in range(n - 1, -1, -1):
            q = (first + offset) % size
            if is_up(ring.owners[q]) and q not in vnodes:
                answers = frozenset(
                    f for f in ((q - i) % size for i in range(n)) if f in uncovered
                )
                vnodes[q] = (ring.owners[q], answers)
                uncovered -= answers
                break
        else:
            uncovered.discard(first)
            missing.add(first)
    return CoveragePlan(vnodes, frozenset(missing), size)


class CoveragePhase(Enum):
    COLLECTING = "collecting"
    DONE = "done"


class CoverageCoordinator:
    def __init__(self, req_id: int, node: str, query: Any, plan: CoveragePlan, timeout_ms: int,
                 stream: bool) -> None:
        self.req_id = req_id
        self.node = node
        self.query = query
        self.plan = plan
        self.timeout_ms = timeout_ms
        self.stream = stream
        self.phase = CoveragePhase.COLLECTING
        self.pending = set(plan.vnodes)
        self.failed: set[int] = set()
        self.items: list[Any] = []
        self.seen_buckets: set[str] = set()

    @property
    def done(self) -> bool:
        return self.phase is CoveragePhase.DONE

    def start(self, now_ms: int) -> list[Effect]:
        if not self.plan.vnodes:
            self.phase = CoveragePhase.DONE
            return [Reply(self.req_id, Unavailable("no vnode is up to answer the coverage query"))]
        effects: list[Effect] = [
            Send(node, Fold(self.req_id, self.node, partition, self.query, firsts))
            for partition, (node, firsts) in self.plan.vnodes.items()
        ]
        effects.append(SetTimer(("request", self.req_id), now_ms + self.timeout_ms))
        return effects

    def on_message(self, msg: Any, now_ms: int) -> list[Effect]:
        if not isinstance(msg, FoldReply) or msg.partition not in self.pending or self.done:
            return []
        self.pending.discard(msg.partition)
        if msg.error is not None:
            if msg.error.startswith("400:"):
                self.phase = CoveragePhase.DONE
                return [Reply(self.req_id, BadRequest(msg.error[4:]))]
            self.failed.add(msg.partition)
            items: list[Any] = []
        else:
            items = self._new_items(msg.items)
        effects: list[Effect] = []
        if self.stream and items and not isinstance(self.query, IndexQuery):
            effects.append(Reply(self.req_id, CoverageChunk(items)))
        else:
            self.items += items
        if not self.pending:
            effects.append(self._finish())
        return effects

    def _new_items(self, items: list[Any]) -> list[Any]:
        if not isinstance(self.query, ListBuckets):
            return items
        fresh = [b for b in items if b not in self.seen_buckets]
        self.seen_buckets.update(fresh)
        return fresh

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        if self.done:
            return []
        self.failed |= self.pending
        self.pending.clear()
        return [self._finish()]

    def _finish(self) -> Reply:
        self.phase = CoveragePhase.DONE
        lost = set(self.plan.uncovered)
        for partition in self.failed:
            lost |= self.plan.vnodes[partition][1]
        harvest = 1.0 - len(lost) / self.plan.ring_size
        if isinstance(self.query, IndexQuery):
            page, continuation = finish_page(self.query, self.items)
            return Reply(self.req_id, CoverageResult([], harvest, continuation, page))
        return Reply(self.req_id, CoverageResult(self.items, harvest))
