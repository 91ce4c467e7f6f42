"""CI's simulation runs: every regression seed, then a short sweep of fixed seeds, all faults on.

Both run with the reference fixes of regression_seeds.PENDING_CORE_FIXES applied until those core
bugs are fixed for real. A wider sweep runs from the command line: `sapwood sim sweep --seeds 1000`.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from sapwood.sim import runner
from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions, RunReport, run_seed, sweep
from sim.regression_seeds import REGRESSIONS, Regression, apply_pending_fixes

SWEEP_SEEDS = range(10_000, 10_100)  # fixed, so CI is reproducible; sized for about 20-30 s
SWEEP_OPTIONS = RunOptions(ops=400, faults=ALL_FAULTS)


@pytest.fixture(autouse=True)
def _pending_core_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    apply_pending_fixes(monkeypatch)


@pytest.mark.parametrize("case", REGRESSIONS, ids=lambda c: f"seed{c.seed}-ops{c.options.ops}")
def test_regression_seed_passes(case: Regression) -> None:
    report = run_seed(case.seed, case.options)
    assert report.passed, f"{case.found}\n{report.summary()}"


def test_a_short_sweep_with_every_fault_passes() -> None:
    result = sweep(SWEEP_SEEDS, SWEEP_OPTIONS)
    failures = "\n\n".join(r.summary() for r in result.failures)
    assert result.runs == len(SWEEP_SEEDS)
    assert result.passed, failures


def _runs(seeds: range, options: RunOptions, jobs: int) -> dict[int, tuple[str, bool]]:
    seen: dict[int, tuple[str, bool]] = {}

    def note(report: RunReport) -> None:
        seen[report.seed] = (report.digest, report.passed)

    result = sweep(seeds, options, jobs=jobs, on_report=note)
    assert result.runs == len(seeds) and not result.stopped_by_budget
    return seen


def test_a_sweep_on_two_processes_gives_every_seed_the_same_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[int | None] = []
    submitted: list[int] = []

    class RecordingPool(ProcessPoolExecutor):
        def __init__(self, max_workers: int | None = None) -> None:
            pools.append(max_workers)
            super().__init__(max_workers=max_workers)

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(args[0])
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(runner, "ProcessPoolExecutor", RecordingPool)
    seeds, options = range(20, 26), RunOptions(ops=150, faults=ALL_FAULTS)
    on_two = _runs(seeds, options, jobs=2)
    assert pools == [2] and sorted(submitted) == list(seeds)  # every seed ran in a worker
    assert on_two == _runs(seeds, options, jobs=1)
    assert sorted(on_two) == list(seeds)
    assert len({digest for digest, _ in on_two.values()}) == len(seeds)


def test_a_sweep_out_of_budget_starts_no_more_runs() -> None:
    result = sweep(range(100), RunOptions(ops=100), budget_s=0.0, jobs=2)
    assert result.runs == 0 and result.stopped_by_budget
