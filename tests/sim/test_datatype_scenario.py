"""The data type scenario: it passes under every fault, replays exactly, and each checker fails
on a history or final state that breaks its rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sapwood.core.crdt import Counter, CounterOp, FieldKey, ORSet, SetOp
from sapwood.core.crdt import counter as crdt_counter
from sapwood.core.crdt import map as crdt_map
from sapwood.core.kvobject import KVObject, Metadata, apply_write
from sapwood.sim import datatype_checkers as dc
from sapwood.sim.datatype_checkers import DtKind, DtOp, Finals
from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.history import Outcome
from sapwood.sim.runner import RunOptions, run_seed

OPTIONS = RunOptions(scenario="datatypes", ops=2000, faults=ALL_FAULTS)
# Seeds the datatypes sweep once failed on (none yet).
DATATYPE_REGRESSION_SEEDS: list[int] = []
NO_DUPS: frozenset[int] = frozenset()
SRC = Path(__file__).resolve().parents[2] / "src"


def op(op_id: int, kind: DtKind, key: str, outcome: Outcome = Outcome.OK, **carried: object
       ) -> DtOp:
    record = DtOp(op_id, client=0, kind=kind, key=key, invoke_ms=0, outcome=outcome, wrote=True,
                  complete_ms=None if outcome is Outcome.INFO else 1, **carried)  # type: ignore[arg-type]
    return record


def names(verdicts: list[dc.Verdict]) -> dict[str, bool]:
    return {v.name: v.passed for v in verdicts}


# --- whole runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, *DATATYPE_REGRESSION_SEEDS])
def test_the_scenario_passes_under_every_fault(seed: int) -> None:
    report = run_seed(seed, OPTIONS)
    assert report.passed, report.summary()
    assert report.client_ops == OPTIONS.ops
    checked = {v.name for v in report.verdicts}
    assert {"counter-value", "set-adds", "dt-removes", "map-fields", "dt-phantoms", "dt-convergence",
            "dt-storage", "dt-errors"} <= checked
    kinds = set(report.ops)
    assert {k.value for k in DtKind} <= kinds


def test_the_same_seed_replays_exactly() -> None:
    options = RunOptions(scenario="datatypes", ops=150, faults=ALL_FAULTS)
    first, second = run_seed(7, options), run_seed(7, options)
    assert first.digest == second.digest
    assert [v.line() for v in first.verdicts] == [v.line() for v in second.verdicts]
    assert run_seed(8, options).digest != first.digest


def test_the_digest_does_not_depend_on_the_interpreter_hash_seed() -> None:
    """Elements and fields are strings: no choice may follow a set's or dict's order."""
    script = ("from sapwood.sim.runner import RunOptions, run_seed; "
              "print(run_seed(5, RunOptions(scenario='datatypes', ops=150)).digest)")
    digests = set()
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(SRC)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_a_planted_counter_merge_bug_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merging by adding differing totals (instead of taking maxima) invents increments."""
    def adding(a: dict[bytes, int], b: dict[bytes, int]) -> dict[bytes, int]:
        return {k: a.get(k, 0) + b.get(k, 0) if a.get(k) != b.get(k) else a[k]
                for k in a.keys() | b.keys()}

    monkeypatch.setattr(crdt_counter, "_max_merge", adding)
    report = run_seed(2, OPTIONS)
    assert "counter-value" in {v.name for v in report.failures}, report.summary()


def test_a_planted_context_blind_field_remove_fails_the_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A field remove that drops the whole field also drops the adds it never observed."""
    def drop_all(self: crdt_map.MapStore, key: FieldKey, ctx: object) -> None:
        if self.fields.pop(key, None) is not None:
            crdt_map.touch(self._segments, key, False)

    monkeypatch.setattr(crdt_map.MapStore, "_discard_field", drop_all)
    report = run_seed(2, OPTIONS)
    assert "map-fields" in {v.name for v in report.failures}, report.summary()


# --- counters ----------------------------------------------------------------------------------


def test_a_counter_must_equal_the_acknowledged_sum_without_info_ops() -> None:
    ops = [op(0, DtKind.INCREMENT, "c0", amount=5), op(1, DtKind.INCREMENT, "c0", amount=-2)]
    assert dc.check_counters(ops, Finals(counters={"c0": 3}), NO_DUPS).passed
    lost = dc.check_counters(ops, Finals(counters={"c0": 5}), NO_DUPS)
    assert not lost.passed
    assert "exactly 3" in lost.details[0]
    assert not dc.check_counters(ops, Finals(counters={}), NO_DUPS).passed  # all lost


def test_info_increments_widen_the_range_by_their_signed_amounts() -> None:
    ops = [op(0, DtKind.INCREMENT, "c0", amount=10),
           op(1, DtKind.INCREMENT, "c0", Outcome.INFO, amount=4),
           op(2, DtKind.INCREMENT, "c0", Outcome.INFO, amount=-3),
           op(3, DtKind.INCREMENT, "c0", Outcome.FAIL, amount=100)]
    assert dc.counter_range(ops, NO_DUPS) == (7, 14, 3)
    for value in (7, 10, 14):
        assert dc.check_counters(ops, Finals(counters={"c0": value}), NO_DUPS).passed
    for value in (6, 15, 110):
        assert not dc.check_counters(ops, Finals(counters={"c0": value}), NO_DUPS).passed


def test_a_duplicated_update_may_count_twice() -> None:
    ops = [op(0, DtKind.INCREMENT, "c0", amount=5)]
    assert not dc.check_counters(ops, Finals(counters={"c0": 10}), NO_DUPS).passed
    assert dc.check_counters(ops, Finals(counters={"c0": 10}), frozenset({0})).passed
    assert not dc.check_counters(ops, Finals(counters={"c0": 0}), frozenset({0})).passed


# --- sets --------------------------------------------------------------------------------------


def test_a_lost_acknowledged_add_fails_unless_an_observing_remove_took_it() -> None:
    adds = [op(0, DtKind.SET_ADD, "s0", element="e0"), op(1, DtKind.SET_ADD, "s0", element="e1")]
    assert dc.check_sets(adds, Finals(sets={"s0": {"e0", "e1"}})).passed
    lost = dc.check_sets(adds, Finals(sets={"s0": {"e0"}}))
    assert not lost.passed
    assert "'e1'" in lost.details[0]
    removed = [*adds, op(2, DtKind.SET_REMOVE, "s0", Outcome.INFO, removed=frozenset({"e1"}))]
    assert dc.check_sets(removed, Finals(sets={"s0": {"e0"}})).passed
    failed = [*adds, op(2, DtKind.SET_REMOVE, "s0", Outcome.FAIL, removed=frozenset({"e1"}))]
    assert not dc.check_sets(failed, Finals(sets={"s0": {"e0"}})).passed


def test_a_phantom_element_or_a_failed_add_in_a_set_fails() -> None:
    adds = [op(0, DtKind.SET_ADD, "s0", element="e0"),
            op(1, DtKind.SET_ADD, "s0", Outcome.FAIL, element="e1")]
    assert dc.check_phantoms(adds, Finals(sets={"s0": {"e0"}}), []).passed
    assert not dc.check_phantoms(adds, Finals(sets={"s0": {"e0", "e9"}}), []).passed
    assert not dc.check_phantoms(adds, Finals(sets={"s0": {"e1"}}), []).passed
    assert not dc.check_phantoms(adds, Finals(), ["op 5 fetch saw e9"]).passed


def test_an_element_an_acknowledged_remove_observed_must_be_gone() -> None:
    ops = [op(0, DtKind.SET_ADD, "s0", element="e0"),
           op(1, DtKind.SET_REMOVE, "s0", removed=frozenset({"e0"})),
           op(2, DtKind.MAP_UPDATE, "m0", element="e2"),
           op(3, DtKind.MAP_REMOVE, "m0", field=dc.SET_FIELD, observed=frozenset({"e2"}))]
    assert dc.check_removes(ops, Finals(sets={"s0": set()}), NO_DUPS).passed
    assert not dc.check_removes(ops, Finals(sets={"s0": {"e0"}}), NO_DUPS).passed
    back = Finals(maps={"m0": {dc.SET_FIELD: ["e2"]}})
    assert not dc.check_removes(ops, back, NO_DUPS).passed
    assert dc.check_removes(ops, back, frozenset({2})).passed  # the add was applied twice


# --- maps --------------------------------------------------------------------------------------


def test_map_set_field_adds_survive_removes_that_did_not_observe_them() -> None:
    ops = [op(0, DtKind.MAP_UPDATE, "m0", element="e0"),
           op(1, DtKind.MAP_REMOVE, "m0", field=dc.SET_FIELD, observed=frozenset({"e0"})),
           op(2, DtKind.MAP_UPDATE, "m0", element="e2")]
    assert dc.check_maps(ops, Finals(maps={"m0": {dc.SET_FIELD: ["e2"]}}), NO_DUPS).passed
    lost = dc.check_maps(ops, Finals(maps={"m0": {}}), NO_DUPS)
    assert not lost.passed
    assert "'e2'" in lost.details[0]


def test_map_counter_field_is_bounded_unless_a_remove_reset_it() -> None:
    ops = [op(0, DtKind.MAP_UPDATE, "m0", amount=3), op(1, DtKind.MAP_UPDATE, "m0", amount=4)]
    assert dc.check_maps(ops, Finals(maps={"m0": {dc.COUNTER_FIELD: 7}}), NO_DUPS).passed
    assert not dc.check_maps(ops, Finals(maps={"m0": {dc.COUNTER_FIELD: 3}}), NO_DUPS).passed
    reset = [*ops, op(2, DtKind.MAP_REMOVE, "m0", Outcome.INFO, field=dc.COUNTER_FIELD)]
    assert dc.check_maps(reset, Finals(maps={"m0": {dc.COUNTER_FIELD: 3}}), NO_DUPS).passed


def test_a_map_register_nobody_wrote_is_a_phantom() -> None:
    ops = [op(0, DtKind.MAP_UPDATE, "m0", register="r0")]
    assert dc.check_phantoms(ops, Finals(maps={"m0": {dc.REGISTER_FIELD: "r0"}}), []).passed
    assert not dc.check_phantoms(ops, Finals(maps={"m0": {dc.REGISTER_FIELD: "r7"}}), []).passed
    assert not dc.check_phantoms(ops, Finals(maps={"m0": {"x_flag": True}}), []).passed


# --- replicas ----------------------------------------------------------------------------------


def stored(*states: Counter | ORSet) -> KVObject:
    obj: KVObject | None = None
    for i, state in enumerate(states):
        obj = apply_write(obj, {}, state.encode(), Metadata(), bytes([i + 1]) * 8, i,
                          allow_mult=True)
    assert obj is not None
    return obj


def test_replica_states_compare_decoded_and_divergence_shows() -> None:
    a = ORSet.new().update(SetOp(adds=(b"x",)), b"A" * 8, 0)
    b = ORSet.new().update(SetOp(adds=(b"y",)), b"B" * 8, 0)
    joined_ab, problems = dc.replica_state(stored(a, b), "set")
    joined_ba, _ = dc.replica_state(stored(b, a), "set")
    assert not problems
    assert dc.state_fingerprint(joined_ab) == dc.state_fingerprint(joined_ba)
    alone, _ = dc.replica_state(stored(a), "set")
    assert dc.state_fingerprint(alone) != dc.state_fingerprint(joined_ab)
    assert not dc.check_convergence(["s0: differs"], 1).passed
    assert dc.check_convergence([], 1).passed


def test_a_sibling_of_another_type_or_undecodable_is_a_storage_failure() -> None:
    counter = Counter.new().update(CounterOp(2), b"A" * 8, 0)
    _, problems = dc.replica_state(stored(counter), "set")
    assert problems and "not a set" in problems[0]
    raw = apply_write(None, {}, b"plain bytes", Metadata(), b"A" * 8, 0, allow_mult=True)
    _, problems = dc.replica_state(raw, "counter")
    assert problems and "does not decode" in problems[0]
    assert not dc.check_storage(problems, 1).passed


def test_an_update_refused_as_malformed_fails_the_errors_checker() -> None:
    ok = [op(0, DtKind.SET_ADD, "s0", Outcome.INFO, element="e0",
             detail="Unavailable: no quorum")]
    assert dc.check_errors(ok).passed
    bad = [op(0, DtKind.SET_ADD, "s0", Outcome.INFO, element="e0",
              detail="BadRequest: the stored value is a counter")]
    assert not dc.check_errors(bad).passed
