"""The linearizability checker: what it rejects, what it accepts, budgets, and its laws."""

from __future__ import annotations

import functools
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sapwood.sim import wgl
from sapwood.sim.history import HistoryError, HistoryRecorder, Op, OpKind, Outcome
from sapwood.sim.linearizability import REGISTER, Model, Verdict, check
from sapwood.sim.wgl import CLOCK_CHECK_EVERY

INF = float("inf")


# -- building histories by hand ------------------------------------------------------------


# Each takes the process, the arguments, the window [t0, t1] (t1 None for info), then
# optionally the key and the outcome.
End = float | None


def read(p: Hashable, seen: Hashable, t0: float, t1: End, key: str = "k", out: str = "ok") -> Op:
    return Op(p, key, OpKind.READ, t0, t1, Outcome(out), seen)


def write(p: Hashable, v: Hashable, t0: float, t1: End, key: str = "k", out: str = "ok") -> Op:
    return Op(p, key, OpKind.WRITE, t0, t1, Outcome(out), v)


def cas(
    p: Hashable, old: Hashable, new: Hashable, t0: float, t1: End, key: str = "k", out: str = "ok"
) -> Op:
    return Op(p, key, OpKind.CAS, t0, t1, Outcome(out), new, old)


def delete(p: Hashable, t0: float, t1: End, key: str = "k", out: str = "ok") -> Op:
    return Op(p, key, OpKind.DELETE, t0, t1, Outcome(out))


def info_write(p: Hashable, v: Hashable, t0: float, key: str = "k") -> Op:
    return write(p, v, t0, None, key, "info")


def verdict_of(history: Sequence[Op]) -> Verdict:
    return check(history).verdict


# -- non-linearizable histories are rejected ------------------------------------------------


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    history = [write(1, "a", 0, 10), write(1, "b", 20, 30), read(2, "a", 40, 50)]
    result = check(history)
    assert result.verdict is Verdict.ILLEGAL
    key_result = result.keys["k"]
    assert key_result.unplaced == (history[2],)
    assert key_result.longest_prefix == (history[0], history[1])
    assert "#2 read -> 'a' by 2 ok [40, 50]" in key_result.explanation
    assert "impossible in state 'b'" in key_result.explanation


def test_two_successful_cas_from_the_same_version_are_rejected() -> None:
    history = [write(1, 0, 0, 5), cas(2, 0, 1, 10, 20), cas(3, 0, 2, 12, 22)]
    assert verdict_of(history) is Verdict.ILLEGAL


def test_one_successful_and_one_failed_cas_from_the_same_version_are_accepted() -> None:
    history = [write(1, 0, 0, 5), cas(2, 0, 1, 10, 20), cas(3, 0, 2, 12, 22, out="fail")]
    assert verdict_of(history) is Verdict.OK


def test_a_read_of_a_value_nobody_wrote_is_rejected() -> None:
    history = [write(1, "a", 0, 10), read(2, "zzz", 5, 15)]
    result = check(history)
    assert result.verdict is Verdict.ILLEGAL
    assert result.keys["k"].unplaced[-1] == history[1]


def test_a_read_that_sees_a_write_then_a_later_read_of_the_older_value_is_rejected() -> None:
    # Both reads overlap the slow write of "b", but once one has seen "b" no later one may
    # see "a" again.
    history = [
        write(1, "a", 0, 5), write(1, "b", 10, 100), read(2, "b", 20, 30), read(3, "a", 40, 50)
    ]
    assert verdict_of(history) is Verdict.ILLEGAL


def test_reads_on_either_side_of_a_concurrent_write_are_accepted() -> None:
    history = [
        write(1, "a", 0, 5), write(1, "b", 10, 100), read(2, "a", 20, 30), read(3, "b", 40, 50)
    ]
    assert verdict_of(history) is Verdict.OK


def test_a_read_after_a_completed_delete_must_see_absence() -> None:
    base = [write(1, "a", 0, 5), delete(1, 10, 15)]
    assert verdict_of([*base, read(2, None, 20, 25)]) is Verdict.OK
    assert verdict_of([*base, read(2, "a", 20, 25)]) is Verdict.ILLEGAL


def test_a_read_of_a_never_written_key_sees_absence() -> None:
    assert verdict_of([read(1, None, 0, 1)]) is Verdict.OK
    assert verdict_of([read(1, "x", 0, 1)]) is Verdict.ILLEGAL


def test_an_empty_history_is_linearizable() -> None:
    result = check([])
    assert result.verdict is Verdict.OK
    assert result.keys == {}


def test_concurrent_ops_may_take_effect_in_any_order() -> None:
    # Three overlapping writes and reads that saw them in the order c, a, b.
    history = [
        write(1, "a", 0, 50),
        write(2, "b", 0, 50),
        write(3, "c", 0, 50),
        read(4, "c", 1, 2),
        read(5, "a", 3, 4),
        read(6, "b", 60, 70),
    ]
    assert verdict_of(history) is Verdict.OK


def test_intervals_that_only_touch_count_as_concurrent() -> None:
    assert verdict_of([write(1, "a", 0, 10), read(2, None, 10, 20)]) is Verdict.OK
    assert verdict_of([write(1, "a", 0, 10), read(2, None, 11, 20)]) is Verdict.ILLEGAL


# -- outcomes: fail and info -----------------------------------------------------------------


def test_failed_ops_never_took_effect() -> None:
    history = [write(1, "a", 0, 5), write(2, "b", 10, 15, out="fail")]
    assert verdict_of([*history, read(3, "a", 20, 25)]) is Verdict.OK
    assert verdict_of([*history, read(3, "b", 20, 25)]) is Verdict.ILLEGAL


def test_a_failed_read_tells_nothing() -> None:
    history = [write(1, "a", 0, 5), Op(2, "k", OpKind.READ, 10, 15, Outcome.FAIL)]
    assert verdict_of(history) is Verdict.OK


def test_an_info_write_may_take_effect_long_after_its_invocation() -> None:
    history = [
        write(1, "a", 0, 5), info_write(2, "b", 10), read(3, "a", 200, 210), read(3, "b", 300, 310)
    ]
    assert verdict_of(history) is Verdict.OK


def test_an_info_write_may_never_take_effect() -> None:
    history = [write(1, "a", 0, 5), info_write(2, "b", 10), read(3, "a", 200, 210)]
    assert verdict_of(history) is Verdict.OK


def test_an_info_write_takes_effect_at_most_once() -> None:
    history = [
        write(1, "a", 0, 5),
        info_write(2, "b", 10),
        read(3, "b", 20, 25),
        write(1, "a", 30, 35),
        read(3, "b", 40, 45),
    ]
    assert verdict_of(history) is Verdict.ILLEGAL


def test_an_info_write_cannot_take_effect_before_its_invocation() -> None:
    history = [write(1, "a", 0, 5), read(3, "b", 6, 8), info_write(2, "b", 10)]
    assert verdict_of(history) is Verdict.ILLEGAL


def test_an_info_cas_applies_only_from_its_expected_value() -> None:
    base = [write(1, "a", 0, 5)]
    applied = [*base, cas(2, "a", "b", 10, None, out="info"), read(3, "b", 20, 25)]
    impossible = [*base, cas(2, "zzz", "b", 10, None, out="info"), read(3, "b", 20, 25)]
    assert verdict_of(applied) is Verdict.OK
    assert verdict_of(impossible) is Verdict.ILLEGAL


def test_interchangeable_info_ops_each_take_effect_at_most_once() -> None:
    # Two identical info deletes explain two absences, but not three.
    history = [
        write(1, "a", 0, 5),
        delete(2, 6, None, out="info"),
        delete(3, 7, None, out="info"),
        read(4, None, 10, 11),
        write(1, "a", 12, 13),
        read(4, None, 14, 15),
        write(1, "a", 16, 17),
    ]
    assert verdict_of(history) is Verdict.OK
    assert verdict_of([*history, read(4, None, 18, 19)]) is Verdict.ILLEGAL


def test_an_info_op_used_early_does_not_hide_a_linearization_without_it() -> None:
    # Found by the sweep below: pruning the configurations that use fewer info ops (instead
    # of more) rejects this linearizable history (info write 2, read 2, info delete, cas).
    history = [
        cas(3, None, None, 17, 21),
        delete(2, 1, None, out="info"),
        read(2, 2, 9, 15),
        cas(0, 2, 1, 15, None, out="info"),
        write(2, 2, 12, None, out="info"),
    ]
    assert verdict_of(history) is Verdict.OK
    assert check(history, model=PlainRegister()).verdict is Verdict.OK


def test_an_info_read_tells_nothing() -> None:
    history = [write(1, "a", 0, 5), read(2, None, 10, None, out="info")]
    result = check(history)
    assert result.verdict is Verdict.OK
    assert result.keys["k"].op_count == 1


# -- partitioning per key --------------------------------------------------------------------


def test_the_illegal_key_among_legal_ones_is_named() -> None:
    history = [
        write(1, "a", 0, 5, key="x"),
        write(1, "a", 0, 5, key="y"),
        write(1, "a", 0, 5, key="z"),
        read(2, "a", 10, 15, key="x"),
        read(2, None, 10, 15, key="y"),  # stale: the write of y completed before
        read(2, "a", 10, 15, key="z"),
    ]
    result = check(history)
    assert result.verdict is Verdict.ILLEGAL
    assert result.illegal_keys == ["y"]
    assert {k: r.verdict for k, r in result.keys.items()} == {
        "x": Verdict.OK,
        "y": Verdict.ILLEGAL,
        "z": Verdict.OK,
    }
    assert "key 'y'" in result.explain()
    assert "key 'x'" not in result.explain()


def test_ops_on_other_keys_do_not_constrain_a_key() -> None:
    history = [write(1, "a", 0, 5, key="x"), read(2, None, 10, 15, key="y")]
    assert verdict_of(history) is Verdict.OK


def test_a_key_whose_ops_all_failed_is_reported_ok() -> None:
    result = check([write(1, "a", 0, 5, key="x", out="fail")])
    assert result.keys["x"].verdict is Verdict.OK
    assert result.keys["x"].op_count == 0


# -- budget ----------------------------------------------------------------------------------


class TickingClock:
    """Virtual time that advances a fixed amount each time it is read."""

    def __init__(self, tick_s: float) -> None:
        self.now = 0.0
        self.tick_s = tick_s

    def __call__(self) -> float:
        self.now += self.tick_s
        return self.now


def hard_illegal_history(width: int = 14) -> list[Op]:
    # `width` fully concurrent writes, then a read of a value none of them wrote: proving
    # that illegal means trying every order of the writes (about width * 2**width states).
    writes = [write(p, p, 0, 100) for p in range(width)]
    return [*writes, read(99, "zzz", 200, 210)]


def test_a_clock_that_jumps_past_the_budget_gives_unknown() -> None:
    times = iter([0.0, 1000.0])
    result = check(hard_illegal_history(), budget_s=5.0, clock=lambda: next(times, 1000.0))
    assert result.verdict is Verdict.UNKNOWN
    assert result.unknown_keys == ["k"]
    assert "budget" in result.keys["k"].explanation


def test_the_budget_stops_a_long_search_midway() -> None:
    clock = TickingClock(tick_s=1.0)
    result = check(hard_illegal_history(), budget_s=2.5, clock=clock)
    key_result = result.keys["k"]
    assert key_result.verdict is Verdict.UNKNOWN
    assert key_result.steps == 2 * CLOCK_CHECK_EVERY


def test_an_ample_budget_lets_the_same_search_finish() -> None:
    clock = TickingClock(tick_s=0.0)
    result = check(hard_illegal_history(width=8), budget_s=1.0, clock=clock)
    assert result.verdict is Verdict.ILLEGAL


def test_a_spent_total_budget_leaves_later_keys_unknown_and_unsearched() -> None:
    history = [write(1, "a", 0, 5, key=key) for key in ("x", "y", "z")]
    clock = TickingClock(tick_s=1.0)
    result = check(history, budget_s=100.0, total_budget_s=2.5, clock=clock)
    assert result.keys["x"].verdict is Verdict.OK
    assert result.unknown_keys == ["y", "z"]
    assert result.keys["z"].steps == 0
    assert result.verdict is Verdict.UNKNOWN


def test_a_full_memo_table_gives_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wgl, "MAX_CACHED_CONFIGURATIONS", 10)
    result = check(hard_illegal_history(), clock=TickingClock(tick_s=0.0))
    assert result.verdict is Verdict.UNKNOWN
    assert "memo table" in result.keys["k"].explanation


def test_negative_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        check([], budget_s=-1.0)


# -- pluggable models ------------------------------------------------------------------------


class WriteOnceRegister:
    """A register that may be written only while absent (no hints: a plain Model)."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Op) -> tuple[bool, Hashable]:
        if op.kind is OpKind.WRITE:
            return state is None, op.value
        return REGISTER.step(state, op)


def test_a_custom_model_decides_what_is_legal() -> None:
    history = [write(1, "a", 0, 5), write(2, "b", 10, 15), read(3, "b", 20, 25)]
    model: Model[Hashable] = WriteOnceRegister()
    assert check(history).verdict is Verdict.OK
    assert check(history, model=model).verdict is Verdict.ILLEGAL


# -- history model and recorder --------------------------------------------------------------


def test_ops_are_validated() -> None:
    with pytest.raises(HistoryError):
        write(1, "a", 10, 5)
    with pytest.raises(HistoryError):
        write(1, "a", 0, None)  # ok needs a completion time
    with pytest.raises(HistoryError):
        Op(1, "k", OpKind.WRITE, 0, 5, Outcome.INFO, "a")  # info has none
    with pytest.raises(HistoryError):
        Op(1, "k", "scan", 0, 5, "ok")  # type: ignore[arg-type]
    with pytest.raises(HistoryError):
        Op(1, "k", OpKind.WRITE, 0, 5, Outcome.OK, "a", expected="b")
    plain_strings = Op(1, "k", "read", 0, 5, "ok", "a")  # type: ignore[arg-type]
    assert (plain_strings.kind, plain_strings.outcome) == (OpKind.READ, Outcome.OK)


def test_the_recorder_pairs_invocations_with_completions() -> None:
    recorder = HistoryRecorder()
    w = recorder.invoke("p1", "k", "write", 0, value="a")
    r = recorder.invoke("p2", "k", OpKind.READ, 1)
    c = recorder.invoke("p3", "k", "cas", 2, expected="zzz", value="b")
    lost = recorder.invoke("p4", "k", "delete", 3)
    pending = recorder.invoke("p5", "k", "write", 4, value="c")
    recorder.ok(w, 5)
    recorder.ok(r, 6, value="a")
    recorder.fail(c, 7)
    recorder.info(lost)
    history = recorder.history()
    assert len(recorder) == 5
    assert history == [
        write("p1", "a", 0, 5),
        read("p2", "a", 1, 6),
        cas("p3", "zzz", "b", 2, 7, out="fail"),
        delete("p4", 3, None, out="info"),
        info_write("p5", "c", 4),
    ]
    assert pending == 4
    assert check(history).verdict is Verdict.OK


def test_the_recorder_refuses_harness_mistakes() -> None:
    recorder = HistoryRecorder(max_ops=2)
    r = recorder.invoke(1, "k", "read", 0)
    with pytest.raises(HistoryError):
        recorder.ok(r, 1)  # a read must say what it saw
    w = recorder.invoke(1, "k", "write", 0, value="a")
    with pytest.raises(HistoryError):
        recorder.ok(w, 1, value="a")  # only reads observe
    recorder.ok(w, 1)
    with pytest.raises(HistoryError):
        recorder.ok(w, 2)  # completed twice
    with pytest.raises(HistoryError):
        recorder.fail(99, 2)  # unknown id
    with pytest.raises(HistoryError):
        recorder.invoke(1, "k", "write", 3, value="b")  # over the limit
    with pytest.raises(HistoryError):
        HistoryRecorder().invoke(1, "k", "read", 0, value="a")


# -- histories from real sequential executions (Hypothesis) ---------------------------------

FATES = ("ok", "ok", "ok", "info-applied", "info-lost", "fail")
NEVER_WRITTEN = "never-written"


@dataclass(frozen=True)
class PlannedOp:
    key: str
    kind: OpKind
    value: int
    expect_current: bool
    expected: int | None
    lead: int
    lag: int
    fate: str


planned_ops = st.builds(
    PlannedOp,
    key=st.sampled_from(["a", "b"]),
    kind=st.sampled_from(list(OpKind)),
    value=st.integers(0, 3),
    expect_current=st.booleans(),
    expected=st.one_of(st.none(), st.integers(0, 3)),
    lead=st.integers(0, 25),
    lag=st.integers(0, 25),
    fate=st.sampled_from(FATES),
)


def executed_history(plan: list[PlannedOp]) -> list[Op]:
    """Run the plan sequentially (op i takes effect at t = 10 i), then record each op with a
    window around that instant, replaying invoke/complete events in time order."""
    state: dict[str, int | None] = {}
    events: list[tuple[int, int, str, int, PlannedOp, int | None]] = []
    for i, planned in enumerate(plan):
        at = 10 * i
        applies = planned.fate in ("ok", "info-applied")
        observed: int | None = None
        outcome = "info" if planned.fate.startswith("info") else planned.fate
        current = state.get(planned.key)
        expected = current if planned.expect_current else planned.expected
        if planned.kind is OpKind.READ:
            observed = current
        elif planned.kind is OpKind.CAS:
            if applies and current == expected:
                state[planned.key] = planned.value
            elif outcome == "ok":
                outcome = "fail"  # the precondition did not hold
        elif applies:
            state[planned.key] = None if planned.kind is OpKind.DELETE else planned.value
        events.append((at - planned.lead, 0, "invoke", i, planned, expected))
        events.append((at + planned.lag, 1, outcome, i, planned, observed))
    recorder = HistoryRecorder()
    ids: dict[int, int] = {}
    for at, _, action, i, planned, extra in sorted(events, key=lambda e: e[:2]):
        if action == "invoke":
            value = None if planned.kind in (OpKind.READ, OpKind.DELETE) else planned.value
            expected = extra if planned.kind is OpKind.CAS else None
            ids[i] = recorder.invoke(
                i % 4, planned.key, planned.kind, at, value=value, expected=expected
            )
        elif action == "ok":
            if planned.kind is OpKind.READ:
                recorder.ok(ids[i], at, value=extra)
            else:
                recorder.ok(ids[i], at)
        elif action == "fail":
            recorder.fail(ids[i], at)
        else:
            recorder.info(ids[i])
    return recorder.history()


HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(st.lists(planned_ops, max_size=40))
def test_histories_of_real_executions_are_accepted(plan: list[PlannedOp]) -> None:
    result = check(executed_history(plan), budget_s=60.0)
    assert result.verdict is Verdict.OK, result.explain()


@HYPOTHESIS
@given(st.lists(planned_ops, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_a_read_of_a_never_written_value_is_rejected(
    plan: list[PlannedOp], rnd: random.Random
) -> None:
    history = executed_history(plan)
    reads = [
        i for i, op in enumerate(history) if op.kind is OpKind.READ and op.outcome is Outcome.OK
    ]
    assume(reads)
    corrupted = rnd.choice(reads)
    history[corrupted] = replace(history[corrupted], value=NEVER_WRITTEN)
    result = check(history, budget_s=60.0)
    assert result.verdict is Verdict.ILLEGAL
    assert result.illegal_keys == [history[corrupted].key]
    assert history[corrupted] in result.keys[history[corrupted].key].unplaced


# -- agreement with a brute-force definition (Hypothesis) -----------------------------------


def brute_force_linearizable(history: Sequence[Op], model: Model[Hashable]) -> bool:
    """Straight from the definition: some order of all ok ops and some of the info ops that
    the model accepts, and where no op comes after one that was invoked after it completed."""
    ops = [op for op in history if op.outcome is not Outcome.FAIL]
    ends = [INF if op.complete_ms is None else op.complete_ms for op in ops]

    @functools.cache
    def completes(remaining: frozenset[int], state: Hashable) -> bool:
        if all(ops[i].outcome is not Outcome.OK for i in remaining):
            return True
        for i in remaining:
            if any(ends[j] < ops[i].invoke_ms for j in remaining):
                continue
            legal, after = model.step(state, ops[i])
            if legal and completes(remaining - {i}, after):
                return True
        return False

    return completes(frozenset(range(len(ops))), model.init())


class PlainRegister:
    """The register without search hints, to check that the hints change no verdict."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Op) -> tuple[bool, Hashable]:
        return REGISTER.step(state, op)


def random_op(rng: random.Random) -> Op:
    """An op on one key with few values and short windows, so that about a third of the
    histories built from them are not linearizable."""
    kind = rng.choice(list(OpKind))
    outcome = rng.choice([Outcome.OK, Outcome.OK, Outcome.INFO, Outcome.INFO, Outcome.FAIL])
    start = rng.randint(0, 20)
    end = None if outcome is Outcome.INFO else start + rng.randint(0, 10)
    value = None if kind is OpKind.DELETE else rng.choice([None, 1, 2])
    if kind is OpKind.WRITE and value is None:
        value = 1
    expected = rng.choice([None, 1, 2]) if kind is OpKind.CAS else None
    return Op(rng.randint(0, 3), "k", kind, start, end, outcome, value, expected)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.builds(random_op, st.randoms(use_true_random=False)), max_size=7))
def test_verdicts_match_the_definition(history: list[Op]) -> None:
    expected = Verdict.OK if brute_force_linearizable(history, REGISTER) else Verdict.ILLEGAL
    assert check(history).verdict is expected
    assert check(history, model=PlainRegister()).verdict is expected


def test_verdicts_match_the_definition_in_a_seeded_sweep() -> None:
    rng = random.Random(2024)
    disagreements = []
    for _ in range(5000):
        history = [random_op(rng) for _ in range(rng.randint(1, 8))]
        expected = Verdict.OK if brute_force_linearizable(history, REGISTER) else Verdict.ILLEGAL
        if check(history).verdict is not expected:
            disagreements.append(history)
    assert disagreements == []


# -- size ------------------------------------------------------------------------------------


def test_a_few_hundred_concurrent_ops_with_info_ops_are_checked() -> None:
    rng = random.Random(7)
    plan = [
        PlannedOp(
            key="a",
            kind=rng.choice(list(OpKind)),
            value=rng.randrange(1_000_000),
            expect_current=rng.random() < 0.7,
            expected=None,
            lead=rng.randrange(30),
            lag=rng.randrange(30),
            fate=rng.choice(FATES),
        )
        for _ in range(400)
    ]
    history = executed_history(plan)
    result = check(history, budget_s=60.0)
    assert result.verdict is Verdict.OK, result.explain()
    assert result.keys["a"].op_count > 250

