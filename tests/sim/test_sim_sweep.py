"""CI's simulation runs: every regression seed, then a short sweep of fixed seeds, all faults on.

Both run with the reference fixes of regression_seeds.PENDING_CORE_FIXES applied until those core
bugs are fixed for real. A wider sweep runs from the command line: `sapwood sim sweep --seeds 1000`.
"""

from __future__ import annotations

import pytest

from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions, run_seed, sweep
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
