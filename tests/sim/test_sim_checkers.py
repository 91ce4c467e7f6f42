"""The checkers judge histories correctly: they pass what is legal and name what is not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.sim import checkers
from sapwood.sim.checkers import Observer, sibling_problem
from sapwood.sim.history import Outcome
from sapwood.sim.workload import OpKind, OpRecord, decode_value, encode_value, extend_value


def op(op_id: int, kind: OpKind, key: str = "k", outcome: Outcome = Outcome.OK,
       removed: frozenset[int] = frozenset(), wrote: bool = True) -> OpRecord:
    return OpRecord(op_id, client=0, kind=kind, key=key, invoke_ms=op_id, node="n1",
                    complete_ms=None if outcome is Outcome.INFO else op_id + 1,
                    outcome=outcome, removed=removed, wrote=wrote)


@settings(max_examples=50, deadline=None)
@given(tag=st.integers(0, 10**9), elements=st.frozensets(st.integers(0, 10**9), max_size=30))
def test_values_round_trip(tag: int, elements: frozenset[int]) -> None:
    assert decode_value(encode_value(tag, elements)) == (tag, elements)


@settings(max_examples=80, deadline=None)
@given(writer=st.integers(0, 200), tag=st.integers(0, 200),
       elements=st.frozensets(st.integers(0, 200), max_size=30))
def test_extending_a_value_encodes_as_encoding_the_union(
        writer: int, tag: int, elements: frozenset[int]) -> None:
    raw = encode_value(writer, elements)
    assert extend_value(tag, raw, elements) == encode_value(tag, elements | {tag})


def test_concurrent_siblings_are_legal() -> None:
    assert sibling_problem([(1, frozenset({1, 5})), (2, frozenset({2, 5}))]) == ""


def test_a_sibling_its_neighbour_has_seen_is_obsolete() -> None:
    problem = sibling_problem([(1, frozenset({1})), (2, frozenset({1, 2}))])
    assert "survives beside write 2" in problem


def test_one_write_as_two_siblings_is_flagged_unless_the_network_doubled_it() -> None:
    twins = [(7, frozenset({7})), (7, frozenset({7}))]
    assert "several siblings" in sibling_problem(twins)
    assert sibling_problem(twins, duplicated=lambda tag: tag == 7) == ""


def test_an_acknowledged_add_missing_at_the_end_is_lost() -> None:
    ops = [op(0, OpKind.ADD), op(1, OpKind.ADD), op(2, OpKind.BLIND, outcome=Outcome.INFO)]
    verdict = checkers.check_lost_writes(ops, {"k": {0}})
    assert not verdict.passed
    assert "element 1" in verdict.details[0]
    assert checkers.check_lost_writes(ops, {"k": {0, 1}}).passed  # the info write may vanish


def test_a_delete_that_saw_an_element_excuses_its_absence() -> None:
    ops = [op(0, OpKind.ADD), op(1, OpKind.DELETE, removed=frozenset({0}), outcome=Outcome.INFO)]
    assert checkers.check_lost_writes(ops, {"k": set()}).passed
    failed_delete = [ops[0], op(1, OpKind.DELETE, removed=frozenset({0}), outcome=Outcome.FAIL)]
    assert not checkers.check_lost_writes(failed_delete, {"k": set()}).passed


def test_phantoms_and_failed_writes_are_caught() -> None:
    ops = [op(0, OpKind.ADD), op(1, OpKind.ADD, outcome=Outcome.FAIL, wrote=False)]
    clean = checkers.check_phantoms(ops, {"k": {0}}, Observer(), {})
    assert clean.passed
    phantom = checkers.check_phantoms(ops, {"k": {0, 99}}, Observer(), {})
    assert not phantom.passed and "nobody wrote" in phantom.details[0]
    failed = checkers.check_phantoms(ops, {"k": {0, 1}}, Observer(), {})
    assert not failed.passed


def test_the_observer_flags_what_clients_should_never_see() -> None:
    observer = Observer()
    observer.wrote("k", 1)
    observer.observe("k", [(1, frozenset({1}))], "read")
    assert not observer.phantoms and not observer.violations
    observer.observe("k", [(1, frozenset({1, 2}))], "read")
    assert observer.phantoms
    observer.wrote("k", 2)
    observer.observe("k", [(1, frozenset({1})), (2, frozenset({1, 2}))], "read")
    assert observer.violations
    observer.listed(["k", "ghost"], {"k"}, "list")
    assert any("ghost" in p for p in observer.phantoms)


def test_lww_losses_are_measured_not_failed() -> None:
    ops = [op(0, OpKind.LWW_ADD), op(1, OpKind.LWW_ADD)]
    verdict = checkers.measure_lww_losses(ops, {"k": {1}})
    assert verdict.passed and verdict.informational
    assert verdict.summary.startswith("1 of 2")


def test_liveness_has_a_bound() -> None:
    assert checkers.check_liveness({"n1": 10, "n2": 900}, 1_000).passed
    late = checkers.check_liveness({"n1": 10, "n2": None}, 1_000)
    assert not late.passed and "n2" in late.details[0]


def test_convergence_and_listing_verdicts() -> None:
    assert checkers.check_convergence([], 5).passed
    assert not checkers.check_convergence(["k: differs"], 5).passed
    assert checkers.check_final_listing(["a", "b"], 1.0, {"a", "b"}).passed
    assert not checkers.check_final_listing(["a"], 1.0, {"a", "b"}).passed
    assert not checkers.check_final_listing(["a", "b"], 0.5, {"a", "b"}).passed
    assert not checkers.check_final_listing(None, 0.0, set()).passed
