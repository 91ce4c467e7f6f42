"""`sapwood sim run|sweep`: run the deterministic simulator from the command line.

Registered on the main CLI with `main.add_command(sim)`.
"""

from __future__ import annotations

import sys

import click

from sapwood.sim.faults import ALL_FAULTS, Fault, format_faults, parse_faults
from sapwood.sim.runner import (
    MAX_SWEEP_JOBS,
    SCENARIOS,
    RunOptions,
    RunReport,
    run_seed,
    sweep,
)


def _faults(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[Fault]:
    try:
        return parse_faults(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _options(nodes: int, faults: frozenset[Fault], ops: int, ring_size: int,
             clients: int, workload: str) -> RunOptions:
    if nodes < 2:
        raise click.BadParameter("a simulated cluster needs at least 2 nodes", param_hint="--nodes")
    if ops < 1:
        raise click.BadParameter("at least one operation", param_hint="--ops")
    if ring_size < nodes or ring_size & (ring_size - 1):
        raise click.BadParameter("a power of two, at least the number of nodes",
                                 param_hint="--ring-size")
    if clients < 1:
        raise click.BadParameter("at least one client", param_hint="--clients")
    return RunOptions(nodes=nodes, faults=faults, ops=ops, ring_size=ring_size, clients=clients,
                      scenario=workload)


_FAULT_HELP = ("Comma-separated fault kinds (" + ", ".join(f.value for f in Fault)
               + "), 'all' or 'none'.")


def _common(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--nodes", default=5, show_default=True, help="Cluster members."),
        click.option("--faults", default=format_faults(ALL_FAULTS), show_default=True,
                     callback=_faults, help=_FAULT_HELP),
        click.option("--ops", default=5000, show_default=True, help="Client operations per run."),
        click.option("--ring-size", default=16, show_default=True, help="Partitions."),
        click.option("--clients", default=10, show_default=True, help="Concurrent clients."),
        click.option("--workload", type=click.Choice(sorted(SCENARIOS)), default="kv",
                     show_default=True,
                     help="kv: sets on allow_mult/LWW buckets; datatypes: counters, sets, maps; "
                          "consistent: compare-and-set registers, checked for linearizability."),
    ]):
        func = option(func)
    return func


@click.group()
def sim() -> None:
    """Deterministic simulation: the production cores on virtual time, under faults."""


@sim.command()
@click.option("--seed", type=int, required=True, help="The run's seed; equal seeds replay exactly.")
@_common
@click.option("--verbose", "-v", is_flag=True, help="Show the fault log and every checker detail.")
def run(seed: int, nodes: int, faults: frozenset[Fault], ops: int, ring_size: int, clients: int,
        workload: str, verbose: bool) -> None:
    """Run one seed and print its summary, checker verdicts and trace digest."""
    report = run_seed(seed, _options(nodes, faults, ops, ring_size, clients, workload))
    click.echo(report.summary(verbose=verbose))
    if not report.passed:
        sys.exit(1)


@sim.command("sweep")
@click.option("--seeds", type=int, required=True, help="How many seeds to run.")
@click.option("--start", type=int, default=0, show_default=True, help="The first seed.")
@_common
@click.option("--budget", type=float, default=None,
              help="Stop starting new runs after this many seconds (CI's time box).")
@click.option("--jobs", type=click.IntRange(1, MAX_SWEEP_JOBS), default=1, show_default=True,
              help="Seeds run at once, each in its own process (e.g. one per core).")
def sweep_command(seeds: int, start: int, nodes: int, faults: frozenset[Fault], ops: int,
                  ring_size: int, clients: int, workload: str, budget: float | None,
                  jobs: int) -> None:
    """Run many seeds; print every failing seed with the command that reproduces it."""
    if seeds < 1:
        raise click.BadParameter("at least one seed", param_hint="--seeds")
    options = _options(nodes, faults, ops, ring_size, clients, workload)
    failed: list[RunReport] = []
    with click.progressbar(length=seeds, label=f"seeds {start}..{start + seeds - 1}",
                           show_pos=True, file=sys.stderr) as bar:

        def progress(report: RunReport) -> None:
            if not report.passed:
                failed.append(report)
            bar.update(1)

        result = sweep(range(start, start + seeds), options, budget_s=budget,
                       on_report=progress, jobs=jobs)
    rate = result.client_ops / result.real_s if result.real_s else 0.0
    click.echo(f"{result.runs} seeds in {result.real_s:.1f} s ({result.client_ops} client ops, "
               f"{rate:,.0f} ops/s); {len(failed)} failed"
               + (" (stopped by the time budget)" if result.stopped_by_budget else ""))
    for report in sorted(failed, key=lambda r: r.seed):
        reasons = "; ".join(v.line() for v in report.failures)
        if report.error:
            last = report.error.strip().splitlines()[-1]
            reasons = f"{reasons}; raised {last}" if reasons else f"raised {last}"
        click.echo(f"seed {report.seed}: {reasons}")
        click.echo(f"  {options.command(report.seed)}")
    if failed:
        sys.exit(1)
