"""ClusterNode.submit_all and on_messages: several events as one, with one backend batch."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sapwood.core.cluster import ClusterConfig, ClusterNode
from sapwood.core.effects import Reply
from sapwood.core.requests import GetRequest, PutRequest
from sapwood.core.ring import BKey
from sapwood.storage.memory import MemoryBackend

NOW_MS = 1_000_000


class CountingBackend(MemoryBackend):
    """Counts outermost batches: the ones that commit in a real backend."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0
        self.depth = 0

    @contextmanager
    def _counted(self) -> Iterator[None]:
        self.batches += self.depth == 0
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def batch(self) -> AbstractContextManager[None]:
        return self._counted()


def node() -> ClusterNode:
    return ClusterNode("n1@h", CountingBackend(), 1, ClusterConfig(ring_size=8),
                       random.Random(5))


def requests() -> list[tuple[int, Any]]:
    puts = [(i, PutRequest(BKey("default", "b", f"k{i}"), f"v{i}".encode()))
            for i in range(1, 6)]
    return [*puts, (6, GetRequest(BKey("default", "b", "k1")))]


def replies(effects: list[Any]) -> dict[int, Any]:
    return {e.req_id: e.result for e in effects if isinstance(e, Reply)}


def test_submit_all_equals_one_submit_per_request_in_one_batch() -> None:
    one_by_one, together = node(), node()
    separate: list[Any] = []
    for req_id, request in requests():
        separate += one_by_one.submit(req_id, request, NOW_MS)
    before = together.backend.batches  # type: ignore[attr-defined]
    joint = together.submit_all(requests(), NOW_MS)
    assert together.backend.batches - before == 1  # type: ignore[attr-defined]
    assert joint == separate
    # The get after the puts in the same batch sees the put before it.
    assert [s.value for s in replies(joint)[6].obj.siblings] == [b"v1"]


def test_on_messages_handles_each_message_in_order_in_one_batch() -> None:
    from sapwood.core.failure import Ping

    core = node()
    before = core.backend.batches  # type: ignore[attr-defined]
    effects = core.on_messages("n2@h", [Ping("n2@h"), Ping("n2@h")], NOW_MS)
    assert core.backend.batches - before == 1  # type: ignore[attr-defined]
    # A node outside the peer set hears back once per ping, as with two on_message calls.
    assert len(effects) == 2
