"""One simulated run from a seed, start to verdict; and sweeps over many seeds.

A run: build the world (a formed cluster plus, with membership faults, a spare node), create the
bucket types, let clients and faults loose until the workload is done, then quiesce — heal,
restart, resume, finish membership changes — and measure liveness, let handoff settle, read every
key with r=all/pr=all (read repair), and judge the history and the replicas.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sapwood.core import kvobject
from sapwood.core.cluster import ClusterNode
from sapwood.core.kvobject import KVObject
from sapwood.core.requests import CoverageRequest, CoverageResult, GetRequest, ListKeys, PutRequest
from sapwood.core.ring import BKey, Ring
from sapwood.sim import checkers
from sapwood.sim.checkers import Verdict
from sapwood.sim.faults import (
    ALL_FAULTS,
    CALM_NETWORK,
    DRIZZLE,
    Fault,
    FaultConfig,
    Nemesis,
    format_faults,
)
from sapwood.sim.workload import (
    BUCKET,
    LWW_TYPE,
    PROBE_BUCKET,
    SETS_TYPE,
    Workload,
    WorkloadConfig,
)
from sapwood.sim.world import World

LIVENESS_BOUND_MS = 20_000  # after the heal, every node must serve a request within this
WORKLOAD_LIMIT_MS = 30 * 60_000  # virtual time; clients time out, so this is never reached
SETTLE_LIMIT_MS = 300_000
SETUP_LIMIT_MS = 30_000
PROBE_RETRY_MS = 200
FINAL_READ_LIMIT_MS = 60_000
CLOCK_SKEW_MS = 500
CLOCK_DRIFT = 0.01
N_VAL = 3
# How long a group commit takes: most runs get a fast disk, some a slow one (a wider window
# between storing a write and making it durable, which is where crashes hurt).
DISK_SPEEDS_MS = ((1, 3), (1, 3), (2, 25))


@dataclass(frozen=True)
class RunOptions:
    nodes: int = 5
    faults: frozenset[Fault] = ALL_FAULTS
    ops: int = 5000
    ring_size: int = 16
    clients: int = 10
    workload: WorkloadConfig | None = None  # overrides ops and clients when given
    fault_config: FaultConfig | None = None  # the fault injector's pace and durations

    def workload_config(self) -> WorkloadConfig:
        if self.workload is not None:
            return self.workload
        return WorkloadConfig(ops=self.ops, clients=self.clients)

    def command(self, seed: int) -> str:
        """The one-line command that reproduces a run of these options."""
        parts = [f"sapwood sim run --seed {seed}", f"--nodes {self.nodes}",
                 f"--faults {format_faults(self.faults)}", f"--ops {self.ops}"]
        if self.ring_size != RunOptions.ring_size:
            parts.append(f"--ring-size {self.ring_size}")
        if self.clients != RunOptions.clients:
            parts.append(f"--clients {self.clients}")
        return " ".join(parts)


@dataclass
class RunReport:
    seed: int
    options: RunOptions
    digest: str = ""
    ops: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    fault_log: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    virtual_ms: int = 0
    real_s: float = 0.0
    workload_s: float = 0.0  # real seconds of the client phase alone
    events: int = 0
    error: str | None = None  # the traceback when the run itself blew up

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    @property
    def client_ops(self) -> int:
        return sum(sum(row.values()) for row in self.ops.values())

    def summary(self, verbose: bool = False) -> str:
        totals: dict[str, int] = {}
        for row in self.ops.values():
            for outcome, count in row.items():
                totals[outcome] = totals.get(outcome, 0) + count
        lines = [
            f"seed {self.seed}: {'PASS' if self.passed else 'FAIL'} — {self.client_ops} ops "
            f"({', '.join(f'{o} {n}' for o, n in totals.items())}) in {self.virtual_ms / 1000:.1f} s "
            f"virtual, {self.real_s:.2f} s real, {self.events} events",
            "ops by kind:",
        ]
        for kind, row in sorted(self.ops.items()):
            lines.append(f"  {kind:<8} " + "  ".join(f"{o} {n:>5}" for o, n in row.items()))
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        lines.append(f"faults injected: {faults}")
        if verbose:
            lines += [f"  {entry}" for entry in self.fault_log]
        lines.append("checkers:")
        for verdict in self.verdicts:
            lines.append(f"  {verdict.line()}")
            if not verdict.passed or verbose:
                lines += [f"      {d}" for d in verdict.details]
        if self.error:
            lines.append("the run raised:")
            lines += [f"  {line}" for line in self.error.rstrip().splitlines()]
        lines.append(f"digest: {self.digest}")
        if not self.passed:
            lines.append(f"reproduce: {self.options.command(self.seed)}")
        return "\n".join(lines)


def run_seed(seed: int, options: RunOptions | None = None) -> RunReport:
    """One run; a pure function of (seed, options) apart from `real_s`."""
    options = options or RunOptions()
    report = RunReport(seed, options)
    started = time.perf_counter()
    world: World | None = None
    try:
        world = _build_world(seed, options)
        _Run(world, options, report).execute()
    except Exception:
        report.error = traceback.format_exc()
    if world is not None:
        report.digest = world.digest()
        report.virtual_ms = world.now
        report.events = world.events_run
    report.real_s = time.perf_counter() - started
    return report


def node_names(options: RunOptions) -> tuple[list[str], list[str]]:
    """(initial members, spares that may join later)."""
    members = [f"n{i}" for i in range(1, options.nodes + 1)]
    spares = [f"n{options.nodes + 1}"] if Fault.MEMBERSHIP in options.faults else []
    return members, spares


def _build_world(seed: int, options: RunOptions) -> World:
    members, spares = node_names(options)
    clocks = Fault.CLOCK in options.faults
    weather = DRIZZLE if Fault.NETWORK in options.faults else CALM_NETWORK
    return World(seed, members + spares, ring_size=options.ring_size, network=weather,
                 skew_ms=CLOCK_SKEW_MS if clocks else 0, drift=CLOCK_DRIFT if clocks else 0.0,
                 members=members)


class _Run:
    def __init__(self, world: World, options: RunOptions, report: RunReport) -> None:
        self.world = world
        self.options = options
        self.report = report
        self.members, self.spares = node_names(options)
        self.rng = random.Random(world.rng.getrandbits(64))

    def execute(self) -> None:
        world = self.world
        world.flush_delay_ms = self.rng.choice(DISK_SPEEDS_MS)
        self._create_bucket_types()
        world.run_for(1_000)  # heartbeats: every node sees every other up
        world.sync_all()
        workload = Workload(world, self.options.workload_config(),
                            random.Random(world.rng.getrandbits(64)), self.members)
        nemesis = Nemesis(world, self.options.faults, random.Random(world.rng.getrandbits(64)),
                          self.members, list(self.spares),
                          config=self.options.fault_config or FaultConfig(),
                          base_weather=world.network.config)
        workload.start()
        nemesis.start()
        started = time.perf_counter()
        finished = world.run_until_halted(WORKLOAD_LIMIT_MS) and workload.finished
        self.report.workload_s = time.perf_counter() - started
        nemesis.quiesce()
        self.report.ops = workload.history.counts()
        self.report.faults = dict(nemesis.injected)
        self.report.fault_log = nemesis.log
        verdicts = self.report.verdicts
        if not finished:
            verdicts.append(Verdict("workload", False, "the clients did not finish"))
        verdicts.append(self._liveness())
        settled = self._settle(nemesis)
        if settled:
            verdicts.append(Verdict("settle", False, settled))
        keys = sorted(workload.keys_written | set(self._probe_keys()))
        unread = self._final_reads(keys)
        if unread:
            verdicts.append(Verdict("final-reads", False,
                                    f"{len(unread)} keys unreadable with r=all after settling",
                                    checkers._details(unread)))
        world.run_for(1_000)  # read repair lands
        self._judge(workload, keys)

    # --- set-up -------------------------------------------------------------------------------

    def _create_bucket_types(self) -> None:
        def create(core: ClusterNode) -> None:
            core.kv.create_type(SETS_TYPE, {"props": {"allow_mult": True, "n_val": N_VAL}})
            core.kv.activate_type(SETS_TYPE)
            core.kv.create_type(LWW_TYPE, {"props": {"allow_mult": False,
                                                     "last_write_wins": True, "n_val": N_VAL}})
            core.kv.activate_type(LWW_TYPE)

        self.world.operate(self.members[0], create)

        def everywhere() -> bool:
            for name in self.members:
                types = self.world.core(name).metadata.types
                if not all(types.get(t, {}).get("active") for t in (SETS_TYPE, LWW_TYPE)):
                    return False
            return True

        if not self.world.run_until(everywhere, SETUP_LIMIT_MS):
            raise RuntimeError("the bucket types did not reach every member")

    # --- the end of the run -------------------------------------------------------------------

    def _serving(self) -> list[str]:
        return [n for n in self.members if self.world.is_running(n)]

    def _probe_keys(self) -> list[BKey]:
        return [BKey(SETS_TYPE, PROBE_BUCKET, name) for name in self.members]

    def _liveness(self) -> Verdict:
        """From the heal, each member must answer a quorum write within the bound."""
        world = self.world
        healed_at = world.now
        latency: dict[str, int | None] = {name: None for name in self.members}

        def probe(name: str) -> None:
            def answer(result: Any) -> None:
                if isinstance(result, Exception):
                    world.schedule(PROBE_RETRY_MS, lambda: probe(name))
                else:
                    latency[name] = world.now - healed_at

            if world.now - healed_at <= LIVENESS_BOUND_MS:
                request = PutRequest(BKey(SETS_TYPE, PROBE_BUCKET, name), b"probe",
                                     timeout_ms=2_000)
                world.submit(name, request, answer)

        for name in self.members:
            probe(name)
        world.run_until(lambda: all(v is not None for v in latency.values()),
                        LIVENESS_BOUND_MS + 5_000)
        return checkers.check_liveness(latency, LIVENESS_BOUND_MS)

    def _settle(self, nemesis: Nemesis) -> str:
        """Run until membership changes are committed and no handoff waits or runs anywhere."""
        world = self.world
        waited = 0
        while waited < SETTLE_LIMIT_MS:
            world.run_for(500)
            waited += 500
            busy = self._busy(nemesis)
            if not busy:
                return ""
        return f"did not settle within {SETTLE_LIMIT_MS} ms: {busy}"

    def _busy(self, nemesis: Nemesis) -> str:
        change = nemesis.membership
        if change is not None and not change.done:
            return f"the {change.action} of {change.node} is not committed"
        owners = set()
        for name, node in sorted(self.world.nodes.items()):
            core = node.core
            if core is None:
                return f"{name} is down"
            if core.handoff_candidates() or core.handoff.active() or core.state.next_owners:
                return f"{name} has handoffs to do"
            if name in self.members:
                owners.add(core.state.owners)
        if len(owners) != 1:
            return "members disagree on the ring"
        return ""

    def _ring(self) -> Ring:
        return Ring(self.world.core(self.members[0]).state.owners)

    def _final_reads(self, keys: list[BKey]) -> list[str]:
        """Read every key with r=all, pr=all (which read-repairs), retrying failures."""
        world = self.world
        pending = set(keys)

        def read(key: BKey) -> None:
            def answer(result: Any) -> None:
                if isinstance(result, Exception):
                    world.schedule(PROBE_RETRY_MS, lambda: read(key))
                else:
                    pending.discard(key)

            serving = self._serving()
            world.submit(self.rng.choice(serving), GetRequest(key, r="all", pr="all",
                                                              timeout_ms=5_000), answer)

        for key in keys:
            read(key)
        world.run_until(lambda: not pending, FINAL_READ_LIMIT_MS)
        return [f"{k.type}/{k.bucket}/{k.key}" for k in sorted(pending)]

    # --- verdicts -----------------------------------------------------------------------------

    def _replicas(self, key: BKey) -> list[tuple[str, int, KVObject | None]]:
        out = []
        for entry in self._ring().primaries(key, N_VAL):
            core = self.world.core(entry.node)
            out.append((entry.node, entry.partition, core.kv.vnode(entry.partition).read(key)))
        return out

    def _judge(self, workload: Workload, keys: list[BKey]) -> None:
        values = workload.values
        disagreements = []
        set_finals: dict[str, set[int]] = {}
        lww_finals: dict[str, set[int]] = {}
        final_siblings: dict[str, list[checkers.Sibling]] = {}
        live_keys: set[str] = set()
        for key in keys:
            replicas = self._replicas(key)
            differing = _disagreement(replicas)
            if differing:
                disagreements.append(f"{key.type}/{key.key}: {differing}")
            if key.bucket != BUCKET:
                continue
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
        verdicts = self.report.verdicts
        verdicts.append(checkers.check_lost_writes(ops, set_finals))
        verdicts.append(checkers.check_phantoms(ops, finals, workload.observer, history_keys))
        verdicts.append(checkers.check_convergence(disagreements, len(keys)))
        verdicts.append(checkers.check_siblings(workload.observer, final_siblings))
        verdicts.append(self._final_listing(live_keys))
        verdicts.append(checkers.measure_lww_losses(ops, lww_finals))

    def _final_listing(self, live: set[str]) -> Verdict:
        result = self.world.call(self.rng.choice(self._serving()),
                                 CoverageRequest(ListKeys(SETS_TYPE, BUCKET), timeout_ms=5_000))
        if not isinstance(result, CoverageResult):
            return checkers.check_final_listing(None, 0.0, live)
        return checkers.check_final_listing(result.items, result.harvest, live)


def _disagreement(replicas: list[tuple[str, int, KVObject | None]]) -> str:
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


# --- sweeps -----------------------------------------------------------------------------------


@dataclass
class SweepReport:
    options: RunOptions
    runs: int = 0
    failures: list[RunReport] = field(default_factory=list)
    real_s: float = 0.0
    client_ops: int = 0
    stopped_by_budget: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures


def sweep(
    seeds: Iterable[int], options: RunOptions | None = None, *,
    budget_s: float | None = None, on_report: Callable[[RunReport], None] | None = None,
) -> SweepReport:
    """Run every seed (stopping early once `budget_s` of real time is spent)."""
    options = options or RunOptions()
    result = SweepReport(options)
    started = time.perf_counter()
    for seed in seeds:
        if budget_s is not None and time.perf_counter() - started >= budget_s:
            result.stopped_by_budget = True
            break
        report = run_seed(seed, options)
        result.runs += 1
        result.client_ops += report.client_ops
        if not report.passed:
            result.failures.append(report)
        if on_report is not None:
            on_report(report)
    result.real_s = time.perf_counter() - started
    return result


def with_faults(options: RunOptions, faults: Iterable[Fault]) -> RunOptions:
    return replace(options, faults=frozenset(faults))
