"""TimerQueue: the core's timers on one loop timer."""

from __future__ import annotations

import asyncio
from typing import Any

from sapwood.node import timers
from sapwood.node.timers import TimerQueue


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def run(body: Any) -> None:
    asyncio.run(body())


def test_due_timers_fire_in_deadline_order_and_cancelled_ones_never() -> None:
    async def body() -> None:
        clock, fired = Clock(), list[Any]()
        queue = TimerQueue(clock, fired.append)
        queue.set("late", 3)
        queue.set("early", 1)
        queue.set("gone", 2)
        queue.set("rearmed", 1)
        queue.cancel("gone")
        queue.set("rearmed", 4)  # replaces its first deadline
        clock.ms = 5
        await asyncio.sleep(0.01)
        assert fired == ["early", "late", "rearmed"]
        assert len(queue) == 0

    run(body)


def test_a_timer_armed_while_others_fire_waits_for_the_next_wake_up() -> None:
    async def body() -> None:
        clock, fired = Clock(), list[Any]()

        def fire(key: str) -> None:
            fired.append(key)
            if key == "a":
                queue.set("b", clock.ms)

        queue = TimerQueue(clock, fire)
        queue.set("a", 0)
        await asyncio.sleep(0.01)
        assert fired == ["a", "b"]

    run(body)


def test_a_failing_timer_does_not_stop_the_others() -> None:
    async def body() -> None:
        clock, fired = Clock(), list[Any]()

        def fire(key: str) -> None:
            fired.append(key)
            if key == "bad":
                raise RuntimeError("boom")

        queue = TimerQueue(clock, fire)
        queue.set("bad", 0)
        queue.set("good", 0)
        await asyncio.sleep(0.01)
        assert fired == ["bad", "good"]

    run(body)


def test_cancelled_entries_are_compacted_away(monkeypatch: Any) -> None:
    monkeypatch.setattr(timers, "MAX_STALE_TIMER_ENTRIES", 8)

    async def body() -> None:
        clock, fired = Clock(), list[Any]()
        queue = TimerQueue(clock, fired.append)
        queue.set("kept", 50)
        for i in range(100):
            queue.set(i, 10 + i)
            queue.cancel(i)
        assert len(queue._heap) <= 1 + 8 + 1
        clock.ms = 1_000
        queue.set("now", 0)
        await asyncio.sleep(0.01)
        assert fired == ["now", "kept"]

    run(body)


def test_clear_forgets_every_timer() -> None:
    async def body() -> None:
        clock, fired = Clock(), list[Any]()
        queue = TimerQueue(clock, fired.append)
        queue.set("a", 0)
        queue.clear()
        await asyncio.sleep(0.01)
        assert fired == [] and "a" not in queue

    run(body)
