"""Simulator speed: simulated client operations per real second, 5-node world, faults on.

    PYTHONPATH=src python bench/sim_speed.py [--ops 5000] [--seeds 3]
    python bench/sim_speed.py --compiled        # pure beside compiled (bench/build_compiled.py)

Prints, for the same seeds with no faults (the baseline) and with every fault on: client ops per
real second over the client phase (the figure to compare with the target of 20,000 on one core),
over the whole run (set-up, quiescence and checkers included), and per CPU second.

With --compiled, both builds run in child processes one after the other, the pure sources with
PYTHONPATH=src and the mypyc build with PYTHONPATH=build/compiled; their figures are printed side
by side, and every seed must give the same digest, verdicts and error in both builds (the run
stops with exit status 1 if not): the evidence that the compiled simulator runs the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from build_compiled import stale_build_problem

if TYPE_CHECKING:
    from sapwood.sim.runner import RunOptions

TARGET_OPS_PER_S = 20_000
ROOT = Path(__file__).resolve().parent.parent
BUILDS = {"pure": ROOT / "src", "compiled": ROOT / "build" / "compiled"}
FAULT_SETS = ("no faults", "all faults")


@dataclass
class SeedRun:
    """One seed's outcome (what must agree between builds) and its timings."""

    seed: int
    digest: str
    verdicts: list[str]
    error: str | None
    ops: int
    events: int
    workload_s: float
    real_s: float


@dataclass
class Measurement:
    runs: list[SeedRun]
    cpu_s: float
    built_from: str  # the file sapwood.sim.world was loaded from

    def totals(self) -> tuple[int, int, float, float]:
        """(ops, events, client-phase seconds, whole-run seconds) of the seeds that did not raise."""
        ok = [r for r in self.runs if r.error is None]
        return (sum(r.ops for r in ok), sum(r.events for r in ok),
                sum(r.workload_s for r in ok), sum(r.real_s for r in ok))

    def rate(self) -> float:
        ops, _, workload_s, _ = self.totals()
        if not ops:
            raise SystemExit("every seed raised")
        return ops / workload_s


def run_options(args: argparse.Namespace, fault_set: str) -> RunOptions:
    # Imported here: with --compiled this process only starts the builds, and may have no sapwood.
    from sapwood.sim.faults import ALL_FAULTS
    from sapwood.sim.runner import RunOptions

    faults = ALL_FAULTS if fault_set == "all faults" else frozenset()
    return RunOptions(nodes=args.nodes, ops=args.ops, faults=faults)


def measure(options: RunOptions, seeds: list[int]) -> Measurement:
    from sapwood.sim import world
    from sapwood.sim.runner import run_seed

    runs = []
    cpu_started = time.process_time()
    for seed in seeds:
        report = run_seed(seed, options)
        error = report.error.strip().splitlines()[-1] if report.error else None
        runs.append(SeedRun(seed, report.digest, [v.line() for v in report.verdicts], error,
                            report.client_ops, report.events, report.workload_s, report.real_s))
    return Measurement(runs, time.process_time() - cpu_started, str(world.__file__))


def print_line(label: str, m: Measurement) -> None:
    for run in m.runs:
        if run.error:  # a core bug the sweeps report; its time is not counted
            print(f"  (seed {run.seed} raised {run.error}; skipped)")
    ops, events, _, real_s = m.totals()
    print(f"{label:<20} {ops:>7} ops  client phase {m.rate():>8,.0f} ops/s  "
          f"whole run {ops / real_s:>8,.0f} ops/s  per CPU s {ops / m.cpu_s:>8,.0f}  "
          f"{events / real_s:>8,.0f} events/s")


def print_target(rate: float) -> None:
    print(f"target {TARGET_OPS_PER_S:,} ops/s with faults on: "
          f"{'met' if rate >= TARGET_OPS_PER_S else 'not met'} ({rate / TARGET_OPS_PER_S:.0%})")


def run_here(args: argparse.Namespace, seeds: list[int]) -> None:
    """Measure in this process, with whatever `sapwood` PYTHONPATH gives."""
    print(f"sapwood sim: {args.nodes} nodes, {args.ops} ops per run, seeds {seeds}")
    rate = 0.0
    for label in FAULT_SETS:
        m = measure(run_options(args, label), seeds)
        print_line(label, m)
        rate = m.rate()
    print_target(rate)


def child_main(args: argparse.Namespace, seeds: list[int]) -> None:
    """--child: measure every fault set and print the measurements as JSON on stdout."""
    out = {label: asdict(measure(run_options(args, label), seeds)) for label in FAULT_SETS}
    json.dump(out, sys.stdout)


def run_build(build: str, args: argparse.Namespace) -> dict[str, Measurement]:
    env = {**os.environ, "PYTHONPATH": str(BUILDS[build])}
    command = [sys.executable, __file__, "--child", "--ops", str(args.ops),
               "--seeds", str(args.seeds), "--nodes", str(args.nodes)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the {build} build failed:\n{result.stderr}")
    measurements = {}
    for label, raw in json.loads(result.stdout).items():
        runs = [SeedRun(**r) for r in raw.pop("runs")]
        measurements[label] = Measurement(runs, **raw)
    return measurements


def check_loaded(build: str, m: Measurement) -> None:
    compiled = not m.built_from.endswith(".py")
    if compiled != (build == "compiled"):
        raise SystemExit(f"the {build} build loaded sapwood.sim.world from {m.built_from}")


def differences(pure: Measurement, compiled: Measurement) -> list[str]:
    """Each seed whose digest, verdicts or error differ between the builds."""
    out = []
    for p, c in zip(pure.runs, compiled.runs, strict=True):
        for what in ("digest", "verdicts", "error"):
            if getattr(p, what) != getattr(c, what):
                out.append(f"seed {p.seed}: {what} pure {getattr(p, what)!r} "
                           f"compiled {getattr(c, what)!r}")
    return out


def run_both(args: argparse.Namespace, seeds: list[int]) -> None:
    problem = stale_build_problem()
    if problem:
        raise SystemExit(problem)
    print(f"sapwood sim: {args.nodes} nodes, {args.ops} ops per run, seeds {seeds}; "
          "pure, then compiled, each in a child process")
    results = {build: run_build(build, args) for build in BUILDS}
    mismatches = []
    for label in FAULT_SETS:
        pure, compiled = results["pure"][label], results["compiled"][label]
        check_loaded("pure", pure)
        check_loaded("compiled", compiled)
        print_line(f"{label}, pure", pure)
        print_line(f"{label}, compiled", compiled)
        print(f"{'':<20} compiled/pure {compiled.rate() / pure.rate():.2f}x")
        mismatches += [f"{label}: {d}" for d in differences(pure, compiled)]
    print_target(results["compiled"]["all faults"].rate())
    if mismatches:
        print("THE BUILDS DISAGREE (the compiled simulator does not run the same code):")
        print("\n".join(f"  {m}" for m in mismatches))
        raise SystemExit(1)
    runs = len(seeds) * len(FAULT_SETS)
    print(f"same digest, verdicts and errors in both builds for all {runs} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--compiled", action="store_true",
                        help="measure the pure and the compiled build and check they agree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    if args.child:
        child_main(args, seeds)
    elif args.compiled:
        run_both(args, seeds)
    else:
        run_here(args, seeds)


if __name__ == "__main__":
    main()
