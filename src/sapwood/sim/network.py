"""The simulated network: latency, loss, duplication, reordering and partitions of any shape.

Every choice comes from the world's seeded random source, so a run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class NetworkConfig:
    latency_ms: tuple[int, int] = (1, 5)  # uniform between, per message
    slow_fraction: float = 0.0  # messages that take a long tail (reordering)
    slow_latency_ms: tuple[int, int] = (20, 200)
    loss: float = 0.0
    duplication: float = 0.0


@dataclass
class Network:
    rng: random.Random
    config: NetworkConfig = field(default_factory=NetworkConfig)
    # Directed links that drop everything: (from, to).
    cut: set[tuple[str, str]] = field(default_factory=set)
    delivered: int = 0
    dropped: int = 0

    def delays(self, sender: str, receiver: str) -> list[int]:
        """Delivery delays for one message: [] when lost, two entries when duplicated."""
        lost = (sender, receiver) in self.cut or self.rng.random() < self.config.loss
        if sender != receiver and lost:
            self.dropped += 1
            return []
        copies = 2 if sender != receiver and self.rng.random() < self.config.duplication else 1
        out = []
        for _ in range(copies):
            if sender == receiver:
                out.append(0)
            elif self.rng.random() < self.config.slow_fraction:
                out.append(self.rng.randint(*self.config.slow_latency_ms))
            else:
                out.append(self.rng.randint(*self.config.latency_ms))
        self.delivered += len(out)
        return out

    # --- partitions ---------------------------------------------------------------------------

    def heal(self) -> None:
        self.cut.clear()

    def split(self, groups: Iterable[Iterable[str]], nodes: Iterable[str],
              one_way: bool = False) -> None:
        """Nodes talk only within their group (one_way: only the first group is deaf to others)."""
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            for n in group:
                group_of[n] = i
        all_nodes = list(nodes)
        for a in all_nodes:
            for b in all_nodes:
                apart = a != b and group_of.get(a, -1) != group_of.get(b, -2)
                if apart and (not one_way or group_of.get(b) == 0):
                    self.cut.add((a, b))

    def isolate(self, node: str, nodes: Iterable[str]) -> None:
        others = [n for n in nodes if n != node]
        self.split([[node], others], [node, *others])

    def bridge(self, nodes: list[str]) -> None:
        """Two halves that cannot talk, plus one node that talks to both."""
        shuffled = list(nodes)
        self.rng.shuffle(shuffled)
        bridge, rest = shuffled[0], shuffled[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        for a in left:
            for b in right:
                self.cut.add((a, b))
                self.cut.add((b, a))
        del bridge

    def majorities_ring(self, nodes: list[str]) -> None:
        """Each node sees a majority (its ring neighbours), no two the same majority."""
        n = len(nodes)
        order = list(nodes)
        self.rng.shuffle(order)
        k = (n // 2 + 1) // 2  # neighbours on each side: 2k+1 nodes make a majority
        visible = {order[i]: {order[(i + d) % n] for d in range(-k, k + 1)} for i in range(n)}
        for a in nodes:
            for b in nodes:
                if b not in visible[a]:
                    self.cut.add((a, b))

    def random_split(self, nodes: list[str]) -> None:
        shuffled = list(nodes)
        self.rng.shuffle(shuffled)
        cut_at = self.rng.randint(1, len(shuffled) - 1)
        self.split([shuffled[:cut_at], shuffled[cut_at:]], nodes)
