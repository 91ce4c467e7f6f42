"""Failure detection by heartbeats: the up/down view that sloppy quorums and coverage consult.

Every message from a peer counts as a heartbeat; explicit pings fill the silences. A peer not
heard from for `down_after_ms` is down, which is also how a paused (SIGSTOP) process is treated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sapwood.core.effects import Effect, Send, SetTimer
from sapwood.core.records import fast_init

PING_INTERVAL_MS = 500
DOWN_AFTER_MS = 2_000
TIMER = ("heartbeat",)


@fast_init
@dataclass(frozen=True, slots=True)
class Ping:
    sender: str


class FailureDetector:
    def __init__(self, me: str, interval_ms: int = PING_INTERVAL_MS,
                 down_after_ms: int = DOWN_AFTER_MS) -> None:
        self.me = me
        self.interval_ms = interval_ms
        self.down_after_ms = down_after_ms
        self.last_heard: dict[str, int] = {}
        self.now_ms = 0

    def start(self, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        return [SetTimer(TIMER, now_ms + self.interval_ms)]

    def heard(self, node: str, now_ms: int) -> None:
        if now_ms > self.now_ms:
            self.now_ms = now_ms
        self.last_heard[node] = now_ms

    def tick(self, peers: Iterable[str], now_ms: int) -> list[Effect]:
        self.now_ms = max(self.now_ms, now_ms)
        effects: list[Effect] = [Send(p, Ping(self.me)) for p in peers if p != self.me]
        effects.append(SetTimer(TIMER, now_ms + self.interval_ms))
        return effects

    def is_up(self, node: str) -> bool:
        if node == self.me:
            return True
        heard = self.last_heard.get(node)
        return heard is not None and self.now_ms - heard <= self.down_after_ms

    def forget(self, node: str) -> None:
        self.last_heard.pop(node, None)
