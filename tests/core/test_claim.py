"""Claim: ring ownership stays balanced, spaced and deterministic, and moves little."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.claim import (
    DEFAULT_RING_SIZE,
    MAX_RING_SIZE,
    claim,
    initial_claim,
    minimum_transfers,
    spacing_target,
)
from sapwood.core.errors import BadRequest
from sapwood.core.ownership import ClaimError, check_spacing, ownership, transfers

RING_SIZES = [8, 16, 32, 64, 128, 256]
NODES = [f"dev{i}@127.0.0.1" for i in range(1, 41)]

# Derandomized so CI runs the same examples every time; claims on 256 partitions take a while.
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True)


def assert_balanced(owners: Sequence[str], members: Sequence[str]) -> None:
    counts = Counter(owners)
    assert set(counts) == set(members)
    low = len(owners) // len(members)
    high = -(-len(owners) // len(members))
    assert all(low <= c <= high for c in counts.values()), counts


def assert_spaced(owners: Sequence[str], members: Sequence[str], n: int) -> None:
    w = spacing_target(len(owners), len(members), n)
    assert check_spacing(owners, w) == []
    if -(-len(owners) // len(members)) * n <= len(owners):
        assert w == n
        assert check_spacing(owners, n) == []


# --- the spacing target -------------------------------------------------------------------


def test_default_ring_with_four_nodes_is_striped() -> None:
    owners = initial_claim(DEFAULT_RING_SIZE, NODES[:4])
    assert owners == tuple(NODES[:4] * 16)
    assert check_spacing(owners, 4) == []


@pytest.mark.parametrize(
    ("ring_size", "members", "n", "window"),
    [
        (64, 4, 4, 4),
        (64, 16, 4, 4),
        (64, 3, 4, 2),  # 3 does not divide 64: 22 partitions cannot sit 3 apart
        (64, 2, 4, 2),
        (64, 1, 4, 1),
        (64, 3, 3, 2),  # n = 3 needs a fourth member on any power-of-two ring
        (64, 4, 3, 3),
        (8, 7, 5, 4),  # one member owns two of 8 partitions: they can be 4 apart, not 5
        (8, 8, 5, 5),
        (16, 6, 6, 5),
        (16, 8, 6, 6),
        (8, 8, 9, 8),
    ],
)
def test_spacing_target_examples(ring_size: int, members: int, n: int, window: int) -> None:
    assert spacing_target(ring_size, members, n) == window


def test_full_target_is_met_exactly_when_the_largest_share_fits_n_apart() -> None:
    for ring_size in [2**k for k in range(3, 11)]:
        for members in range(1, min(ring_size, 40) + 1):
            for n in range(1, 9):
                feasible = -(-ring_size // members) * n <= ring_size
                assert (spacing_target(ring_size, members, n) == n) == feasible
                assert feasible == (members >= math.ceil(ring_size / (ring_size // n)))
                if n & (n - 1) == 0:
                    # A power-of-two n divides the ring: then members >= n is all it takes.
                    assert feasible == (members >= n)


def balanced_rings(ring_size: int, members: int) -> set[tuple[str, ...]]:
    share, extra = divmod(ring_size, members)
    counts = [share + (i < extra) for i in range(members)]
    return set(permutations([NODES[m] for m, c in enumerate(counts) for _ in range(c)]))


@pytest.mark.parametrize(("members", "n"), [(2, 4), (3, 4), (4, 4), (5, 5)])
def test_no_balanced_ring_keeps_a_wider_window_than_the_target(members: int, n: int) -> None:
    w = spacing_target(8, members, n)
    rings = balanced_rings(8, members)
    assert any(not check_spacing(ring, w) for ring in rings)
    if w < n:
        assert all(check_spacing(ring, w + 1) for ring in rings)


def test_initial_claim_is_balanced_and_spaced_for_every_ring_and_member_count() -> None:
    for ring_size in [2**k for k in range(3, 11)]:
        # Below 4 members the ring comes from claim(), which the churn tests cover on big rings.
        for count in range(1 if ring_size <= 256 else 4, min(ring_size, 24) + 1):
            owners = initial_claim(ring_size, NODES[:count])
            assert_balanced(owners, NODES[:count])
            for n in (2, 3, 4, 5):
                assert_spaced(owners, NODES[:count], n)


# --- reporting helpers --------------------------------------------------------------------


def test_check_spacing_lists_windows_with_a_repeat_including_the_wrap() -> None:
    assert check_spacing(("a", "b", "a", "b"), 2) == []
    assert check_spacing(("a", "b", "a", "b"), 3) == [0, 1, 2, 3]
    assert check_spacing(("a", "b", "c", "a"), 2) == [3]
    assert check_spacing(("a", "b", "c", "a"), 3) == [2, 3]
    assert check_spacing(("a", "b"), 1) == []
    assert check_spacing(("a", "b"), 3) == [0, 1]


def test_transfers_ownership_and_minimum_transfers() -> None:
    old = ("a", "b", "a", "b")
    new = ("a", "c", "a", "b")
    assert transfers(old, new) == [(1, "b", "c")]
    assert ownership(new) == {"a": 0.5, "b": 0.25, "c": 0.25}
    ring = initial_claim(64, NODES[:4])
    assert minimum_transfers(ring, NODES[:5]) == 12  # the newcomer's floor(64/5)
    assert minimum_transfers(ring, NODES[:4]) == 0
    assert minimum_transfers(ring, NODES[1:4]) == 16


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: initial_claim(64, []), "at least one member"),
        (lambda: initial_claim(48, NODES[:4]), "power of two"),
        (lambda: initial_claim(4, NODES[:2]), "power of two"),
        (lambda: initial_claim(2 * MAX_RING_SIZE, NODES[:2]), "power of two"),
        (lambda: initial_claim(8, NODES[:9]), "cannot share"),
        (lambda: initial_claim(64, ["a", "b", "a"]), "duplicate members: a"),
        (lambda: initial_claim(64, "dev1@127.0.0.1"), "not one string"),
        (lambda: initial_claim(64, ["a", ""]), "non-empty"),
        (lambda: initial_claim(64, ["a"], 0), "target_n_val"),
        (lambda: claim(("a",) * 12, ["a"]), "power of two"),
        (lambda: claim(("a",) * 8, []), "at least one member"),
        (lambda: claim(("a",) * 8, NODES[:9]), "cannot share"),
        (lambda: transfers(("a",), ("a", "b")), "differ in size"),
        (lambda: check_spacing(("a",), 0), "positive"),
    ],
)
def test_bad_input_gets_a_clear_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ClaimError, match=message) as raised:
        call()
    assert isinstance(raised.value, BadRequest)
    assert isinstance(raised.value, ValueError)
    assert raised.value.status == 400


# --- claim --------------------------------------------------------------------------------


def test_a_valid_ring_with_the_same_members_does_not_move() -> None:
    for ring_size in RING_SIZES:
        for count in (1, 3, 4, 7, 8):
            owners = initial_claim(ring_size, NODES[:count])
            assert claim(owners, list(reversed(NODES[:count]))) == owners


@pytest.mark.parametrize("ring_size", RING_SIZES)
def test_growing_a_cluster_one_node_at_a_time_moves_only_the_newcomers_share(
    ring_size: int,
) -> None:
    # Riak's claim puts a node twice in one preference list on some of these steps.
    owners = initial_claim(ring_size, NODES[:1])
    for count in range(2, min(16, ring_size) + 1):
        joined = NODES[:count]
        new = claim(owners, joined)
        assert_balanced(new, joined)
        assert_spaced(new, joined, 4)
        moved = transfers(owners, new)
        if spacing_target(ring_size, count - 1, 4) == spacing_target(ring_size, count, 4):
            assert {to for _, _, to in moved} == {joined[-1]}, "only the newcomer gains"
            assert len(moved) == ring_size // count  # exactly the balance lower bound
        else:
            # The window widens (1 -> 2 nodes: 1 to 2; 3 -> 4 nodes: 2 to 4), so the ring
            # must become a stripe and old members trade partitions too. A quarter cannot do:
            # on 16 partitions no balanced 2-spaced ring of 3 nodes is within 5 moves of a
            # stripe (exhaustive search: 6 at best; this claim takes 7).
            assert count in (2, 4)
            assert len(moved) <= ring_size // 2
        owners = new


def test_five_to_four_nodes_leaves_the_only_possible_shape_a_stripe() -> None:
    owners = initial_claim(64, NODES[:5])
    new = claim(owners, NODES[:4])
    assert all(new[p] == new[p % 4] for p in range(64))
    assert sorted(new[:4]) == sorted(NODES[:4])
    # Choosing which node gets which stripe keeps every partition a stripe can keep.
    kept = 64 - len(transfers(owners, new))
    best = max(
        sum(owners[p] == order[p % 4] for p in range(64)) for order in permutations(NODES[:4])
    )
    assert kept == best


def test_departed_nodes_hand_everything_over() -> None:
    owners = initial_claim(128, NODES[:8])
    new = claim(owners, NODES[:3] + NODES[4:8])
    assert_balanced(new, NODES[:3] + NODES[4:8])
    assert_spaced(new, NODES[:3] + NODES[4:8], 4)
    assert NODES[3] not in new
    assert {p for p, _, _ in transfers(owners, new)} >= {
        p for p, o in enumerate(owners) if o == NODES[3]
    }


def test_replacing_every_node_is_still_balanced_and_spaced() -> None:
    owners = initial_claim(64, NODES[:5])
    new = claim(owners, NODES[10:16])
    assert_balanced(new, NODES[10:16])
    assert_spaced(new, NODES[10:16], 4)


# --- properties ---------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, int, list[list[str]]]:
    """A ring size, target n and a sequence of member sets (joins, leaves or both)."""
    ring_size = draw(st.sampled_from(RING_SIZES))
    n = draw(st.sampled_from([4, 4, 4, 2, 3, 5, 6]))
    first = draw(st.integers(1, min(16, ring_size)))
    members = NODES[:first]
    spare = NODES[first:]
    sets = [members]
    for _ in range(draw(st.integers(1, 5))):
        members = list(members)
        if draw(st.booleans()) and len(members) < min(16, ring_size):
            members.append(spare.pop(0))
        if draw(st.booleans()) and len(members) > 1:
            members.remove(draw(st.sampled_from(members)))
        sets.append(members)
    return ring_size, n, sets


@PROPERTY
@given(histories())
def test_every_claim_is_balanced_and_spaced(history: tuple[int, int, list[list[str]]]) -> None:
    ring_size, n, sets = history
    owners = initial_claim(ring_size, sets[0], n)
    assert_balanced(owners, sets[0])
    assert_spaced(owners, sets[0], n)
    for members in sets[1:]:
        new = claim(owners, members, n)
        assert_balanced(new, members)
        assert_spaced(new, members, n)
        assert len(transfers(owners, new)) >= minimum_transfers(owners, members)
        owners = new


@PROPERTY
@given(histories())
def test_one_join_moves_about_a_newcomers_share(
    history: tuple[int, int, list[list[str]]],
) -> None:
    ring_size, n, sets = history
    owners = claim(initial_claim(ring_size, sets[0], n), sets[-1], n)
    members = sets[-1]
    if len(members) == ring_size:
        return
    joined = [*members, "newcomer@127.0.0.1"]
    new = claim(owners, joined, n)
    m = len(members)
    moved = len(transfers(owners, new))
    if spacing_target(ring_size, m, n) == spacing_target(ring_size, m + 1, n):
        w = spacing_target(ring_size, m + 1, n)
        assert moved <= ring_size // (m + 1) + w
    assert {to for _, _, to in transfers(owners, new)} <= set(joined)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(histories(), st.randoms(use_true_random=False))
def test_claim_is_deterministic_and_ignores_member_order(
    history: tuple[int, int, list[list[str]]], rng: random.Random
) -> None:
    ring_size, n, sets = history
    owners = initial_claim(ring_size, sets[0], n)
    shuffled = list(sets[-1])
    rng.shuffle(shuffled)
    assert claim(owners, sets[-1], n) == claim(owners, shuffled, n)
    assert initial_claim(ring_size, shuffled, n) == initial_claim(ring_size, sets[-1], n)


@pytest.mark.parametrize("ring_size", RING_SIZES)
def test_seeded_membership_churn(ring_size: int) -> None:
    """Longer join/leave sequences than the properties reach, on every ring size."""
    rng = random.Random(ring_size)
    members = NODES[: rng.randint(1, 8)]
    owners = initial_claim(ring_size, members)
    for _ in range(8):
        members = list(members)
        if rng.random() < 0.6 and len(members) < min(16, ring_size):
            members.append(rng.choice([n for n in NODES if n not in members]))
        elif len(members) > 1:
            members.remove(rng.choice(members))
        new = claim(owners, members)
        assert_balanced(new, members)
        assert_spaced(new, members, 4)
        owners = new
