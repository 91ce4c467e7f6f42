"""One simulated run from a seed, start to verdict; and sweeps over many seeds.

A run: build the world (a formed cluster plus, with membership faults, a spare node), create the
bucket types, let clients and faults loose until the workload is done, then quiesce — heal,
restart, resume, finish membership changes — and measure liveness, let handoff settle, read every
key with r=all/pr=all (read repair), and judge the history and the replicas.
"""

from __future__ import annotations

import gc
import importlib
import random
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sapwood.core.cluster import ClusterNode
from sapwood.core.requests import GetRequest, PutRequest
from sapwood.core.ring import BKey
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
from sapwood.sim.scenario import N_VAL, JudgeContext, Scenario, ScenarioConfig, ScenarioSpec
from sapwood.sim.workload import WorkloadConfig
from sapwood.sim.world import World

LIVENESS_BOUND_MS = 20_000  # after the heal, every node must serve a request within this
WORKLOAD_LIMIT_MS = 30 * 60_000  # virtual time; clients time out, so this is never reached
SETTLE_LIMIT_MS = 300_000
SETUP_LIMIT_MS = 30_000
PROBE_RETRY_MS = 200
FINAL_READ_LIMIT_MS = 60_000
CLOCK_SKEW_MS = 500
CLOCK_DRIFT = 0.01
MAX_SWEEP_JOBS = 64  # processes of one sweep
RUN_GC_YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections during a run
PROBE_TYPE = "sim_probe"  # the liveness probe's writes, apart from every scenario's keys
PROBE_BUCKET = "probe"
# Scenario name -> (module, attribute) of its ScenarioSpec; imported when a run asks for it.
SCENARIOS: dict[str, tuple[str, str]] = {
    "kv": ("sapwood.sim.kv_scenario", "KV"),
    "datatypes": ("sapwood.sim.datatype_scenario", "DATATYPES"),
    "consistent": ("sapwood.sim.consistent_scenario", "CONSISTENT"),
}
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
    scenario: str = "kv"  # a key of SCENARIOS
    workload: WorkloadConfig | None = None  # the kv scenario's full config (overrides ops, clients)
    fault_config: FaultConfig | None = None  # the fault injector's pace and durations

    def workload_config(self) -> ScenarioConfig | WorkloadConfig:
        if self.workload is not None and self.scenario == "kv":
            return self.workload
        return ScenarioConfig(ops=self.ops, clients=self.clients)

    def command(self, seed: int) -> str:
        """The one-line command that reproduces a run of these options."""
        parts = [f"sapwood sim run --seed {seed}", f"--nodes {self.nodes}"]
        if self.scenario != RunOptions.scenario:
            parts.append(f"--workload {self.scenario}")
        parts += [f"--faults {format_faults(self.faults)}", f"--ops {self.ops}"]
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
        with _run_gc():
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


@contextmanager
def _run_gc() -> Iterator[None]:
    """Collections during a run walk only the objects the run makes, and less often.

    Collections took ~4% of a run's CPU, half of it in older-generation passes that walked every
    module and import-time object again. What existed before the run is frozen for its duration
    and unfrozen after (so it is collected as before); the run's own cycles are collected as usual,
    but the young generation only every RUN_GC_YOUNG_THRESHOLD allocations: nearly everything a
    run allocates dies young by reference counting, and CPython's default of 700 still cost ~5%
    of a run in the mypyc-compiled build. The previous thresholds come back after the run.
    """
    freeze = gc.get_freeze_count() == 0  # a caller's own freeze is left alone
    thresholds = gc.get_threshold()
    if freeze:
        gc.freeze()
    gc.set_threshold(max(thresholds[0], RUN_GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()


def scenario_spec(name: str) -> ScenarioSpec:
    """The spec of scenario `name` (ValueError naming the known ones when there is none)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    module, attribute = SCENARIOS[name]
    spec = getattr(importlib.import_module(module), attribute)
    assert isinstance(spec, ScenarioSpec)
    return spec


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
        self.spec = scenario_spec(options.scenario)

    def execute(self) -> None:
        world = self.world
        world.flush_delay_ms = self.rng.choice(DISK_SPEEDS_MS)
        self._create_bucket_types()
        world.run_for(1_000)  # heartbeats: every node sees every other up
        world.sync_all()
        workload: Scenario = self.spec.factory(world, self.options.workload_config(),
                                               random.Random(world.rng.getrandbits(64)),
                                               self.members)
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
        self.report.ops = workload.counts()
        self.report.faults = dict(nemesis.injected)
        self.report.fault_log = nemesis.log
        verdicts = self.report.verdicts
        if not finished:
            verdicts.append(Verdict("workload", False, "the clients did not finish"))
        verdicts.append(self._liveness())
        settled = self._settle(nemesis)
        if settled:
            verdicts.append(Verdict("settle", False, settled))
        keys = sorted(set(workload.final_keys()) | set(self._probe_keys()))
        unread = self._final_reads(keys)
        if unread:
            verdicts.append(Verdict("final-reads", False,
                                    f"{len(unread)} keys unreadable with r=all after settling",
                                    checkers._details(unread)))
        world.run_for(1_000)  # read repair lands
        verdicts += workload.judge(JudgeContext(world, self.members, self.rng))

    # --- set-up -------------------------------------------------------------------------------

    def _create_bucket_types(self) -> None:
        types = {PROBE_TYPE: {"allow_mult": True, "n_val": N_VAL}, **self.spec.bucket_types}

        def create(core: ClusterNode) -> None:
            for name, props in types.items():
                core.kv.create_type(name, {"props": props})
                core.kv.activate_type(name)

        self.world.operate(self.members[0], create)

        def everywhere() -> bool:
            for name in self.members:
                known = self.world.core(name).metadata.types
                if not all(known.get(t, {}).get("active") for t in types):
                    return False
            return True

        if not self.world.run_until(everywhere, SETUP_LIMIT_MS):
            raise RuntimeError("the bucket types did not reach every member")

    # --- the end of the run -------------------------------------------------------------------

    def _serving(self) -> list[str]:
        return [n for n in self.members if self.world.is_running(n)]

    def _probe_keys(self) -> list[BKey]:
        return [BKey(PROBE_TYPE, PROBE_BUCKET, name) for name in self.members]

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
                request = PutRequest(BKey(PROBE_TYPE, PROBE_BUCKET, name), b"probe",
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
    jobs: int = 1,
) -> SweepReport:
    """Run every seed on `jobs` processes (starting no new run once `budget_s` of real time is
    spent). Each run is deterministic on its own, so the number of jobs changes no verdict."""
    if not 1 <= jobs <= MAX_SWEEP_JOBS:
        raise ValueError(f"jobs must be from 1 to {MAX_SWEEP_JOBS}")
    options = options or RunOptions()
    seeds = list(seeds)
    result = SweepReport(options)
    started = time.perf_counter()

    def out_of_time() -> bool:
        return budget_s is not None and time.perf_counter() - started >= budget_s

    for report in run_seeds(seeds, options, jobs, out_of_time):
        result.runs += 1
        result.client_ops += report.client_ops
        if not report.passed:
            result.failures.append(report)
        if on_report is not None:
            on_report(report)
    result.stopped_by_budget = result.runs < len(seeds)
    result.failures.sort(key=lambda r: r.seed)
    result.real_s = time.perf_counter() - started
    return result


def run_seeds(seeds: list[int], options: RunOptions, jobs: int, stop: Callable[[], bool]
              ) -> Iterator[RunReport]:
    """Each seed's report as its run ends (in seed order on one job); no run starts once
    `stop()` is true."""
    if jobs == 1:
        for seed in seeds:
            if stop():
                return
            yield run_seed(seed, options)
        return
    waiting = iter(seeds)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        running: set[Future[RunReport]] = set()

        def start_next() -> None:
            seed = None if stop() else next(waiting, None)
            if seed is not None:
                running.add(pool.submit(run_seed, seed, options))

        for _ in range(jobs):
            start_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.result().seed):
                running.discard(future)
                yield future.result()
                start_next()


def with_faults(options: RunOptions, faults: Iterable[Fault]) -> RunOptions:
    return replace(options, faults=frozenset(faults))
