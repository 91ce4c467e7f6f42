"""What an ownership tuple says: which windows repeat an owner, who owns how much, and the
transfers between two rings. Claim builds rings; membership, status and tests read them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sapwood.core.errors import BadRequest


class ClaimError(BadRequest, ValueError):
    """A claim was asked for something impossible or malformed; nothing was computed."""


def _check_window(n: int, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ClaimError(f"{name} must be a positive integer, got {n!r}")



def check_spacing(owners: Sequence[str], n: int) -> list[int]:
    """Partitions starting a window of `n` consecutive partitions (wrapping) that repeats an owner.

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
