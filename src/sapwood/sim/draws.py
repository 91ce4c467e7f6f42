"""Random draws that take exactly the values `random.Random`'s own methods would.

`Random.choice` and `Random.randint` are Python-level methods of the standard library, and the
simulator draws several per client operation: in the mypyc-compiled build
(bench/build_compiled.py) those interpreted calls were ~5% of a run. These functions make the same
`getrandbits` calls as `Random._randbelow_with_getrandbits`, which `choice`, `randrange` and
`randint` use on `random.Random` (CPython 3.11 to 3.13), so they draw the same values and leave
the generator in the same state: a run's digest is the same whichever is called.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def below(rng: random.Random, n: int) -> int:
    """`rng._randbelow(n)`: uniform in [0, n), for n > 0 (rejection sampling on n's bit length)."""
    bits = n.bit_length()
    drawn = rng.getrandbits(bits)
    while drawn >= n:
        drawn = rng.getrandbits(bits)
    return drawn


def choice(rng: random.Random, seq: Sequence[T]) -> T:
    """`rng.choice(seq)`."""
    if not seq:
        raise IndexError("Cannot choose from an empty sequence")
    return seq[below(rng, len(seq))]


def randint(rng: random.Random, low: int, high: int) -> int:
    """`rng.randint(low, high)`: uniform in [low, high]."""
    width = high + 1 - low
    if width <= 0:
        raise ValueError(f"empty range for randint({low}, {high})")
    return low + below(rng, width)
