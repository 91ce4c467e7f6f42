"""Pacing for a node's network code: exponential backoff between reconnection attempts, and a
throttle so that a peer that stays down logs a line per interval, not one per attempt."""

from __future__ import annotations

import random
import time
from typing import Any

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
LOG_INTERVAL_S = 10.0  # at most one line per peer and kind of trouble in this interval
MAX_THROTTLE_KEYS = 1024


class Backoff:
    """Exponential delays from BACKOFF_MIN_S to BACKOFF_MAX_S, each jittered into [d/2, d)."""

    def __init__(self, rng: random.Random, low_s: float = BACKOFF_MIN_S,
                 high_s: float = BACKOFF_MAX_S) -> None:
        self.rng = rng
        self.low_s = low_s
        self.high_s = high_s
        self.delay_s = low_s

    def next_delay(self) -> float:
        delay = self.delay_s
        self.delay_s = min(self.high_s, delay * 2)
        return delay * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.delay_s = self.low_s


class LogThrottle:
    """Rate-limits repeated log lines: `allow(key)` says whether to log, and how many were skipped."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[Any, float] = {}
        self._skipped: dict[Any, int] = {}

    def allow(self, key: Any) -> int | None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        if len(self._last) >= MAX_THROTTLE_KEYS:
            self._last.clear()
        self._last[key] = now
        return self._skipped.pop(key, 0)


def skipped_suffix(skipped: int) -> str:
    return f" ({skipped} similar skipped)" if skipped else ""
