"""Claim: which member node owns each partition of the consistent-hashing ring.

Ownership is a tuple of node names indexed by partition number. All functions are pure and
deterministic; `members` is a set (order never matters, duplicates are refused). For R
partitions, m members and target n, `initial_claim` and `claim` guarantee:

* Balance: every member owns floor(R/m) or ceil(R/m) partitions.
* Spacing: no node owns two of any w consecutive partitions (wrapping round the ring), where
  w = `spacing_target(R, m, n)` = min(n, R // ceil(R/m)), the widest window any balanced ring
  can keep distinct. So the full target n holds exactly when ceil(R/m) * n <= R, i.e. when
  m >= ceil(R / floor(R/n)): necessary, as a node owning ceil(R/m) partitions needs that many
  gaps of at least n round the ring; sufficient, as `balanced_layout` builds such a ring. For
  n a power of two no larger than R (the default 4 on R = 8..1024) that is just m >= n. Else:
  n = 3 needs m >= 4 on any power-of-two ring; n = 5 on R = 8 needs m = 8. Short of n, w is the
  best possible: m < n members get w = m if m divides R, else less (3 members: w = 2).
* Movement: a partition whose owner stays a member keeps it unless balance or spacing needs
  it elsewhere. `claim` steps towards balance one transfer at a time (one that crowds nobody
  if possible, else a short chain of neighbours shifting over, else a crowded one), clears
  leftover crowding with swaps (a tabu search), then swaps partitions back to old owners where
  spacing allows. Short of the lower bound (`minimum_transfers`), it also re-stripes (a fresh
  valid layout rotated, reflected and relabelled to keep most old owners) and returns the
  valid answer moving fewer; re-striping alone answers when the repair gives up, and when
  w = m, where every gap must be exactly w so only stripes are valid (n = 4: 4 members). To
  make passing through such a size cheaper, takers keep to few classes mod n (when n divides
  R): growing 3 -> 4 nodes then moves 7 of 16 partitions (no claim can do better than 6: a
  quarter is impossible), 29 of 64; 5 -> 4 moves 3..5 of 16 or 12..22 of 64 on grown rings.
  When one node joins a valid balanced ring and w stays the same, tests check that at most
  floor(R/(m+1)) + w partitions move; in seeded sweeps (R = 8..256, up to 16 nodes, n = 2..6)
  1100 of 1101 such joins moved exactly floor(R/(m+1)), the lower bound, one moved one more.
  Leaves cost more: where a departed node's neighbours already include every remaining member
  its partitions cannot be taken over in place (about 34% above the lower bound on average in
  the sweeps; the repair gave up, falling back to re-striping, in 3 of 486 leaves).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from itertools import groupby

from sapwood.core.claim_layout import balanced_layout, restripe
from sapwood.core.ownership import (
    ClaimError,
    _check_window,
)

MIN_RING_SIZE = 8
MAX_RING_SIZE = 1024
DEFAULT_RING_SIZE = 64
DEFAULT_TARGET_N_VAL = 4
# A step towards balance may shift at most this many partitions along a chain of neighbours.
MAX_CHAIN_MOVES = 6
# Spacing repair gives up (and re-stripes) after this many swaps per partition of the ring...
MAX_REPAIR_SWAPS_PER_PARTITION = 2
# ...or after this many swaps without a new low of crowded partitions (successful repairs in
# the test sweeps never went 50 swaps without one).
REPAIR_PATIENCE = 96
# Repair looks for swap partners this many spacing windows either side of a conflict, and
# failing that anywhere on the ring for this many of the crowded partitions.
REPAIR_REACH_WINDOWS = 4
REPAIR_FULL_SCANS = 4

Owners = tuple[str, ...]
Move = tuple[int, str]


def _check_ring_size(ring_size: int) -> None:
    if isinstance(ring_size, bool) or not isinstance(ring_size, int):
        raise ClaimError(f"ring_size must be an integer, got {ring_size!r}")
    if not MIN_RING_SIZE <= ring_size <= MAX_RING_SIZE or ring_size & (ring_size - 1):
        raise ClaimError(
            f"ring_size must be a power of two from {MIN_RING_SIZE} to {MAX_RING_SIZE}, "
            f"got {ring_size}"
        )


def _check_members(members: Sequence[str], ring_size: int) -> list[str]:
    """The members in name order: claim treats them as a set."""
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


# --- public API ---------------------------------------------------------------------------


def spacing_target(
    ring_size: int, member_count: int, target_n_val: int = DEFAULT_TARGET_N_VAL
) -> int:
    """The window claim keeps free of repeated owners: min(n, R // ceil(R/m)) (module doc)."""
    _check_window(target_n_val, "target_n_val")
    _check_window(member_count, "member_count")
    if ring_size < member_count:
        raise ClaimError(f"{member_count} members cannot share {ring_size} partitions")
    return min(target_n_val, ring_size // -(-ring_size // member_count))


def initial_claim(
    ring_size: int, members: Sequence[str], target_n_val: int = DEFAULT_TARGET_N_VAL
) -> Owners:
    """Ownership of a new ring: balanced and spaced `spacing_target(...)` apart (module doc).

    With fewer members than n (and n dividing R) it is the ring `claim` grows from one node,
    which keeps each member to few classes mod n: the n-th member's join then moves less.
    """
    _check_ring_size(ring_size)
    _check_window(target_n_val, "target_n_val")
    names = _check_members(members, ring_size)
    if 1 < len(names) < target_n_val and ring_size % target_n_val == 0:
        return claim((names[0],) * ring_size, names, target_n_val)
    return tuple(names[colour] for colour in balanced_layout(ring_size, len(names)))


def claim(
    owners: Sequence[str], members: Sequence[str], target_n_val: int = DEFAULT_TARGET_N_VAL
) -> Owners:
    """New ownership for `members`, moving as few partitions of `owners` as it can (module doc)."""
    _check_owners(owners)
    _check_window(target_n_val, "target_n_val")
    size = len(owners)
    names = _check_members(members, size)
    w = spacing_target(size, len(names), target_n_val)
    if w == len(names) > 1:
        # Every gap must be exactly w: the only valid rings are relabelled stripes.
        return tuple(restripe(owners, names))
    member_set = set(names)
    # n members on a ring n divides can only form n-stripes, so rings that grow or shrink
    # through n members move less if takers keep to few classes mod n all along.
    stripe = target_n_val if size % target_n_val == 0 else 0
    ring = _Crowding([o if o in member_set else None for o in owners], names, w, stripe)
    _rebalance(ring, names)
    incremental: list[str] | None = None
    if _repair_spacing(ring, owners):
        _reduce_transfers(ring, owners)
        incremental = ring.owned()
        if _moved(owners, incremental) == minimum_transfers(owners, names):
            return tuple(incremental)
    fresh = _Crowding(restripe(owners, names), names, w)
    _reduce_transfers(fresh, owners)
    restriped = fresh.owned()
    if incremental is None or _moved(owners, restriped) < _moved(owners, incremental):
        return tuple(restriped)
    return tuple(incremental)


def minimum_transfers(owners: Sequence[str], members: Sequence[str]) -> int:
    """How many partitions any balanced claim for `members` must move (spacing ignored)."""
    _check_owners(owners)
    size = len(owners)
    names = set(_check_members(members, size))
    low, extra = divmod(size, len(names))
    counts = Counter(o for o in owners if o in names)
    kept = sum(min(c, low) for c in counts.values())
    kept += min(extra, sum(1 for c in counts.values() if c > low))
    return size - kept


def _moved(old: Sequence[str], new: Sequence[str]) -> int:
    return sum(a != b for a, b in zip(old, new, strict=True))


# --- a ring being edited ------------------------------------------------------------------


class _Crowding:
    """Ownership being edited, with how many partitions of each node lie near each partition.

    "Near" means closer than the spacing window `w`: a node owning p is crowded there when
    `near(node, p)` is non-zero. Keeping the counts current makes every spacing test O(1).
    """

    def __init__(
        self, slots: Sequence[str | None], names: Sequence[str], w: int, stripe: int = 0
    ) -> None:
        self.size = len(slots)
        self.w = w
        self.stripe = stripe
        self.slots: list[str | None] = list(slots)
        self.offsets = sorted({d % self.size for d in range(1 - w, w)} - {0})
        self.rows = {name: [0] * self.size for name in names}
        for p, owner in enumerate(self.slots):
            if owner is not None:
                self._count(owner, p, 1)

    def _count(self, node: str, p: int, sign: int) -> None:
        row = self.rows[node]
        for offset in self.offsets:
            row[(p + offset) % self.size] += sign

    def assign(self, p: int, node: str | None) -> None:
        previous = self.slots[p]
        if previous is not None:
            self._count(previous, p, -1)
        if node is not None:
            self._count(node, p, 1)
        self.slots[p] = node

    def near(self, node: str, p: int, vacated: int = -1) -> int:
        """Partitions of `node` near `p`, not counting `vacated` (about to change hands)."""
        count = self.rows[node][p]
        if vacated >= 0 and self.slots[vacated] == node and self.close(p, vacated):
            count -= 1
        return count

    def close(self, p: int, q: int) -> bool:
        gap = (p - q) % self.size
        return 0 < min(gap, self.size - gap) < self.w

    def crowded(self) -> list[int]:
        return [p for p, o in enumerate(self.slots) if o is not None and self.rows[o][p]]

    def positions(self, node: str) -> list[int]:
        return [q for q, o in enumerate(self.slots) if o == node]

    def owned(self) -> list[str]:
        done = [o for o in self.slots if o is not None]
        assert len(done) == self.size, "every partition has an owner by now"
        return done


# --- a fresh ring -------------------------------------------------------------------------


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

    def allows(self, giver: str | None, taker: str) -> bool:
        """Whether moving a partition of `giver` (None: unowned) to `taker` nears balance."""
        if giver == taker or not self.may_take(taker):
            return False
        if giver is None or self.must_give(giver):
            return True
        return self.may_give(giver) and self.must_take(taker)


def _rebalance(ring: _Crowding, names: list[str]) -> None:
    """Step towards balance until every member holds its share and every partition an owner.

    Every step fills an unowned partition, drains a member above its share or feeds one below
    it, so the loop ends.
    """
    shares = _Shares(ring.slots, names)
    while (chains := _next_chains(ring, shares)) is not None:
        for chain in chains:
            (source, _), (last, taker) = chain[0], chain[-1]
            if len(chains) > 1 and (
                ring.near(taker, last) or not shares.allows(ring.slots[source], taker)
            ):
                continue  # an earlier move of the batch changed the picture
            shares.move(ring.slots[source], taker)
            for p, owner in chain:
                ring.assign(p, owner)


Sources = dict[int, tuple[tuple[int, ...], list[tuple[str, int]]]]


def _sources(ring: _Crowding, shares: _Shares) -> Sources:
    """Each partition a step may take, with its rank and (taker, imbalances settled) pairs.

    Ranks put unowned partitions first, then those whose owner holds another one too close,
    then the richest giver's (so givers drain evenly).
    """
    takers = [n for n in shares.counts if shares.may_take(n)]
    urgent = [t for t in takers if shares.must_take(t)]
    anyone = [(t, 1 + shares.must_take(t)) for t in takers]
    only_urgent = [(t, 1) for t in urgent]
    sources: Sources = {}
    for p, owner in enumerate(ring.slots):
        if owner is None:
            sources[p] = ((0, 0, 0), anyone)
        elif shares.must_give(owner) or (urgent and shares.may_give(owner)):
            rank = (1, ring.near(owner, p) == 0, -shares.counts[owner])
            sources[p] = (rank, anyone if shares.must_give(owner) else only_urgent)
    return sources


def _next_chains(ring: _Crowding, shares: _Shares) -> list[list[Move]] | None:
    """The moves of the next step towards balance; None once balanced.

    A step takes a source partition and gives a taker a partition it fits in. When no taker
    fits, the step is a chain: the owner of a neighbour moves into the (unowned) source and
    the taker gets that neighbour, or the chain goes on. Breadth first, so shorter chains win;
    then settling two imbalances at once, the source's rank, and the spot nearest one even
    stride (R / share) past the taker's partition before it. With no chain up to
    MAX_CHAIN_MOVES long, the best single move is made anyway and left to the repair.
    """
    sources = _sources(ring, shares)
    if not sources:
        return None
    parent = dict.fromkeys(sources, -1)
    frontier = sorted(sources)
    for depth in range(MAX_CHAIN_MOVES):
        chains = _best_chains(ring, sources, parent, frontier, shares.high)
        if chains is not None:
            return chains
        if depth == 0:
            # Only unowned partitions start chains: a member above its share had better hand
            # over another partition than have its neighbours shifted (fewer transfers).
            frontier = [p for p in frontier if ring.slots[p] is None]
        frontier = _extend(ring, parent, frontier)
        if not frontier:
            break
    _, _, _, p, taker = min(
        (ring.near(t, p), -settles, rank, p, t)
        for p, (rank, takers) in sources.items()
        for t, settles in takers
    )
    return [[(p, taker)]]


def _extend(ring: _Crowding, parent: dict[int, int], frontier: list[int]) -> list[int]:
    """Neighbours whose owner could move into a frontier partition once they vacate."""
    reached = []
    for q in frontier:
        for offset in ring.offsets:
            r = (q + offset) % ring.size
            mover = ring.slots[r]
            if r in parent or mover is None or mover == ring.slots[q]:
                continue
            if not ring.near(mover, q, vacated=r):
                parent[r] = q
                reached.append(r)
    return reached


def _best_chains(
    ring: _Crowding, sources: Sources, parent: dict[int, int], frontier: list[int], share: int
) -> list[list[Move]] | None:
    """The best chains ending in `frontier` with a taker that fits there, if any.

    At the sources themselves these are single moves, one per taker and source: moves of
    different takers barely interact, so they are made in one go (each checked again).
    Further out, the one best chain that still fits once made in full.
    """
    ranked = []
    for q in frontier:
        rank, takers = sources[_path(parent, q)[0]]
        for taker, settles in takers:
            if taker != ring.slots[q] and not ring.near(taker, q):
                ranked.append(((-settles, *rank), q, taker))
    ranked.sort()
    spots: dict[str, list[int]] = {}
    classes: dict[str, Counter[int]] = {}
    stripe = ring.stripe or ring.size
    for _, group in groupby(ranked, key=lambda r: r[0]):
        candidates = []
        for _, q, taker in group:
            if taker not in spots:
                spots[taker] = ring.positions(taker)
                classes[taker] = Counter(p % stripe for p in spots[taker])
            miss = _stride_miss(spots[taker], q, ring.size, share)
            candidates.append((-classes[taker][q % stripe], miss, q, taker))
        candidates.sort()
        if parent[candidates[0][2]] < 0:
            return _one_per_taker([(q, taker) for _, _, q, taker in candidates])
        for _, _, q, taker in candidates:
            path = _path(parent, q)
            chain = list(zip(path, [ring.slots[r] for r in path[1:]] + [taker], strict=True))
            if _chain_fits(ring, chain):
                return [[(p, owner) for p, owner in chain if owner is not None]]
    return None


def _path(parent: dict[int, int], q: int) -> list[int]:
    """The chain from its source out to `q`."""
    path = [q]
    while parent[path[-1]] >= 0:
        path.append(parent[path[-1]])
    return path[::-1]


def _stride_miss(positions: list[int], p: int, size: int, share: int) -> int:
    """How far `p` lies from one even stride (size/share) past the closest position before it."""
    if not positions:
        return 0
    before = (p - positions[bisect_left(positions, p) - 1]) % size
    return abs(before * share - size)


def _one_per_taker(moves: list[Move]) -> list[list[Move]]:
    served: set[str] = set()
    used: set[int] = set()
    batch = []
    for q, taker in moves:
        if taker not in served and q not in used:
            served.add(taker)
            used.add(q)
            batch.append([(q, taker)])
    return batch


def _chain_fits(ring: _Crowding, chain: list[tuple[int, str | None]]) -> bool:
    """Whether making all of `chain` at once leaves none of its new owners crowded."""
    before = [(p, ring.slots[p]) for p, _ in chain]
    for p, owner in chain:
        ring.assign(p, owner)
    fits = all(owner is None or not ring.near(owner, p) for p, owner in chain)
    for p, owner in reversed(before):
        ring.assign(p, owner)
    return fits


# --- spacing repair -----------------------------------------------------------------------

Swap = tuple[tuple[int, int, int, int], int, int]


def _repair_spacing(ring: _Crowding, old: Sequence[str]) -> bool:
    """Swap owners of partition pairs until no node is crowded; False if that does not converge.

    A tabu search over swaps (they keep the balance): each step takes the swap that removes
    the most crowding, then adds the fewest transfers, and forbids undoing it for a while so
    the search can cross plateaus.
    """
    tabu: dict[tuple[int, str], int] = {}
    fewest, fewest_at = ring.size + 1, 0
    for step in range(MAX_REPAIR_SWAPS_PER_PARTITION * ring.size):
        crowded = ring.crowded()
        if not crowded:
            return True
        if len(crowded) < fewest:
            fewest, fewest_at = len(crowded), step
        elif step - fewest_at > REPAIR_PATIENCE:
            return False
        swap = _best_swap(ring, old, crowded, tabu, step)
        if swap is None:
            return False
        _, p, q = swap
        a, b = ring.slots[p], ring.slots[q]
        assert a is not None and b is not None
        ring.assign(p, b)
        ring.assign(q, a)
        tabu[(p, a)] = tabu[(q, b)] = step + ring.w + len(crowded)
    return not ring.crowded()


def _best_swap(
    ring: _Crowding,
    old: Sequence[str],
    crowded: list[int],
    tabu: dict[tuple[int, str], int],
    step: int,
) -> Swap | None:
    """The best swap of a crowded partition with a nearby one, or with any if none helps."""
    reach = REPAIR_REACH_WINDOWS * ring.w
    nearby = sorted({d % ring.size for d in range(-reach, reach + 1)} - {0})
    best = _scan_swaps(ring, old, crowded, tabu, step, nearby)
    if best is None or best[0][0] >= 0:
        # A full scan costs a ring per partition: try it for a few, taking turns.
        start = step % len(crowded)
        few = (crowded[start:] + crowded[:start])[:REPAIR_FULL_SCANS]
        far = _scan_swaps(ring, old, few, tabu, step, range(1, ring.size))
        if best is None or (far is not None and far[0] < best[0]):
            best = far
    return best


def _scan_swaps(
    ring: _Crowding,
    old: Sequence[str],
    crowded: list[int],
    tabu: dict[tuple[int, str], int],
    step: int,
    offsets: Sequence[int],
) -> Swap | None:
    """The swap of a crowded p with p + offset that most lowers crowding, then transfers."""
    slots, size, rows = ring.slots, ring.size, ring.rows
    own = [rows[o][q] if o is not None else 0 for q, o in enumerate(slots)]
    close = {offset for offset in offsets if ring.close(offset, 0)}
    best: Swap | None = None
    for p in crowded:
        a = slots[p]
        assert a is not None
        row_a = rows[a]
        gains = []
        for offset in offsets:
            q = (p + offset) % size
            b = slots[q]
            if b is not None and b != a:
                # After the swap neither p nor q counts against the other's new owner.
                gains.append((rows[b][p] + row_a[q] - own[q] - 2 * (offset in close), q))
        gains.sort()
        for gain, q in gains:
            if best is not None and gain - own[p] > best[0][0]:
                break
            b = slots[q]
            assert b is not None
            if tabu.get((p, b), -1) > step or tabu.get((q, a), -1) > step:
                continue
            added = (b != old[p]) + (a != old[q]) - (a != old[p]) - (b != old[q])
            key = (gain - own[p], added, p, q)
            if best is None or key < best[0]:
                best = (key, p, q)
    return best


def _reduce_transfers(ring: _Crowding, old: Sequence[str]) -> None:
    """Give partitions back to their old owners by spacing-safe swaps while any swap saves one."""
    slots = ring.slots
    improved = True
    while improved:
        improved = False
        for p in range(ring.size):
            a, b = old[p], slots[p]
            if a == b or b is None or a not in ring.rows:
                continue
            for q in range(ring.size):
                if slots[q] != a or old[q] == a:
                    continue
                if not ring.near(a, p, vacated=q) and not ring.near(b, q, vacated=p):
                    ring.assign(p, a)
                    ring.assign(q, b)
                    improved = True
                    break
