"""The synchronous, single-process driver behind `sapwood.open()`: no sockets, no threads.

Every replica is local, so a request completes within the call: local messages are delivered by
the service, flushes are made right away (with `sync="fsync"`, one fsync per request), and
timers (tombstone reaping) run when they are due at the next call.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any

from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.errors import SapwoodError
from sapwood.core.requests import Request
from sapwood.core.service import KVService

SYNC_MODES = ("commit", "fsync")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class EmbeddedDriver:
    def __init__(self, service: KVService, sync: str = "commit") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.service = service
        self.sync = sync
        service.set_commit_durable(sync == "commit")
        self._ids = itertools.count(1)
        self._timers: list[tuple[int, int, Any]] = []
        self._timer_seq = itertools.count()
        self._cancelled: set[Any] = set()

    def call(self, request: Request) -> Any:
        """Run one request to completion; raise its SapwoodError or return its result."""
        self._fire_due_timers()
        req_id = next(self._ids)
        results: list[Any] = []
        self._execute(self.service.submit(req_id, request, wall_ms()), req_id, results)
        if not results:
            raise RuntimeError("request did not complete; all replicas are local")
        final = results[-1]
        if isinstance(final, SapwoodError):
            raise final
        return results

    def _execute(self, effects: list[Effect], req_id: int, results: list[Any]) -> None:
        pending = list(effects)
        while pending:
            flushes = [e for e in pending if isinstance(e, Flush)]
            for effect in pending:
                self._apply(effect, req_id, results)
            pending = []
            if flushes:
                # One fsync makes every write of this request durable (group commit).
                if self.sync == "fsync":
                    self.service.backend.sync()
                for flush in flushes:
                    pending += self.service.on_message(flush.done, wall_ms())

    def _apply(self, effect: Effect, req_id: int, results: list[Any]) -> None:
        if isinstance(effect, Reply):
            if effect.req_id == req_id:
                results.append(effect.result)
        elif isinstance(effect, SetTimer):
            self._cancelled.discard(effect.key)
            heapq.heappush(self._timers, (effect.at_ms, next(self._timer_seq), effect.key))
        elif isinstance(effect, CancelTimer):
            self._cancelled.add(effect.key)
        elif isinstance(effect, Send):
            raise RuntimeError(f"embedded store cannot send to {effect.to}")

    def _fire_due_timers(self) -> None:
        now = wall_ms()
        while self._timers and self._timers[0][0] <= now:
            _, _, key = heapq.heappop(self._timers)
            if key in self._cancelled:
                self._cancelled.discard(key)
                continue
            if key[0] == "request":
                continue  # every request finished within its call
            self._execute(self.service.on_timer(key, now), -1, [])

    def close(self) -> None:
        self.service.backend.sync()
        self.service.backend.close()
