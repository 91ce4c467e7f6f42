"""Simulator speed: simulated client operations per real second, 5-node world, faults on.

    PYTHONPATH=src python bench/sim_speed.py [--ops 5000] [--seeds 3]

Prints, for the same seeds with no faults (the baseline) and with every fault on: client ops per
real second over the client phase (the figure to compare with the target of 20,000 on one core),
over the whole run (set-up, quiescence and checkers included), and per CPU second.
"""

from __future__ import annotations

import argparse
import time

from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions, run_seed

TARGET_OPS_PER_S = 20_000


def measure(label: str, options: RunOptions, seeds: list[int]) -> float:
    ops = events = 0
    workload_s = real_s = 0.0
    cpu_started = time.process_time()
    for seed in seeds:
        report = run_seed(seed, options)
        if report.error:  # a core bug the sweeps report; its time is not counted
            print(f"  (seed {seed} raised {report.error.strip().splitlines()[-1]}; skipped)")
            continue
        ops += report.client_ops
        events += report.events
        workload_s += report.workload_s
        real_s += report.real_s
    cpu_s = time.process_time() - cpu_started
    if not ops:
        raise SystemExit("every seed raised")
    rate = ops / workload_s
    print(f"{label:<11} {ops:>7} ops  client phase {rate:>8,.0f} ops/s  "
          f"whole run {ops / real_s:>8,.0f} ops/s  per CPU s {ops / cpu_s:>8,.0f}  "
          f"{events / real_s:>8,.0f} events/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=5)
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    print(f"sapwood sim: {args.nodes} nodes, {args.ops} ops per run, seeds {seeds}")
    measure("no faults", RunOptions(nodes=args.nodes, ops=args.ops, faults=frozenset()), seeds)
    rate = measure("all faults", RunOptions(nodes=args.nodes, ops=args.ops, faults=ALL_FAULTS),
                   seeds)
    print(f"target {TARGET_OPS_PER_S:,} ops/s with faults on: "
          f"{'met' if rate >= TARGET_OPS_PER_S else 'not met'} ({rate / TARGET_OPS_PER_S:.0%})")


if __name__ == "__main__":
    main()
