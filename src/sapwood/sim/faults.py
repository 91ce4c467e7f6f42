"""The fault injector ("nemesis"): partitions, crashes, power loss, pauses, bad network weather,
clock jumps, and membership changes under load — every choice from the run's seeded source.

Faults strike at random intervals while the workload runs; each undoes itself after a random
duration. `quiesce()` ends them all: heal the network, restart the crashed, resume the paused,
and carry any membership change through to its commit.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from sapwood.core.cluster import AdminRequest
from sapwood.core.errors import BadRequest, Conflict, NotFound
from sapwood.core.membership import Status
from sapwood.sim.network import SHAPES, NetworkConfig, shapes_for
from sapwood.sim.world import World


class Fault(StrEnum):
    PARTITION = "partition"  # any shape, symmetric or one way
    CRASH = "crash"  # one process dies, losing unsynced writes, and restarts later
    POWER = "power"  # several nodes lose power at once
    PAUSE = "pause"  # a process stops (SIGSTOP, GC) and resumes later
    NETWORK = "network"  # loss, duplication and slow-tail reordering, in spells
    CLOCK = "clock"  # skewed, drifting clocks; wall-clock steps seen from the next restart
    MEMBERSHIP = "membership"  # a node joins or leaves while clients run


ALL_FAULTS = frozenset(Fault)


def parse_faults(text: str) -> frozenset[Fault]:
    """`"partition,crash"`, `"all"` or `"none"` -> the set of fault kinds."""
    text = text.strip().lower()
    if text in ("all", ""):
        return ALL_FAULTS if text == "all" else frozenset()
    if text == "none":
        return frozenset()
    out = set()
    for part in text.split(","):
        try:
            out.add(Fault(part.strip()))
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise ValueError(f"unknown fault {part.strip()!r}; known: {known}, all, none") from None
    return frozenset(out)


def format_faults(faults: Iterable[Fault]) -> str:
    names = sorted(f.value for f in faults)
    if set(names) == {f.value for f in Fault}:
        return "all"
    return ",".join(names) or "none"


CALM_NETWORK = NetworkConfig(latency_ms=(1, 5))
# The background weather when network faults are on: a little of everything, all the time.
DRIZZLE = NetworkConfig(latency_ms=(1, 5), slow_fraction=0.02, slow_latency_ms=(20, 200),
                        loss=0.01, duplication=0.01)


@dataclass(frozen=True)
class FaultConfig:
    interval_ms: tuple[int, int] = (150, 1_200)  # between two faults
    duration_ms: tuple[int, int] = (100, 4_000)  # how long a fault lasts
    power_outage_ms: tuple[int, int] = (50, 1_500)
    max_down: int = 2  # nodes crashed or paused at once (power loss excepted)
    clock_jump_ms: int = 3_000
    one_way_share: float = 0.3  # partitions that cut one direction only
    shapes: tuple[str, ...] = SHAPES  # the partition shapes to choose from
    membership_after_ms: tuple[int, int] = (200, 3_000)
    admin_retry_ms: int = 1_000


@dataclass
class Nemesis:
    world: World
    kinds: frozenset[Fault]
    rng: random.Random
    members: list[str]  # the nodes clients may talk to; membership changes edit it in place
    spares: list[str] = field(default_factory=list)  # running nodes outside the cluster
    config: FaultConfig = field(default_factory=FaultConfig)
    injected: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    active: bool = False
    _partition_gen: int = 0
    _weather_gen: int = 0
    _down: set[str] = field(default_factory=set)  # crashed or paused by us
    membership: MembershipChange | None = None
    base_weather: NetworkConfig = field(default_factory=lambda: CALM_NETWORK)

    def start(self) -> None:
        self.active = True
        self._schedule_next()
        if Fault.MEMBERSHIP in self.kinds:
            self.world.schedule(self.rng.randint(*self.config.membership_after_ms),
                                self._start_membership)

    def stop(self) -> None:
        """No new faults; those in force stay until `quiesce()`."""
        self.active = False

    def _note(self, kind: str, description: str) -> None:
        self.injected[kind] += 1
        self.log.append(f"{self.world.now:>8} ms  {description}")
        self.world.record("fault", description)

    def _schedule_next(self) -> None:
        self.world.schedule(self.rng.randint(*self.config.interval_ms), self._strike)

    def _strike(self) -> None:
        if not self.active:
            return
        choices = sorted(k for k in self.kinds if k is not Fault.MEMBERSHIP)
        if choices:
            kind = self.rng.choice(choices)
            getattr(self, f"_{kind.value}")()
            self._schedule_next()

    def _duration(self) -> int:
        return self.rng.randint(*self.config.duration_ms)

    # --- the faults ---------------------------------------------------------------------------

    def _partition(self) -> None:
        nodes = sorted(self.world.nodes)
        self.world.network.heal()
        one_way = self.rng.random() < self.config.one_way_share
        shape = self.rng.choice([s for s in shapes_for(len(nodes)) if s in self.config.shapes])
        description = self.world.network.partition(shape, nodes, one_way)
        self._partition_gen += 1
        generation = self._partition_gen
        self._note(f"partition:{shape}{':one-way' if one_way else ''}", description)

        def heal() -> None:
            if self._partition_gen == generation and self.world.network.cut:
                self.world.network.heal()
                self.log.append(f"{self.world.now:>8} ms  heal")
                self.world.record("fault", "heal")

        self.world.schedule(self._duration(), heal)

    def _up_nodes(self) -> list[str]:
        return [n for n in sorted(self.world.nodes) if self.world.is_running(n)]

    def _crash(self) -> None:
        if len(self._down) >= self.config.max_down:
            return
        candidates = self._up_nodes()
        if not candidates:
            return
        name = self.rng.choice(candidates)
        self.world.crash(name)
        self._down.add(name)
        self._note("crash", f"crash {name}")
        self.world.schedule(self._duration(), lambda: self._restart(name))

    def _restart(self, name: str) -> None:
        self._down.discard(name)
        if not self.world.nodes[name].alive:
            self.world.restart(name)
            self.log.append(f"{self.world.now:>8} ms  restart {name}")

    def _power(self) -> None:
        candidates = [n for n in sorted(self.world.nodes) if self.world.nodes[n].alive]
        if not candidates:
            return
        count = self.rng.randint(max(1, len(candidates) // 2 + 1), len(candidates))
        victims = sorted(self.rng.sample(candidates, count))
        for name in victims:
            self.world.crash(name)
            self._down.add(name)
        self._note("power", f"power loss on {','.join(victims)}")
        for name in victims:
            delay = self.rng.randint(*self.config.power_outage_ms)
            self.world.schedule(delay, partial(self._restart, name))

    def _pause(self) -> None:
        if len(self._down) >= self.config.max_down:
            return
        candidates = self._up_nodes()
        if not candidates:
            return
        name = self.rng.choice(candidates)
        self.world.pause(name)
        self._down.add(name)
        self._note("pause", f"pause {name}")

        def resume() -> None:
            self._down.discard(name)
            self.world.resume(name)

        self.world.schedule(self._duration(), resume)

    def _network(self) -> None:
        weather = NetworkConfig(
            latency_ms=(1, self.rng.randint(3, 20)),
            slow_fraction=self.rng.choice((0.0, 0.05, 0.3)),
            slow_latency_ms=(20, self.rng.randint(50, 1_000)),
            loss=self.rng.choice((0.0, 0.05, 0.2, 0.5)),
            duplication=self.rng.choice((0.0, 0.05, 0.2)),
        )
        self._weather_gen += 1
        generation = self._weather_gen
        self.world.network.config = weather
        self._note("network", f"weather loss={weather.loss} dup={weather.duplication} "
                              f"slow={weather.slow_fraction} latency={weather.latency_ms}")

        def clear() -> None:
            if self._weather_gen == generation:
                self.world.network.config = self.base_weather

        self.world.schedule(self._duration(), clear)

    def _clock(self) -> None:
        name = self.rng.choice(sorted(self.world.nodes))
        jump = self.rng.randint(-self.config.clock_jump_ms, self.config.clock_jump_ms)
        self.world.shift_clock(name, jump)
        self._note("clock", f"wall clock of {name} steps {jump:+d} ms (its core sees it from "
                            "its next restart)")

    # --- membership ---------------------------------------------------------------------------

    def _start_membership(self) -> None:
        if not self.active or self.membership is not None:
            return
        join = bool(self.spares) and (len(self.members) <= 2 or self.rng.random() < 0.5)
        if join:
            node = self.spares.pop(0)
            self.membership = MembershipChange(self, "join", node)
        else:
            node = self.rng.choice(self.members)
            self.membership = MembershipChange(self, "leave", node)
        self._note(f"membership:{self.membership.action}",
                   f"{self.membership.action} {node} (under load)")
        self.membership.step()

    # --- the end ------------------------------------------------------------------------------

    def quiesce(self) -> None:
        """Stop every fault now in force: heal, calm the network, restart and resume everyone."""
        self.active = False
        self._partition_gen += 1
        self._weather_gen += 1
        self.world.network.heal()
        self.world.network.config = CALM_NETWORK
        for name in sorted(self.world.nodes):
            node = self.world.nodes[name]
            if not node.alive:
                self.world.restart(name)
            elif node.paused:
                self.world.resume(name)
        self._down.clear()
        self.world.record("fault", "quiesce")


@dataclass
class MembershipChange:
    """One join or leave, driven through `cluster join|leave` + `commit`, retried until it sticks."""

    nemesis: Nemesis
    action: str  # "join" | "leave"
    node: str
    stage: str = "stage"  # stage -> commit -> done
    attempts: int = 0

    @property
    def done(self) -> bool:
        return self.stage == "done"

    @property
    def world(self) -> World:
        return self.nemesis.world

    def _retry(self) -> None:
        self.world.schedule(self.nemesis.config.admin_retry_ms, self.step)

    def _some_member(self) -> str | None:
        choices = [n for n in self.nemesis.members if self.world.is_running(n)
                   and (self.action != "join" or n != self.node)]
        return self.nemesis.rng.choice(choices) if choices else None

    def step(self) -> None:
        if self.done:
            return
        self.attempts += 1
        member = self._some_member()
        if member is None:
            self._retry()
            return
        if self.stage == "stage" and self.action == "join":
            request = AdminRequest("join", (member, member))
            self.world.submit(self.node, request, self._staged)
        elif self.stage == "stage":
            self.world.submit(member, AdminRequest("leave", (self.node,)), self._staged)
        else:
            self.world.submit(member, AdminRequest("commit"), self._committed)

    def _staged(self, result: Any) -> None:
        # A tuple, not `A | B | C`: mypyc takes that assignment for a type alias and drops it.
        if isinstance(result, (BadRequest, Conflict, NotFound)) or not isinstance(result, Exception):
            # BadRequest/Conflict/NotFound: an earlier attempt got through (already joined,
            # already leaving or gone); the commit finds out whether anything is left to do.
            self.stage = "commit"
            self.step()
        else:
            self._retry()

    def _committed(self, result: Any) -> None:
        if not isinstance(result, Exception):
            self._finish()
        elif isinstance(result, BadRequest) and self._took_effect():
            self._finish()  # an earlier commit went through; its answer was lost
        elif isinstance(result, BadRequest):
            self.stage = "stage"  # the staged change was lost (claimant crash): stage again
            self._retry()
        else:
            self._retry()

    def _took_effect(self) -> bool:
        states = [n.core.state for n in self.world.nodes.values() if n.core is not None]
        newest = max(states, key=lambda s: (s.epoch, s.claimant))
        member = newest.member(self.node)
        if self.action == "join":
            return member is not None and member.status is Status.VALID
        return member is None or member.status in (Status.LEAVING, Status.REMOVED)

    def _finish(self) -> None:
        self.stage = "done"
        members = self.nemesis.members
        if self.action == "join" and self.node not in members:
            members.append(self.node)
        elif self.action == "leave" and self.node in members:
            members.remove(self.node)
        self.world.record("membership", self.action, self.node)
        self.nemesis.log.append(f"{self.world.now:>8} ms  {self.action} {self.node} committed "
                                f"after {self.attempts} attempts")

