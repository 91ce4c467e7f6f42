"""Linearizability checker for recorded key-value histories.

The history is partitioned per key, as Porcupine and Knossos do: linearizability is local
(Herlihy & Wing), so the whole history is linearizable iff every key's sub-history is, and a
hard key costs only its own budget. Each key is searched by Wing & Gong's algorithm with
Lowe's memoisation (`sapwood.sim.wgl`) against a pluggable sequential `Model`, by default a
register with read/write/cas/delete.

    result = check(recorder.history(), budget_s=5.0)
    assert result.verdict == "ok", result.explain()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sapwood.sim.history import HistoryError, HistoryRecorder, Op, OpKind, Outcome
from sapwood.sim.wgl import HintedModel, Model, SearchResult, search

__all__ = [
    "DEFAULT_KEY_BUDGET_S",
    "MAX_OPS_PER_KEY",
    "REGISTER",
    "CheckResult",
    "HintedModel",
    "HistoryError",
    "HistoryRecorder",
    "KeyResult",
    "Model",
    "Op",
    "OpKind",
    "Outcome",
    "RegisterModel",
    "Verdict",
    "check",
    "check_key",
    "partition_by_key",
]

# Beyond this a single key's search is hopeless anyway; refuse rather than grind.
MAX_OPS_PER_KEY: Final = 100_000
DEFAULT_KEY_BUDGET_S: Final = 10.0
# Explanations show this many ops before the stuck point, and at most this many stuck ones.
EXPLAIN_PREFIX_OPS: Final = 8
EXPLAIN_UNPLACED_OPS: Final = 12


class Verdict(StrEnum):
    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"


class RegisterModel:
    """One key as a register: read/write/cas/delete; the state is the value, None when absent.

    A `HintedModel`: writes and deletes overwrite blindly, and ops with the same kind and
    arguments are interchangeable.
    """

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Op) -> tuple[bool, Hashable]:
        if op.kind is OpKind.READ:
            return state == op.value, state
        if op.kind is OpKind.WRITE:
            return True, op.value
        if op.kind is OpKind.CAS:
            return state == op.expected, op.value
        return True, None

    def overwrites(self, op: Op) -> bool:
        return op.kind is OpKind.WRITE or op.kind is OpKind.DELETE

    def effect(self, op: Op) -> Hashable:
        return op.kind, op.value, op.expected


REGISTER: Final = RegisterModel()


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key. `op_count` counts the ops searched (fail ops and info reads
    are dropped first). For an illegal key, `longest_prefix` is the longest linearization found
    and `unplaced` the ops of which one had to come next but none could."""

    key: Hashable
    verdict: Verdict
    op_count: int
    steps: int
    explanation: str = ""
    longest_prefix: tuple[Op, ...] = ()
    unplaced: tuple[Op, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Overall verdict: illegal if any key is, else unknown if any key is, else ok."""

    verdict: Verdict
    keys: Mapping[Hashable, KeyResult] = field(default_factory=dict)

    @property
    def illegal_keys(self) -> list[Hashable]:
        return [k for k, r in self.keys.items() if r.verdict is Verdict.ILLEGAL]

    @property
    def unknown_keys(self) -> list[Hashable]:
        return [k for k, r in self.keys.items() if r.verdict is Verdict.UNKNOWN]

    def explain(self) -> str:
        """The explanations of every key that is not ok, or a one-line summary."""
        lines = [f"{self.verdict} (keys checked: {len(self.keys)})"]
        lines += [r.explanation for r in self.keys.values() if r.verdict is not Verdict.OK]
        return "\n".join(lines)


IndexedOp = tuple[int, Op]


def partition_by_key(history: Iterable[Op]) -> dict[Hashable, list[IndexedOp]]:
    """The ops that constrain the search, per key (first-seen order), with their history index.

    Fail ops never took effect and an indeterminate read constrains nothing, so both are
    dropped; a key whose ops are all dropped still appears, with an empty list.
    """
    by_key: dict[Hashable, list[IndexedOp]] = {}
    for index, op in enumerate(history):
        if not isinstance(op, Op):
            raise HistoryError(f"history item {index} is not an Op: {op!r}")
        ops = by_key.setdefault(op.key, [])
        if op.outcome is Outcome.FAIL:
            continue
        if op.outcome is Outcome.INFO and op.kind is OpKind.READ:
            continue
        ops.append((index, op))
    return by_key


def check(
    history: Iterable[Op],
    *,
    model: Model[Any] = REGISTER,
    budget_s: float = DEFAULT_KEY_BUDGET_S,
    total_budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Check a whole history, key by key.

    Each key's search stops after `budget_s` seconds of `clock` and reports unknown; once
    `total_budget_s` (if given) is spent, the remaining keys are reported unknown unsearched.
    """
    if budget_s < 0 or (total_budget_s is not None and total_budget_s < 0):
        raise ValueError("budgets must be non-negative")
    by_key = partition_by_key(history)
    total_deadline = float("inf") if total_budget_s is None else clock() + total_budget_s
    results: dict[Hashable, KeyResult] = {}
    for key, ops in by_key.items():
        now = clock()
        if now >= total_deadline:
            text = f"key {key!r}: unknown: the total budget of {total_budget_s}s ran out first"
            results[key] = KeyResult(key, Verdict.UNKNOWN, len(ops), 0, text)
            continue
        results[key] = check_key(
            key, ops, model=model, deadline=min(now + budget_s, total_deadline), clock=clock
        )
    return CheckResult(_overall(results.values()), results)


def check_key(
    key: Hashable,
    ops: Sequence[IndexedOp],
    *,
    model: Model[Any] = REGISTER,
    deadline: float = float("inf"),
    clock: Callable[[], float] = time.monotonic,
) -> KeyResult:
    """Check one key's ops (as `partition_by_key` gives them) until `clock()` passes `deadline`."""
    if len(ops) > MAX_OPS_PER_KEY:
        raise HistoryError(f"key {key!r} has {len(ops)} ops; the limit is {MAX_OPS_PER_KEY}")
    found = search([op for _, op in ops], model, deadline, clock)
    if found.linearizable:
        return KeyResult(key, Verdict.OK, len(ops), found.steps)
    if found.linearizable is None:
        text = (
            f"key {key!r}: unknown: gave up after {found.steps} steps, as {found.gave_up}"
            f" (ops: {len(ops)}; longest linearization found: {len(found.best_prefix)} ops)"
        )
        return KeyResult(key, Verdict.UNKNOWN, len(ops), found.steps, text)
    return _illegal_result(key, ops, model, found)


def _overall(results: Iterable[KeyResult]) -> Verdict:
    verdicts = {r.verdict for r in results}
    if Verdict.ILLEGAL in verdicts:
        return Verdict.ILLEGAL
    if Verdict.UNKNOWN in verdicts:
        return Verdict.UNKNOWN
    return Verdict.OK


def _illegal_result(
    key: Hashable, ops: Sequence[IndexedOp], model: Model[Any], found: SearchResult
) -> KeyResult:
    due, unplaced = _stuck_point(ops, found.best_prefix)
    text = _explain_illegal(key, ops, model, found, due, unplaced)
    prefix = tuple(ops[i][1] for i in found.best_prefix)
    stuck = tuple(ops[i][1] for i in unplaced)
    return KeyResult(key, Verdict.ILLEGAL, len(ops), found.steps, text, prefix, stuck)


def _stuck_point(ops: Sequence[IndexedOp], prefix: Sequence[int]) -> tuple[int, list[int]]:
    """After `prefix`, the earliest-completing ok op left (which had to come by its
    completion) and the ops left that were invoked by then: one of them had to come next."""
    placed = set(prefix)
    pending = [i for i in range(len(ops)) if i not in placed]
    pending_ok = [i for i in pending if ops[i][1].outcome is Outcome.OK]
    due = min(pending_ok, key=lambda i: (ops[i][1].complete_ms, ops[i][1].invoke_ms))
    due_ms = ops[due][1].complete_ms
    assert due_ms is not None
    return due, [i for i in pending if ops[i][1].invoke_ms <= due_ms]


def _explain_illegal(
    key: Hashable,
    ops: Sequence[IndexedOp],
    model: Model[Any],
    found: SearchResult,
    due: int,
    unplaced: Sequence[int],
) -> str:
    state = found.best_state
    ok_total = sum(op.outcome is Outcome.OK for _, op in ops)
    lines = [
        f"key {key!r}: not linearizable (ops searched: {len(ops)}, steps: {found.steps}).",
        f"  Longest linearization found places {found.best_ok} of {ok_total} ok ops"
        f" ({len(found.best_prefix)} ops in all); its last ops:",
    ]
    shown_prefix = found.best_prefix[-EXPLAIN_PREFIX_OPS:]
    if len(shown_prefix) < len(found.best_prefix):
        lines.append("    ...")
    lines += [f"    {_label(ops[i])}" for i in shown_prefix] or ["    (none)"]
    lines += [
        f"  Then the state is {state!r}, and {_label(ops[due])} must take effect by"
        f" t={ops[due][1].complete_ms:g},",
        "  so one of these comes next, but none leads to a linearization:",
    ]
    for i in unplaced[:EXPLAIN_UNPLACED_OPS]:
        legal, _ = model.step(state, ops[i][1])
        why = "no linearization continues from it" if legal else f"impossible in state {state!r}"
        lines.append(f"    {_label(ops[i])}: {why}")
    if len(unplaced) > EXPLAIN_UNPLACED_OPS:
        lines.append(f"    ... and {len(unplaced) - EXPLAIN_UNPLACED_OPS} more")
    return "\n".join(lines)


def _label(indexed: IndexedOp) -> str:
    index, op = indexed
    return f"#{index} {op.describe()}"
