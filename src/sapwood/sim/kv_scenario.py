"""The key-value scenario: set-valued objects on allow_mult and last_write_wins buckets.

Clients run `sapwood.sim.workload`; once the run is quiet the replicas of every written key are
merged and judged: no acknowledged add lost, no phantom, replicas converged, siblings bounded
by true concurrency, the final listing complete, and last_write_wins losses measured.
"""

from __future__ import annotations

import random

from sapwood.core import kvobject
from sapwood.core.kvobject import KVObject
from sapwood.core.requests import CoverageRequest, CoverageResult, ListKeys
from sapwood.core.ring import BKey
from sapwood.sim import checkers
from sapwood.sim.checkers import Verdict
from sapwood.sim.scenario import N_VAL, ClientLoopScenario, JudgeContext, ScenarioConfig, ScenarioSpec
from sapwood.sim.workload import BUCKET, LWW_TYPE, SETS_TYPE, Workload, WorkloadConfig
from sapwood.sim.world import World


class KVScenario(ClientLoopScenario[Workload]):
    def __init__(self, world: World, config: ScenarioConfig | WorkloadConfig,
                 rng: random.Random, targets: list[str]) -> None:
        workload_config = (config if isinstance(config, WorkloadConfig)
                           else WorkloadConfig(ops=config.ops, clients=config.clients))
        self.workload = Workload(world, workload_config, rng, targets)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.workload.history.counts()

    def final_keys(self) -> list[BKey]:
        return sorted(self.workload.keys_written)

    def judge(self, ctx: JudgeContext) -> list[Verdict]:
        workload = self.workload
        values = workload.values
        disagreements = []
        set_finals: dict[str, set[int]] = {}
        lww_finals: dict[str, set[int]] = {}
        final_siblings: dict[str, list[checkers.Sibling]] = {}
        live_keys: set[str] = set()
        keys = self.final_keys()
        for key in keys:
            replicas = ctx.replicas(key)
            differing = disagreement(replicas)
            if differing:
                disagreements.append(f"{key.type}/{key.key}: {differing}")
            allow_mult = key.type == SETS_TYPE
            merged: KVObject | None = None
            for _, _, obj in replicas:
                merged = kvobject.merge(merged, obj, allow_mult=allow_mult)
            siblings = values.siblings(merged)
            if key.type == SETS_TYPE:
                final_siblings[key.key] = siblings
                set_finals[key.key] = checkers.union(siblings)
                if siblings:
                    live_keys.add(key.key)
            else:
                lww_finals[key.key] = checkers.union(siblings)
        ops = workload.history.ops
        finals = {**set_finals, **{f"lww:{k}": v for k, v in lww_finals.items()}}
        history_keys = {f"lww:{k}": k for k in lww_finals}
        return [
            checkers.check_lost_writes(ops, set_finals),
            checkers.check_phantoms(ops, finals, workload.observer, history_keys),
            checkers.check_convergence(disagreements, len(keys)),
            checkers.check_siblings(workload.observer, final_siblings),
            _final_listing(ctx, live_keys),
            checkers.measure_lww_losses(ops, lww_finals),
        ]


def _final_listing(ctx: JudgeContext, live: set[str]) -> Verdict:
    result = ctx.world.call(ctx.rng.choice(ctx.serving()),
                            CoverageRequest(ListKeys(SETS_TYPE, BUCKET), timeout_ms=5_000))
    if not isinstance(result, CoverageResult):
        return checkers.check_final_listing(None, 0.0, live)
    return checkers.check_final_listing(result.items, result.harvest, live)


def disagreement(replicas: list[tuple[str, int, KVObject | None]]) -> str:
    """How the primaries of one key differ, or "" when they hold equal objects.

    A tombstone and no object are the same to a reader (reaping is local garbage collection, and
    replicas reap at slightly different times), so they compare equal.
    """
    def normal(obj: KVObject | None) -> KVObject | None:
        return None if obj is None or obj.is_tombstone else obj

    first = normal(replicas[0][2])
    for _, _, obj in replicas[1:]:
        other = normal(obj)
        if (first is None) != (other is None) or (
                first is not None and not kvobject.equivalent(first, other)):
            return "; ".join(f"{node}/p{p}: {_describe(o)}" for node, p, o in replicas)
    return ""


def _describe(obj: KVObject | None) -> str:
    if obj is None:
        return "absent"
    return f"{len(obj.siblings)} siblings, clock of {len(obj.clock)} actors" + (
        " (tombstone)" if obj.is_tombstone else "")


KV = ScenarioSpec(
    name="kv",
    bucket_types={
        SETS_TYPE: {"allow_mult": True, "n_val": N_VAL},
        LWW_TYPE: {"allow_mult": False, "last_write_wins": True, "n_val": N_VAL},
    },
    factory=KVScenario,
)
