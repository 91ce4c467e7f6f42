"""When each open consistent operation must next be looked at, behind one host timer.

An operation wakes at its deadline, at the end of a remote call's wait, or after a pause. Most
are answered long before, so rather than a timer per operation (set and cancelled again on every
request) the host keeps their wake times in a heap and one timer at the earliest: under load a
new operation wakes later than the armed time and costs the driver nothing. Entries of finished
or re-scheduled operations stay in the heap until they come up (or a compaction drops them).
"""

from __future__ import annotations

import heapq

from sapwood.core.ensemble_ops import MAX_OPEN_OPS

# Heap entries (live and stale) before it is rebuilt from the live operations alone.
MAX_WAKE_ENTRIES = 4 * MAX_OPEN_OPS


class OpWakes:
    __slots__ = ("_due", "_heap", "armed_ms")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int]] = []
        self._due: dict[int, int] = {}  # req_id -> its current wake time
        self.armed_ms: int | None = None  # when the host timer is set to fire, if it is set

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, req_id: int, at_ms: int) -> int | None:
        """Wake `req_id` at `at_ms` (replacing its earlier wake); the time to set the host
        timer to, or None when the armed timer fires early enough."""
        self._due[req_id] = at_ms
        heapq.heappush(self._heap, (at_ms, req_id))
        if len(self._heap) > MAX_WAKE_ENTRIES:
            self._heap = [(at, rid) for rid, at in self._due.items()]
            heapq.heapify(self._heap)
        if self.armed_ms is None or at_ms < self.armed_ms:
            self.armed_ms = at_ms
            return at_ms
        return None

    def forget(self, req_id: int) -> None:
        self._due.pop(req_id, None)

    def fired(self, now_ms: int) -> list[int]:
        """The host timer fired: the operations due by `now_ms` (each forgotten here)."""
        self.armed_ms = None
        due: list[int] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            at, req_id = heapq.heappop(heap)
            if self._due.get(req_id) == at:
                del self._due[req_id]
                due.append(req_id)
        return due

    def rearm(self) -> int | None:
        """After handling what `fired` returned: the time to set the host timer to, if any."""
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the operation ended or wakes at another time
        if not heap:
            return None
        at = heap[0][0]
        if self.armed_ms is None or at < self.armed_ms:
            self.armed_ms = at
            return at
        return None
