"""`sapwood sim run|sweep`: summaries, digests, reproduce lines and argument errors."""

from __future__ import annotations

import re

from click.testing import CliRunner

from sapwood.cli.sim import sim
from sapwood.sim.faults import ALL_FAULTS, parse_faults
from sapwood.sim.runner import RunOptions


def test_run_prints_a_summary_with_verdicts_and_a_digest() -> None:
    result = CliRunner().invoke(sim, ["run", "--seed", "3", "--ops", "120", "--faults", "none"])
    assert result.exit_code == 0, result.output
    assert "seed 3: PASS" in result.output
    assert "PASS no-lost-writes" in result.output
    assert re.search(r"digest: [0-9a-f]{16}", result.output)


def test_the_same_seed_prints_the_same_digest() -> None:
    args = ["run", "--seed", "8", "--ops", "120", "--faults", "crash,partition"]
    first = CliRunner().invoke(sim, args).output
    second = CliRunner().invoke(sim, args).output
    digest = re.compile(r"digest: (\w+)")
    assert digest.search(first).group(1) == digest.search(second).group(1)  # type: ignore[union-attr]


def test_sweep_counts_its_seeds() -> None:
    result = CliRunner().invoke(sim, ["sweep", "--seeds", "2", "--start", "40", "--ops", "80",
                                      "--faults", "none"])
    assert result.exit_code == 0, result.output
    assert "2 seeds in" in result.output and "0 failed" in result.output


def test_bad_arguments_are_refused_clearly() -> None:
    result = CliRunner().invoke(sim, ["run", "--seed", "1", "--faults", "meteor"])
    assert result.exit_code == 2 and "unknown fault 'meteor'" in result.output
    result = CliRunner().invoke(sim, ["run", "--seed", "1", "--nodes", "1"])
    assert result.exit_code == 2 and "at least 2 nodes" in result.output


def test_the_reproduce_command_parses_back_to_the_same_options() -> None:
    options = RunOptions(nodes=4, faults=parse_faults("crash,power"), ops=900, clients=7)
    command = options.command(12)
    assert command == ("sapwood sim run --seed 12 --nodes 4 --faults crash,power --ops 900 "
                       "--clients 7")
    assert RunOptions().command(5).endswith("--faults all --ops 5000")
    assert parse_faults("all") == ALL_FAULTS
