"""Claim: which member node owns each partition of the consistent-hashing ring.

Ownership is a tuple of node names indexed by partition number. Every function here is pure and
deterministic; `members` is treated as a set (its order never matters, duplicates are refused).

What `claim` and `initial_claim` guarantee, for R partitions, m members and target n:

* Balance: every member owns floor(R/m) or ceil(R/m) partitions.
* Spacing: no node appears twice in any `w` consecutive partitions (wrapping around the ring),
  where w = `spacing_target(R, m, n)` is the largest window a *balanced* ring can keep distinct:

      w = min(n, R // ceil(R/m))

  The full target is therefore met exactly when ceil(R/m) * n <= R, i.e. when
  m >= ceil(R / floor(R/n)). That is necessary, because a node owning ceil(R/m) partitions needs
  that many gaps of at least n around a ring of R; and it is sufficient, because
  `_balanced_layout` builds such a ring for every (R, m). With n a power of two no larger than R
  (the default n = 4 with R = 8..1024) it reduces to m >= n. Otherwise there are corner cases:
  n = 3 needs m >= 4 on every power-of-two ring (three nodes cannot share 64 partitions 3-apart),
  n = 5 on R = 8 needs m = 8. Below the full target w still is the best possible: e.g. m < n
  gives w = m when m divides R, else the largest w with ceil(R/m) * w <= R (3 members: w = 2).
* Movement: a partition whose owner stays a member keeps that owner unless balance or spacing
  needs it elsewhere. `claim` first moves partitions one at a time (filling partitions of
  departed nodes, taking from members above their share, giving to members below it), then fixes
  any spacing conflict left by swapping owners of two partitions. Only when that cannot meet the
  spacing rule does it re-stripe: it lays out a fresh valid ring and rotates, reflects and
  relabels it to keep as many current owners as it can. Whichever valid answer moves fewer
  partitions wins. When one node joins a valid balanced ring and w does not change, at most
  ceil(R/(m+1)) + w partitions move (tests check this; `minimum_transfers` gives the lower bound,
  floor(R/(m+1)) for a join).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sapwood.core.errors import BadRequest

MIN_RING_SIZE = 8
MAX_RING_SIZE = 1024
DEFAULT_RING_SIZE = 64
DEFAULT_TARGET_N_VAL = 4
# Spacing repair gives up (and re-stripes) after this many swaps per partition of the ring.
MAX_REPAIR_SWAPS_PER_PARTITION = 2

Owners = tuple[str, ...]


class ClaimError(BadRequest, ValueError):
    """A claim was asked for something impossible or malformed; nothing was computed."""


# --- validation ---------------------------------------------------------------------------


def _check_ring_size(ring_size: int) -> None:
    if isinstance(ring_size, bool) or not isinstance(ring_size, int):
        raise ClaimError(f"ring_size must be an integer, got {ring_size!r}")
    if not MIN_RING_SIZE <= ring_size <= MAX_RING_SIZE or ring_size & (ring_size - 1):
        raise ClaimError(
            f"ring_size must be a power of two from {MIN_RING_SIZE} to {MAX_RING_SIZE}, "
            f"got {ring_size}"
        )


def _check_window(n: int, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ClaimError(f"{name} must be a positive integer, got {n!r}")


def _check_members(members: Sequence[str], ring_size: int) -> list[str]:
    """The members as a sorted list: claim treats them as a set."""
    if isinstance(members, str):
        raise ClaimError("members must be a sequence of node names, not one string")
    names = list(members)
    if not names:
        raise ClaimError("a ring needs at least one member")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ClaimError(f"member names must be non-empty strings, got {name!r}")
    duplicates = sorted(name for name, seen in Counter(names).items() if seen > 1)
    if duplicates:
        raise ClaimError(f"duplicate members: {', '.join(duplicates)}")
    if len(names) > ring_size:
        raise ClaimError(
            f"{len(names)} members cannot share a ring of {ring_size} partitions: "
            "every member must own at least one"
        )
    return sorted(names)


def _check_owners(owners: Sequence[str]) -> None:
    _check_ring_size(len(owners))
    for owner in owners:
        if not isinstance(owner, str) or not owner:
            raise ClaimError(f"owners must be non-empty node names, got {owner!r}")


# --- spacing ------------------------------------------------------------------------------


def spacing_target(
    ring_size: int, member_count: int, target_n_val: int = DEFAULT_TARGET_N_VAL
) -> int:
    """The window claim keeps free of repeated owners: min(n, R // ceil(R/m)) (see module doc)."""
    _check_window(target_n_val, "target_n_val")
    _check_window(member_count, "member_count")
    if ring_size < member_count:
        raise ClaimError(f"{member_count} members cannot share {ring_size} partitions")
    largest_share = -(-ring_size // member_count)
    return min(target_n_val, ring_size // largest_share)


def check_spacing(owners: Sequence[str], n: int) -> list[int]:
    """Partitions that start a window of `n` consecutive partitions (wrapping) with a repeated owner.

    A window longer than the ring holds some partition twice, so then every partition is listed.
    """
    _check_window(n, "n")
    size = len(owners)
    if n > size:
        return list(range(size))
    in_window = Counter(owners[:n])
    repeats = n - len(in_window)
    violating = []
    for start in range(size):
        if repeats:
            violating.append(start)
        leaving, entering = owners[start], owners[(start + n) % size]
        in_window[leaving] -= 1
        if in_window[leaving]:
            repeats -= 1
        if in_window[entering]:
            repeats += 1
        in_window[entering] += 1
    return violating


def _nearest_distances(slots: Sequence[str | None], node: str) -> list[int]:
    """For each partition, the ring distance to the closest *other* partition owned by `node`."""
    size = len(slots)
    far = size
    # Two passes round the ring twice each way catch the wrap-around without special cases.
    before = [far] * size
    last = None
    for i in range(2 * size):
        p = i % size
        if last is not None:
            before[p] = min(before[p], i - last)
        if slots[p] == node:
            last = i
    after = [far] * size
    last = None
    for i in range(2 * size - 1, -1, -1):
        p = i % size
        if last is not None:
            after[p] = min(after[p], last - i)
        if slots[p] == node:
            last = i
    return [min(b, a) for b, a in zip(before, after, strict=True)]


def _fits(slots: Sequence[str | None], p: int, node: str, w: int, ignore: int) -> bool:
    """Whether `node` may own `p` without a same-owner partition closer than `w` (except `ignore`)."""
    size = len(slots)
    for d in range(1, w):
        for q in ((p + d) % size, (p - d) % size):
            if q != ignore and q != p and slots[q] == node:
                return False
    return True


# --- a fresh ring -------------------------------------------------------------------------


def _balanced_layout(ring_size: int, member_count: int) -> list[int]:
    """Colours 0..m-1 for every partition: balanced and spaced as well as any ring can be.

    Colours below R % m ("full", one partition more each) form a stripe X repeated
    ceil(R/m) times; the others a stripe Y repeated floor(R/m) times. X and Y are interleaved
    evenly (Bresenham), so any w consecutive partitions hold at most ceil(w*|X|/R) <= full
    X-colours and at most ceil(w*|Y|/R) <= m - full Y-colours whenever ceil(R/m) * w <= R:
    each part is a run of its own stripe, shorter than the stripe's period, hence distinct.
    """
    share, full = divmod(ring_size, member_count)
    x_len = (share + 1) * full
    layout = []
    x_seen = y_seen = 0
    for p in range(ring_size):
        if (p + 1) * x_len // ring_size > p * x_len // ring_size:
            layout.append(x_seen % full)
            x_seen += 1
        else:
            layout.append(full + y_seen % (member_count - full))
            y_seen += 1
    return layout


def initial_claim(
    ring_size: int, members: Sequence[str], target_n_val: int = DEFAULT_TARGET_N_VAL
) -> Owners:
    """Ownership of a new ring: balanced, spaced `spacing_target(...)` apart, members in name order."""
    _check_ring_size(ring_size)
    _check_window(target_n_val, "target_n_val")
    names = _check_members(members, ring_size)
    return tuple(names[colour] for colour in _balanced_layout(ring_size, len(names)))


def _restripe(old: Sequence[str], names: list[str]) -> list[str]:
    """A fresh valid ring, rotated, reflected and relabelled to keep as many old owners as it can."""
    size, count = len(old), len(names)
    layout = _balanced_layout(size, count)
    index = {name: i for i, name in enumerate(names)}
    kept_owner = [(p, index[o]) for p, o in enumerate(old) if o in index]
    best: tuple[int, list[int]] | None = None
    for step in (1, -1):
        for shift in range(size):
            overlap: Counter[int] = Counter(
                layout[(shift + step * p) % size] * count + owner for p, owner in kept_owner
            )
            kept, label = _greedy_labels(overlap, count)
            if best is None or kept > best[0]:
                colours = [layout[(shift + step * p) % size] for p in range(size)]
                best = (kept, [label[c] for c in colours])
    assert best is not None
    return [names[i] for i in best[1]]


def _greedy_labels(overlap: Counter[int], count: int) -> tuple[int, list[int]]:
    """Match colours to members, largest overlap first; returns (partitions kept, member of colour)."""
    label = [-1] * count
    taken = [False] * count
    kept = 0
    for key, shared in sorted(overlap.items(), key=lambda item: (-item[1], item[0])):
        colour, member = divmod(key, count)
        if label[colour] < 0 and not taken[member]:
            label[colour], taken[member] = member, True
            kept += shared
    spare = iter(i for i in range(count) if not taken[i])
    return kept, [lab if lab >= 0 else next(spare) for lab in label]


# --- moving partitions one at a time ------------------------------------------------------


class _Shares:
    """Partition counts against the balanced share: who must or may give and take."""

    def __init__(self, slots: Sequence[str | None], names: list[str]) -> None:
        self.low, extra = divmod(len(slots), len(names))
        self.high = self.low + (1 if extra else 0)
        self.counts = dict.fromkeys(names, 0)
        for owner in slots:
            if owner is not None:
                self.counts[owner] += 1

    def must_take(self, node: str) -> bool:
        return self.counts[node] < self.low

    def may_take(self, node: str) -> bool:
        return self.counts[node] < self.high

    def must_give(self, node: str) -> bool:
        return self.counts[node] > self.high

    def may_give(self, node: str) -> bool:
        return self.counts[node] > self.low

    def move(self, giver: str | None, taker: str) -> None:
        if giver is not None:
            self.counts[giver] -= 1
        self.counts[taker] += 1


def _best_move(
    slots: list[str | None], shares: _Shares, w: int
) -> tuple[int, str] | None:
    """The next (partition, new owner) that brings the ring closer to balance, or None if balanced.

    Every move fills an unowned partition, drains a member above its share or feeds one below
    it, so the loop ends. Among those, prefer moves that keep the spacing rule, then the ones
    that settle two imbalances at once, then unowned partitions, then partitions whose owner
    holds another one too close, then the spot farthest from the taker's other partitions.
    """
    takers = [n for n in shares.counts if shares.may_take(n)]
    urgent = any(shares.must_take(n) for n in takers)
    sources = []
    for p, owner in enumerate(slots):
        if owner is None or shares.must_give(owner) or (urgent and shares.may_give(owner)):
            sources.append(p)
    if not sources:
        return None
    best: tuple[tuple[int, ...], int, str] | None = None
    for taker in takers:
        taker_dist = _nearest_distances(slots, taker)
        taker_urgent = shares.must_take(taker)
        for p in sources:
            owner = slots[p]
            if owner is None:
                settles = 1 + taker_urgent
            else:
                if not taker_urgent and not shares.must_give(owner):
                    continue
                settles = shares.must_give(owner) + taker_urgent
            crowded = owner is not None and not _fits(slots, p, owner, w, ignore=p)
            key = (
                taker_dist[p] < w,
                -settles,
                owner is not None,
                not crowded,
                -taker_dist[p],
            )
            if best is None or key < best[0]:
                best = (key, p, taker)
    if best is None:
        return None
    return best[1], best[2]


def _rebalance(old: Sequence[str], names: list[str], w: int) -> list[str]:
    member_set = set(names)
    slots: list[str | None] = [o if o in member_set else None for o in old]
    shares = _Shares(slots, names)
    while (move := _best_move(slots, shares, w)) is not None:
        p, taker = move
        shares.move(slots[p], taker)
        slots[p] = taker
    balanced = [s for s in slots if s is not None]
    assert len(balanced) == len(slots), "every move fills or drains; no partition stays unowned"
    return balanced


def _conflicted(slots: Sequence[str], w: int) -> list[int]:
    """Partitions with another partition of the same owner closer than `w`."""
    size = len(slots)
    return [p for p in range(size) if not _fits(slots, p, slots[p], w, ignore=p)]


def _repair_spacing(slots: list[str], old: Sequence[str], w: int) -> bool:
    """Swap owners of partition pairs until spacing holds; False if a conflict resists one swap."""
    size = len(slots)
    for _ in range(MAX_REPAIR_SWAPS_PER_PARTITION * size):
        conflicted = _conflicted(slots, w)
        if not conflicted:
            return True
        swap = _cheapest_swap(slots, old, conflicted, w)
        if swap is None:
            return False
        p, q = swap
        slots[p], slots[q] = slots[q], slots[p]
    return not _conflicted(slots, w)


def _cheapest_swap(
    slots: list[str], old: Sequence[str], conflicted: list[int], w: int
) -> tuple[int, int] | None:
    """The swap that clears a conflicted partition with the fewest added transfers."""
    size = len(slots)
    best: tuple[tuple[int, int, int], int, int] | None = None
    for p in conflicted:
        a = slots[p]
        for q in range(size):
            b = slots[q]
            if b == a or not _fits(slots, q, a, w, ignore=p) or not _fits(slots, p, b, w, q):
                continue
            before = (slots[p] != old[p]) + (slots[q] != old[q])
            after = (b != old[p]) + (a != old[q])
            key = (after - before, p, q)
            if best is None or key < best[0]:
                best = (key, p, q)
    return None if best is None else (best[1], best[2])


def _moved(old: Sequence[str], new: Sequence[str]) -> int:
    return sum(a != b for a, b in zip(old, new, strict=True))


def claim(
    owners: Sequence[str], members: Sequence[str], target_n_val: int = DEFAULT_TARGET_N_VAL
) -> Owners:
    """New ownership for `members`, moving as few partitions of `owners` as it can (module doc)."""
    _check_owners(owners)
    _check_window(target_n_val, "target_n_val")
    size = len(owners)
    names = _check_members(members, size)
    w = spacing_target(size, len(names), target_n_val)
    candidate = _rebalance(owners, names, w)
    if _repair_spacing(candidate, owners, w) and _moved(owners, candidate) == minimum_transfers(
        owners, names
    ):
        return tuple(candidate)
    fresh = _restripe(owners, names)
    if check_spacing(candidate, w) or _moved(owners, fresh) < _moved(owners, candidate):
        return tuple(fresh)
    return tuple(candidate)


# --- reporting ----------------------------------------------------------------------------


def minimum_transfers(owners: Sequence[str], members: Sequence[str]) -> int:
    """How many partitions any balanced claim for `members` must move (spacing ignored)."""
    _check_owners(owners)
    size = len(owners)
    names = _check_members(members, size)
    low, extra = divmod(size, len(names))
    counts = Counter(o for o in owners if o in set(names))
    kept = sum(min(c, low) for c in counts.values())
    kept += min(extra, sum(1 for c in counts.values() if c > low))
    return size - kept


def transfers(old: Sequence[str], new: Sequence[str]) -> list[tuple[int, str, str]]:
    """The ownership handoffs from `old` to `new`: (partition, from node, to node), by partition."""
    if len(old) != len(new):
        raise ClaimError(f"rings differ in size: {len(old)} and {len(new)} partitions")
    return [(p, a, b) for p, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]


def ownership(owners: Sequence[str]) -> dict[str, float]:
    """The fraction of the ring each node owns, by node name."""
    if not owners:
        raise ClaimError("an empty ring has no ownership")
    counts = Counter(owners)
    return {node: counts[node] / len(owners) for node in sorted(counts)}
