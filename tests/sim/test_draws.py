"""sim.draws takes the very values random.Random's own methods take, and leaves the same state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.sim import draws

SEEDS = st.integers(min_value=0, max_value=2**64)


def twins(seed: int) -> tuple[random.Random, random.Random]:
    return random.Random(seed), random.Random(seed)


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS, seq=st.lists(st.integers(), min_size=1, max_size=300), rounds=st.integers(1, 8))
def test_choice_draws_what_random_choice_draws(seed: int, seq: list[int], rounds: int) -> None:
    ours, theirs = twins(seed)
    assert [draws.choice(ours, seq) for _ in range(rounds)] == [
        theirs.choice(seq) for _ in range(rounds)
    ]
    assert ours.getstate() == theirs.getstate()


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS, low=st.integers(-(2**70), 2**70), width=st.integers(0, 2**70))
def test_randint_draws_what_random_randint_draws(seed: int, low: int, width: int) -> None:
    ours, theirs = twins(seed)
    assert draws.randint(ours, low, low + width) == theirs.randint(low, low + width)
    assert ours.getstate() == theirs.getstate()


def test_a_power_of_two_bound_still_rejects_draws_past_it() -> None:
    # n = 2**k needs k + 1 bits, so about half the raw draws are rejected: the loop must match.
    ours, theirs = twins(7)
    assert [draws.below(ours, 1024) for _ in range(50)] == [
        theirs.randrange(1024) for _ in range(50)
    ]
    assert ours.getstate() == theirs.getstate()


def test_choice_works_on_tuples_and_strings() -> None:
    ours, theirs = twins(3)
    assert draws.choice(ours, ("a", "b", "c")) == theirs.choice(("a", "b", "c"))
    assert draws.choice(ours, "xyz") == theirs.choice("xyz")


def test_empty_choices_raise_like_random() -> None:
    rng = random.Random(1)
    with pytest.raises(IndexError):
        draws.choice(rng, [])
    with pytest.raises(ValueError, match="empty range"):
        draws.randint(rng, 5, 4)
