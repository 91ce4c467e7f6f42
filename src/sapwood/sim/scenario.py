"""What a simulated run exercises: a scenario is a workload plus the checkers that judge it.

The runner (`sapwood.sim.runner`) owns everything a scenario shares — building the world,
creating bucket types, faults, healing, the liveness probe, settling handoff — and hands the
rest to a scenario:

- `kv`: set-valued objects on allow_mult and last_write_wins buckets (`sapwood.sim.kv_scenario`);
- `datatypes`: counters, sets and maps (`sapwood.sim.datatype_scenario`);
- `consistent`: registers with compare-and-set on a consistent bucket type, judged by the
  linearizability checker (`sapwood.sim.consistent_scenario`).

A scenario is built by a factory `(world, config, rng, targets) -> Scenario`; `config` carries
the run's op count and client count, `targets` the nodes its clients may talk to.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sapwood.core.kvobject import KVObject
from sapwood.core.ring import BKey, Ring
from sapwood.sim.checkers import Verdict
from sapwood.sim.clients import ClientLoop
from sapwood.sim.world import World

N_VAL = 3


@dataclass(frozen=True)
class ScenarioConfig:
    ops: int = 5000
    clients: int = 10


@dataclass
class JudgeContext:
    """What a scenario may look at once the run is quiet (healed, settled, final reads done)."""

    world: World
    members: list[str]
    rng: random.Random

    def serving(self) -> list[str]:
        return [n for n in self.members if self.world.is_running(n)]

    def ring(self) -> Ring:
        return Ring(self.world.core(self.members[0]).state.owners)

    def replicas(self, key: BKey, n_val: int = N_VAL) -> list[tuple[str, int, KVObject | None]]:
        """(node, partition, object) on each primary of `key`, read straight from the vnodes."""
        out = []
        for entry in self.ring().primaries(key, n_val):
            core = self.world.core(entry.node)
            out.append((entry.node, entry.partition, core.kv.vnode(entry.partition).read(key)))
        return out


class Scenario(Protocol):
    @property
    def finished(self) -> bool:
        """Every client operation has completed (ok, fail or info)."""

    def start(self) -> None:
        """Let the clients loose; they stop by themselves after `config.ops` operations."""

    def counts(self) -> dict[str, dict[str, int]]:
        """Operations by kind and outcome, for the report."""

    def final_keys(self) -> list[BKey]:
        """Keys the runner reads with r=all, pr=all after settling (read repair), before judging."""

    def judge(self, ctx: JudgeContext) -> list[Verdict]:
        """The checkers' verdicts on the history and the quiet final state."""


ScenarioFactory = Callable[[World, Any, random.Random, list[str]], Scenario]  # Any: its config


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario's bucket types (name -> props, created and activated before the run) and
    factory."""

    name: str
    bucket_types: dict[str, dict[str, Any]]
    factory: ScenarioFactory


LoopT = TypeVar("LoopT", bound=ClientLoop[Any, Any])


class ClientLoopScenario(Generic[LoopT]):
    """The part every scenario shares: its clients are one ClientLoop, `workload`, and the
    scenario has started and finished when they have."""

    # Generic rather than narrowed in each subclass: mypyc compiles attributes whose type a
    # subclass redeclares only when the declarations are the same.
    workload: LoopT

    @property
    def finished(self) -> bool:
        return self.workload.finished

    def start(self) -> None:
        self.workload.start()
