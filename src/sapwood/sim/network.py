"""The simulated network: latency, loss, duplication, reordering and partitions of any shape.

Every choice comes from the world's seeded random source, so a run replays exactly. A partition is
a set of cut directed links; every shape can be applied symmetrically or one way (messages flow
in one direction only across the cut, the "A hears B but B does not hear A" failure).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# The shapes `Network.partition` knows, by name, and the fewest nodes each needs to cut anything.
MIN_NODES = {"halves": 2, "random_split": 2, "isolate": 2, "bridge": 3, "majorities_ring": 4}
SHAPES = tuple(MIN_NODES)
LOST = -1  # `Network.delay`: the message is dropped
DUPLICATED = -2  # `Network.delay`: the message arrives twice, after the delays in `echo`


def shapes_for(count: int) -> tuple[str, ...]:
    """The partition shapes that make sense for `count` nodes."""
    return tuple(shape for shape, least in MIN_NODES.items() if count >= least)


@dataclass(slots=True)
class NetworkConfig:
    """Per-message behaviour. Latencies are uniform within their range, in virtual ms."""

    latency_ms: tuple[int, int] = (1, 5)
    slow_fraction: float = 0.0  # messages that take the long tail, overtaking nothing (reordering)
    slow_latency_ms: tuple[int, int] = (20, 200)
    loss: float = 0.0
    duplication: float = 0.0

    def __post_init__(self) -> None:
        for name in ("slow_fraction", "loss", "duplication"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value!r}")
        for name in ("latency_ms", "slow_latency_ms"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range (low <= high), got {(low, high)!r}")


@dataclass(slots=True)
class Network:
    rng: random.Random
    config: NetworkConfig = field(default_factory=NetworkConfig)
    # Directed links that drop everything: (from, to).
    cut: set[tuple[str, str]] = field(default_factory=set)
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    echo: tuple[int, int] = (0, 0)  # the two delays of the latest duplicated message

    def delays(self, sender: str, receiver: str) -> tuple[int, ...]:
        """Delivery delays for one message: () when lost, two entries when duplicated."""
        delay = self.delay(sender, receiver)
        if delay >= 0:
            return (delay,)
        return self.echo if delay == DUPLICATED else ()

    def delay(self, sender: str, receiver: str) -> int:
        """`delays` for the event loop, without a tuple per message: the one delivery's delay,
        LOST, or DUPLICATED with the two deliveries' delays in `echo`."""
        if sender == receiver:
            self.delivered += 1
            return 0
        config = self.config
        rand = self.rng.random
        loss = config.loss
        if (self.cut and (sender, receiver) in self.cut) or (loss and rand() < loss):
            self.dropped += 1
            return LOST
        # _latency, inlined: this runs for every message
        slow = config.slow_fraction
        if slow and rand() < slow:
            low, high = config.slow_latency_ms
        else:
            low, high = config.latency_ms
        first = low + int(rand() * (high - low + 1))
        duplication = config.duplication
        if duplication and rand() < duplication:
            self.duplicated += 1
            self.delivered += 2
            self.echo = (first, self._latency(config, rand))
            return DUPLICATED
        self.delivered += 1
        return first

    @staticmethod
    def _latency(config: NetworkConfig, rand: Callable[[], float]) -> int:
        if config.slow_fraction and rand() < config.slow_fraction:
            low, high = config.slow_latency_ms
        else:
            low, high = config.latency_ms
        return low + int(rand() * (high - low + 1))

    def can_reach(self, sender: str, receiver: str) -> bool:
        return (sender, receiver) not in self.cut

    # --- partitions ---------------------------------------------------------------------------

    def heal(self) -> None:
        self.cut.clear()

    def partition(self, shape: str, nodes: Sequence[str], one_way: bool = False) -> str:
        """Apply a partition of the named shape over `nodes`; returns a description of it."""
        if shape not in SHAPES:
            raise ValueError(f"unknown partition shape {shape!r}; expected one of {SHAPES}")
        if len(nodes) < MIN_NODES[shape]:
            raise ValueError(f"a {shape} partition needs at least {MIN_NODES[shape]} nodes")
        if shape == "halves":
            return self.halves(nodes, one_way)
        if shape == "random_split":
            return self.random_split(nodes, one_way)
        if shape == "isolate":
            return self.isolate(self.rng.choice(list(nodes)), nodes, one_way)
        if shape == "bridge":
            return self.bridge(nodes, one_way)
        return self.majorities_ring(nodes, one_way)

    def split(self, groups: Iterable[Iterable[str]], nodes: Iterable[str],
              one_way: bool = False) -> str:
        """Nodes talk only within their group. One way: the first group hears nobody outside it
        (its own messages still get out)."""
        group_of: dict[str, int] = {}
        listed = [list(g) for g in groups]
        for i, group in enumerate(listed):
            for n in group:
                group_of[n] = i
        all_nodes = list(nodes)
        for a in all_nodes:
            for b in all_nodes:
                apart = a != b and group_of.get(a, -1) != group_of.get(b, -2)
                if apart and (not one_way or group_of.get(b) == 0):
                    self.cut.add((a, b))
        arrow = " -/-> " if one_way else " | "
        return arrow.join("{" + ",".join(sorted(g)) + "}" for g in listed)

    def halves(self, nodes: Sequence[str], one_way: bool = False) -> str:
        shuffled = list(nodes)
        self.rng.shuffle(shuffled)
        half = len(shuffled) // 2
        return "halves " + self.split([shuffled[:half], shuffled[half:]], nodes, one_way)

    def random_split(self, nodes: Sequence[str], one_way: bool = False) -> str:
        shuffled = list(nodes)
        self.rng.shuffle(shuffled)
        cut_at = self.rng.randint(1, len(shuffled) - 1)
        return "split " + self.split([shuffled[:cut_at], shuffled[cut_at:]], nodes, one_way)

    def isolate(self, node: str, nodes: Iterable[str], one_way: bool = False) -> str:
        """One node alone. One way: it is either deaf (hears nobody) or mute (nobody hears it)."""
        others = [n for n in nodes if n != node]
        if one_way and self.rng.random() < 0.5:
            self.split([others, [node]], [node, *others], one_way=True)
            return f"isolate {node} (mute)"
        self.split([[node], others], [node, *others], one_way)
        return f"isolate {node}" + (" (deaf)" if one_way else "")

    def bridge(self, nodes: Sequence[str], one_way: bool = False) -> str:
        """Two halves that cannot talk, plus one node that talks to both."""
        shuffled = list(nodes)
        self.rng.shuffle(shuffled)
        bridge, rest = shuffled[0], shuffled[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        for a in left:
            for b in right:
                self.cut.add((a, b))
                if not one_way:
                    self.cut.add((b, a))
        arrow = "-/->" if one_way else "|"
        return f"bridge {bridge} over {{{','.join(left)}}} {arrow} {{{','.join(right)}}}"

    def majorities_ring(self, nodes: Sequence[str], one_way: bool = False) -> str:
        """Each node sees a majority (its ring neighbours), no two the same majority.

        One way: of each cut pair only the direction from the earlier to the later node in the
        ring's order is cut, so every node still hears a majority and more.
        """
        n = len(nodes)
        order = list(nodes)
        self.rng.shuffle(order)
        rank = {name: i for i, name in enumerate(order)}
        k = (n // 2 + 1) // 2  # neighbours on each side: 2k+1 nodes make a majority
        visible = {order[i]: {order[(i + d) % n] for d in range(-k, k + 1)} for i in range(n)}
        for a in order:
            for b in order:
                if b not in visible[a] and (not one_way or rank[a] < rank[b]):
                    self.cut.add((a, b))
        return "majorities ring " + ("-> " if one_way else "") + ",".join(order)
