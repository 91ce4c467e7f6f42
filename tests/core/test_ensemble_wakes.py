"""The heap behind consistent operations' wake times: each live operation is woken once, at its
latest wake time, and the one host timer is set only when it must fire earlier."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.ensemble_wakes import OpWakes

steps = st.lists(st.tuples(st.sampled_from(["schedule", "forget", "fire"]),
                           st.integers(0, 5), st.integers(0, 100)), max_size=60)


def test_the_timer_is_set_only_for_an_earlier_wake() -> None:
    wakes = OpWakes()
    assert wakes.schedule(1, 500) == 500
    assert wakes.schedule(2, 900) is None  # the armed timer fires earlier
    assert wakes.schedule(3, 100) == 100
    assert wakes.fired(100) == [3]
    assert wakes.rearm() == 500
    wakes.forget(1)
    assert wakes.fired(500) == []
    assert wakes.rearm() == 900
    assert wakes.fired(1_000) == [2] and wakes.rearm() is None and len(wakes) == 0


@settings(max_examples=200, deadline=None)
@given(steps)
def test_every_live_operation_wakes_once_at_its_latest_time(plan: list[tuple[str, int, int]]
                                                            ) -> None:
    wakes, due, now, armed = OpWakes(), {}, 0, None
    for action, req_id, delay in plan:
        if action == "schedule":
            due[req_id] = now + delay
            arm = wakes.schedule(req_id, now + delay)
            if arm is not None:
                armed = arm
            assert armed is not None and armed <= now + delay
        elif action == "forget":
            due.pop(req_id, None)
            wakes.forget(req_id)
        elif armed is not None:
            now = max(now, armed)
            woken = wakes.fired(now)
            expected = sorted(r for r, at in due.items() if at <= now)
            assert sorted(woken) == expected
            for r in woken:
                del due[r]
            armed = wakes.rearm()
            assert armed == (min(due.values()) if due else None)
    assert len(wakes) == len(due)
