"""A run is a pure function of its seed: same seed, same digest; different seeds, different runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions, RunReport, run_seed

OPTIONS = RunOptions(ops=300, faults=ALL_FAULTS)
SRC = Path(__file__).resolve().parents[2] / "src"


def fingerprint(report: RunReport) -> tuple[object, ...]:
    return (report.digest, report.ops, report.faults, report.fault_log,
            [v.line() for v in report.verdicts], report.virtual_ms, report.events, report.error)


def test_the_same_seed_replays_exactly() -> None:
    first = run_seed(11, OPTIONS)
    second = run_seed(11, OPTIONS)
    assert first.client_ops == OPTIONS.ops
    assert fingerprint(first) == fingerprint(second)


def test_different_seeds_give_different_runs() -> None:
    digests = {run_seed(seed, OPTIONS).digest for seed in (1, 2, 3)}
    assert len(digests) == 3


def test_the_digest_does_not_depend_on_the_interpreter_hash_seed() -> None:
    """Set and dict orders of strings change with PYTHONHASHSEED; no choice may depend on them."""
    script = ("from sapwood.sim.runner import RunOptions, run_seed; "
              "print(run_seed(5, RunOptions(ops=200)).digest)")
    digests = set()
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(SRC)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True)
        digests.add(out.stdout.strip())
    digests.add(run_seed(5, RunOptions(ops=200)).digest)
    assert len(digests) == 1, digests
