"""The core's timers on an asyncio loop: one loop timer for all of them.

Nearly every request arms a timeout and cancels it a few milliseconds later. A loop timer per
timeout costs a handle, a scheduling and a cancellation each; here arming is a heap push and a
dict store, cancelling a dict pop, and the loop holds one timer, for the earliest deadline.
Cancelled entries stay in the heap until they come due or the heap is compacted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sapwood.node")

# The heap is rebuilt from the live timers once it holds this many more entries than there are
# live timers (cancelled and re-armed timers leave stale entries behind).
MAX_STALE_TIMER_ENTRIES = 4096
MAX_TIMERS = 1_000_000


class TimerQueue:
    """Timers by key, in core milliseconds; arming a key again replaces its earlier deadline."""

    def __init__(self, now_ms: Callable[[], int], fire: Callable[[Any], None]) -> None:
        self._now_ms = now_ms
        self._fire = fire
        self._live: dict[Any, int] = {}  # key -> sequence number of its live heap entry
        self._heap: list[tuple[int, int, Any]] = []  # (at_ms, sequence number, key)
        self._seq = itertools.count()
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at: int | None = None
        self._firing = False

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: Any) -> bool:
        return key in self._live

    def set(self, key: Any, at_ms: int) -> None:
        if len(self._live) >= MAX_TIMERS and key not in self._live:
            raise RuntimeError(f"more than {MAX_TIMERS} timers armed: a timer leak")
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, (at_ms, seq, key))
        if len(self._heap) > len(self._live) + MAX_STALE_TIMER_ENTRIES:
            self._compact()
        if not self._firing and (self._wake_at is None or at_ms < self._wake_at):
            self._schedule(at_ms)

    def cancel(self, key: Any) -> None:
        self._live.pop(key, None)

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()
        if self._wake is not None:
            self._wake.cancel()
        self._wake = self._wake_at = None

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)

    def _schedule(self, at_ms: int) -> None:
        if self._wake is not None:
            self._wake.cancel()
        delay = max(0.0, (at_ms - self._now_ms()) / 1000)
        self._wake = asyncio.get_running_loop().call_later(delay, self._run)
        self._wake_at = at_ms

    def _run(self) -> None:
        self._wake = self._wake_at = None
        heap, live = self._heap, self._live
        now = self._now_ms()
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        self._firing = True
        try:
            # Timers armed while these fire wait for the next wake-up, as a loop timer would.
            for _, seq, key in due:
                if live.get(key) == seq:  # not cancelled or re-armed by an earlier one
                    del live[key]
                    try:
                        self._fire(key)
                    except Exception:
                        log.exception("timer %r failed", key)
        finally:
            self._firing = False
            while heap and live.get(heap[0][2]) != heap[0][1]:
                heapq.heappop(heap)  # stale: do not wake up for it
            if heap:
                self._schedule(heap[0][0])
