"""Fresh, striped ring layouts for claim: where a balanced ring with the widest spacing puts each
member, and which member gets which stripe so that as few partitions as possible change hands."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

EXACT_LABELLING_MAX_MEMBERS = 6  # above this, labels are matched greedily, not exhaustively


def balanced_layout(ring_size: int, member_count: int) -> list[int]:
    """Colours 0..m-1 for every partition: balanced and spaced as widely as any ring can be.

    Colours below R % m ("full", one partition more each) form a stripe X repeated
    ceil(R/m) times; the others a stripe Y repeated floor(R/m) times. X and Y are interleaved
    evenly (Bresenham), so any w consecutive partitions hold at most ceil(w*|X|/R) <= full
    X-colours and at most ceil(w*|Y|/R) <= m - full Y-colours whenever ceil(R/m) * w <= R:
    each part is a run of its own stripe, no longer than the stripe's period, hence distinct.
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


def restripe(old: Sequence[str], names: list[str]) -> list[str]:
    """A fresh valid ring, rotated, reflected and relabelled to keep as many old owners as it can."""
    size, count = len(old), len(names)
    layout = balanced_layout(size, count)
    index = {name: i for i, name in enumerate(names)}
    kept_owner = [(p, index[o]) for p, o in enumerate(old) if o in index]
    period = next(d for d in range(1, size + 1) if layout[d:] + layout[:d] == layout)
    best: tuple[int, list[int], list[int]] | None = None
    for step in (1, -1):
        for shift in range(period):
            colours = [layout[(shift + step * p) % size] for p in range(size)]
            kept, label = _greedy_labels(_overlap(colours, kept_owner, count))
            if best is None or kept > best[0]:
                best = (kept, colours, label)
    assert best is not None
    _, colours, label = best
    if count <= EXACT_LABELLING_MAX_MEMBERS:
        label = _exact_labels(_overlap(colours, kept_owner, count))
    return [names[label[c]] for c in colours]


def _overlap(colours: list[int], kept_owner: list[tuple[int, int]], count: int) -> list[list[int]]:
    """overlap[colour][member]: partitions the colour would leave with their current owner."""
    matrix = [[0] * count for _ in range(count)]
    for p, owner in kept_owner:
        matrix[colours[p]][owner] += 1
    return matrix


def _greedy_labels(overlap: list[list[int]]) -> tuple[int, list[int]]:
    """Match colours to members, largest overlap first; returns (partitions kept, member of colour)."""
    count = len(overlap)
    pairs = sorted(
        (-shared, c, m) for c, row in enumerate(overlap) for m, shared in enumerate(row) if shared
    )
    label, taken, kept = [-1] * count, [False] * count, 0
    for minus_shared, colour, member in pairs:
        if label[colour] < 0 and not taken[member]:
            label[colour], taken[member] = member, True
            kept -= minus_shared
    spare = iter(i for i in range(count) if not taken[i])
    return kept, [lab if lab >= 0 else next(spare) for lab in label]


def _exact_labels(overlap: list[list[int]]) -> list[int]:
    """The member for each colour that keeps the most partitions, trying every permutation."""
    count = len(overlap)

    def kept(label: tuple[int, ...]) -> int:
        return sum(overlap[c][label[c]] for c in range(count))

    labels: list[tuple[int, ...]] = list(permutations(range(count)))
    best = max(labels, key=kept)
    return list(best)


# --- steps towards balance ----------------------------------------------------------------
