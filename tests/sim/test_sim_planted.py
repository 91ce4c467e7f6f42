"""The checkers can fail: plant a bug in the production code and a short sweep must catch it.

Each test plants one bug (monkeypatching a production function in this process), sweeps seeds
until a run fails the checker that should notice, and then checks that the same seed passes
that checker without the bug — so it was the plant, not something else, that was caught.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sapwood.core import kvobject
from sapwood.core.effects import Effect, Send
from sapwood.core.handoff import HandoffBatch, HandoffSender, Kind, Transfer
from sapwood.core.kvobject import KVObject
from sapwood.core.quorum import PutQuorum, Verdict
from sapwood.sim.faults import Fault, FaultConfig
from sapwood.sim.runner import RunOptions, RunReport, run_seed
from sim.regression_seeds import apply_pending_fixes


def first_catch(monkeypatch: pytest.MonkeyPatch, plant: Any, options: RunOptions,
                seeds: range, checker: str) -> RunReport:
    """Sweep `seeds` with the bug planted; the first run whose `checker` fails."""
    with monkeypatch.context() as patched:
        plant(patched)
        for seed in seeds:
            report = run_seed(seed, options)
            if any(v.name == checker for v in report.failures):
                return report
    raise AssertionError(f"no seed in {seeds} caught the planted bug")


def passes_without_the_bug(report: RunReport, checker: str) -> bool:
    clean = run_seed(report.seed, report.options)
    return clean.error is None and all(v.passed for v in clean.verdicts if v.name == checker)


@pytest.fixture(autouse=True)
def _pending_core_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    apply_pending_fixes(monkeypatch)


def merge_drops_a_concurrent_sibling(patch: pytest.MonkeyPatch) -> None:
    real = kvobject.merge

    def lossy(a: KVObject | None, b: KVObject | None, *, allow_mult: bool = True) -> Any:
        merged = real(a, b, allow_mult=allow_mult)
        if a is not None and b is not None and merged is not None and len(merged.siblings) > 1:
            return KVObject(merged.siblings[:-1], merged.clock)
        return merged

    patch.setattr(kvobject, "merge", lossy)


def handoff_forgets_a_key(patch: pytest.MonkeyPatch) -> None:
    """A hinted batch goes out without its first object, which is still deleted after the ack."""
    real = HandoffSender._send_next

    def forgetful(self: HandoffSender, transfer: Transfer, now_ms: int) -> list[Effect]:
        effects = real(self, transfer, now_ms)
        if transfer.kind is not Kind.HINTED:
            return effects
        return [replace(e, msg=replace(e.msg, items=e.msg.items[1:]))
                if isinstance(e, Send) and isinstance(e.msg, HandoffBatch) else e
                for e in effects]

    patch.setattr(HandoffSender, "_send_next", forgetful)


def quorum_one_short(patch: pytest.MonkeyPatch) -> None:
    """Durable acks counted one short: a dw=1 write is acknowledged before anything is durable."""
    real = PutQuorum.verdict

    def short(self: PutQuorum) -> Verdict:
        if (len(self.acked) >= self.w and len(self.durable) >= self.dw - 1
                and len(self.primary_acked) >= self.pw):
            return Verdict.OK
        return real(self)

    patch.setattr(PutQuorum, "verdict", short)


def test_a_merge_that_drops_a_sibling_loses_acknowledged_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    options = RunOptions(ops=200, faults=frozenset())
    caught = first_catch(monkeypatch, merge_drops_a_concurrent_sibling, options, range(3),
                         "no-lost-writes")
    assert passes_without_the_bug(caught, "no-lost-writes")


def test_a_handoff_that_forgets_a_key_loses_writes_made_on_fallbacks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Long partitions of two halves: the smaller half writes on fallbacks only.
    faults = FaultConfig(duration_ms=(2_500, 6_000), shapes=("halves",))
    options = RunOptions(ops=600, faults=frozenset({Fault.PARTITION}), fault_config=faults)
    caught = first_catch(monkeypatch, handoff_forgets_a_key, options, range(20),
                         "no-lost-writes")
    assert passes_without_the_bug(caught, "no-lost-writes")


def test_a_durable_quorum_counted_one_short_loses_writes_in_a_power_loss(
        monkeypatch: pytest.MonkeyPatch) -> None:
    options = RunOptions(ops=1500, faults=frozenset({Fault.POWER}))
    caught = first_catch(monkeypatch, quorum_one_short, options, range(10), "no-lost-writes")
    assert passes_without_the_bug(caught, "no-lost-writes")
