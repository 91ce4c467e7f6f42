"""The synchronous, single-process driver behind `sapwood.open()`: no sockets, no threads.

Every replica is local, so a request completes within the call: local messages are delivered by
the node's core, flushes are made right away (with `sync="fsync"`, one fsync per batch), and
timers run when they are due at the next call. A request on a consistent bucket may need its
group's members (all local) to elect a leader first: while such a request waits, the driver's
clock jumps to the next timer instead of sleeping, so the election takes no real time. The clock
only ever moves forward (the node clock of `local.core_ms` plus the jumps made so far).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from sapwood.core.cluster import ClusterNode
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.errors import SapwoodError
from sapwood.core.requests import Request
from sapwood.core.service import KVService
from sapwood.node.local import core_ms

SYNC_MODES = ("commit", "fsync")
MAX_WAIT_STEPS = 100_000  # timers run for one request; a request needing more is stuck
MAX_DUE_TIMERS = 100_000  # timers run when a call starts (each re-arms in the future)


class EmbeddedDriver:
    def __init__(self, core: ClusterNode, sync: str = "commit") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.core = core
        self.sync = sync
        self._ids = itertools.count(1)
        self._timers: list[tuple[int, int, Any]] = []  # (at, version, key)
        self._versions: dict[Any, int] = {}
        self._seq = itertools.count()
        self._skew_ms = 0
        self._flushes: list[Flush] = []
        self._run(core.start(self.now()), -1, [])

    @property
    def service(self) -> KVService:
        return self.core.kv

    def now(self) -> int:
        return core_ms() + self._skew_ms

    def call(self, request: Request) -> Any:
        """Run one request to completion; raise its SapwoodError or return its results."""
        self._fire_due_timers()
        req_id = next(self._ids)
        results: list[Any] = []
        self._run(self.core.submit(req_id, request, self.now()), req_id, results)
        steps = 0
        while not results:
            steps += 1
            if steps > MAX_WAIT_STEPS or not self._fire_next_timer(req_id, results):
                raise RuntimeError("request did not complete; all replicas are local")
        final = results[-1]
        if isinstance(final, SapwoodError):
            raise final
        return results

    # --- effects ------------------------------------------------------------------------------

    def _run(self, effects: list[Effect], req_id: int, results: list[Any]) -> None:
        """Carry out effects, and the flushes they ask for, until nothing is pending."""
        self._apply_all(effects, req_id, results)
        while self._flushes:
            flushes, self._flushes = self._flushes, []
            # One fsync makes every write so far durable (group commit).
            if self.sync == "fsync":
                self.service.backend.sync()
            for flush in flushes:
                self._deliver(flush.to, flush.done, req_id, results)

    def _apply_all(self, effects: list[Effect], req_id: int, results: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                if effect.req_id == req_id:
                    results.append(effect.result)
            elif isinstance(effect, SetTimer):
                version = next(self._seq)
                self._versions[effect.key] = version
                heapq.heappush(self._timers, (effect.at_ms, version, effect.key))
            elif isinstance(effect, CancelTimer):
                self._versions.pop(effect.key, None)
            elif isinstance(effect, Flush):
                self._flushes.append(effect)
            elif isinstance(effect, Send):
                self._deliver(effect.to, effect.msg, req_id, results)

    def _deliver(self, to: str, msg: Any, req_id: int, results: list[Any]) -> None:
        if to != self.core.name:
            raise RuntimeError(f"embedded store cannot send to {to}")
        self._apply_all(self.core.on_message(self.core.name, msg, self.now()), req_id, results)

    # --- timers -------------------------------------------------------------------------------

    def _pop_timer(self) -> tuple[int, Any] | None:
        """The earliest timer still armed (replaced and cancelled ones are skipped)."""
        while self._timers:
            at, version, key = heapq.heappop(self._timers)
            if self._versions.get(key) == version:
                del self._versions[key]
                return at, key
        return None

    def _fire(self, key: Any, req_id: int, results: list[Any]) -> None:
        self._run(self.core.on_timer(key, self.now()), req_id, results)

    def _fire_due_timers(self) -> None:
        for _ in range(MAX_DUE_TIMERS):
            if not self._timers or self._timers[0][0] > self.now():
                return
            timer = self._pop_timer()
            if timer is not None:
                self._fire(timer[1], -1, [])

    def _fire_next_timer(self, req_id: int, results: list[Any]) -> bool:
        """Jump the clock to the next timer and fire it; False when none is armed."""
        timer = self._pop_timer()
        if timer is None:
            return False
        at, key = timer
        self._skew_ms += max(0, at - self.now())
        self._fire(key, req_id, results)
        return True

    def close(self) -> None:
        self.service.backend.sync()
        self.service.backend.close()
