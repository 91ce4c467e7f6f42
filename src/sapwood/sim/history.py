"""Recorded operation histories: what clients invoked, when, and what they were told.

A history is the checker's input (see `sapwood.sim.linearizability`). Each `Op` is one client
call on one key with its real-time window [invoke_ms, complete_ms] and its outcome:

- "ok": the call took effect exactly once, somewhere inside its window;
- "fail": the call definitely did not take effect (a failed read tells nothing);
- "info": indeterminate (a timeout, a crash): it may have taken effect at any point after its
  invocation, or never, so it has no completion time.

Values are opaque hashables (bytes, str, int); `None` stands for "the key is absent".
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# A harness that records more than this is almost certainly looping; the checker could not
# search such a history anyway.
MAX_RECORDED_OPS: Final = 1_000_000


class OpKind(StrEnum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"
    DELETE = "delete"


class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class HistoryError(ValueError):
    """The history is malformed (bad kind or outcome, a window that ends before it starts, ...)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one key.

    `value` is the written value of a write, the new value of a cas, and the observed value of
    a read that returned ok (None: the key was absent). `expected` is a cas's expected value.
    `complete_ms` is None exactly for info ops. `process` (the client) only labels the op:
    the checker does not assume a process has one op outstanding at a time.
    """

    process: Hashable
    key: Hashable
    kind: OpKind
    invoke_ms: float
    complete_ms: float | None
    outcome: Outcome
    value: Hashable = None
    expected: Hashable = None

    def __post_init__(self) -> None:
        try:
            kind = OpKind(self.kind)
            outcome = Outcome(self.outcome)
        except ValueError as exc:
            raise HistoryError(f"invalid op {self!r}: {exc}") from None
        # Accept the plain strings "read", "ok", ... and store the enum members.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "outcome", outcome)
        if outcome is Outcome.INFO:
            if self.complete_ms is not None:
                raise HistoryError(f"an info op has no completion time: {self!r}")
        elif self.complete_ms is None:
            raise HistoryError(f"an {outcome} op needs a completion time: {self!r}")
        elif self.complete_ms < self.invoke_ms:
            raise HistoryError(f"op completes before it is invoked: {self!r}")
        if kind is not OpKind.CAS and self.expected is not None:
            raise HistoryError(f"only a cas has an expected value: {self!r}")
        if kind is OpKind.DELETE and self.value is not None:
            raise HistoryError(f"a delete carries no value: {self!r}")

    def describe(self) -> str:
        """A one-line human-readable form, e.g. `read -> 'a' by p2 ok [30, 35]`."""
        if self.kind is OpKind.READ:
            call = f"read -> {self.value!r}" if self.outcome is Outcome.OK else "read"
        elif self.kind is OpKind.WRITE:
            call = f"write {self.value!r}"
        elif self.kind is OpKind.CAS:
            call = f"cas {self.expected!r} -> {self.value!r}"
        else:
            call = "delete"
        end = "inf)" if self.complete_ms is None else f"{self.complete_ms:g}]"
        return f"{call} by {self.process} {self.outcome} [{self.invoke_ms:g}, {end}"


class _NoValue:
    """Marks "no observed value given", since None is a legitimate observation (absent)."""


_NO_VALUE: Final = _NoValue()


@dataclass(frozen=True, slots=True)
class _Invocation:
    process: Hashable
    key: Hashable
    kind: OpKind
    invoke_ms: float
    value: Hashable
    expected: Hashable


class HistoryRecorder:
    """Builds a history from invoke/complete event pairs, as a simulator or harness sees them.

    `invoke` returns an op id; complete it with `ok`, `fail` or `info`. Ops still pending when
    `history()` is called become info (the client never learned the outcome). Op ids are the
    ops' positions in `history()`, which is also how the checker's explanations name them.
    """

    def __init__(self, max_ops: int = MAX_RECORDED_OPS) -> None:
        self._max_ops = max_ops
        self._invocations: list[_Invocation] = []
        self._completed: dict[int, Op] = {}

    def __len__(self) -> int:
        return len(self._invocations)

    def invoke(
        self,
        process: Hashable,
        key: Hashable,
        kind: OpKind | str,
        at_ms: float,
        *,
        value: Hashable = None,
        expected: Hashable = None,
    ) -> int:
        """Record a call; `value` is a write's value or a cas's new value. Returns the op id."""
        if len(self._invocations) >= self._max_ops:
            raise HistoryError(f"history limit reached: {self._max_ops} ops already recorded")
        try:
            op_kind = OpKind(kind)
        except ValueError:
            raise HistoryError(f"unknown op kind {kind!r}") from None
        if op_kind is OpKind.READ and value is not None:
            raise HistoryError("a read's value is what it observes: pass it to ok(), not invoke()")
        # Validate the arguments now, where the harness bug is, not at history() time.
        Op(process, key, op_kind, at_ms, None, Outcome.INFO, value, expected)
        self._invocations.append(_Invocation(process, key, op_kind, at_ms, value, expected))
        return len(self._invocations) - 1

    def ok(self, op_id: int, at_ms: float, *, value: Hashable | _NoValue = _NO_VALUE) -> None:
        """The call succeeded; a read passes the value it observed (None: the key was absent)."""
        inv = self._pending(op_id)
        if inv.kind is OpKind.READ and isinstance(value, _NoValue):
            raise HistoryError(f"op {op_id}: a successful read must report the value it saw")
        if inv.kind is not OpKind.READ and not isinstance(value, _NoValue):
            raise HistoryError(f"op {op_id}: only a read reports an observed value")
        self._completed[op_id] = _completion(inv, at_ms, Outcome.OK, value)

    def fail(self, op_id: int, at_ms: float) -> None:
        """The call definitely did not take effect (e.g. a cas whose precondition failed)."""
        self._completed[op_id] = _completion(self._pending(op_id), at_ms, Outcome.FAIL)

    def info(self, op_id: int) -> None:
        """The outcome is unknown (timeout, crash): it may take effect later, or never."""
        self._completed[op_id] = _completion(self._pending(op_id), None, Outcome.INFO)

    def history(self) -> list[Op]:
        """All ops in invocation order; pending ones as info."""
        return [
            self._completed[op_id]
            if op_id in self._completed
            else _completion(inv, None, Outcome.INFO)
            for op_id, inv in enumerate(self._invocations)
        ]

    def _pending(self, op_id: int) -> _Invocation:
        if not 0 <= op_id < len(self._invocations):
            raise HistoryError(f"unknown op id {op_id}")
        if op_id in self._completed:
            raise HistoryError(f"op {op_id} was already completed: {self._completed[op_id]!r}")
        return self._invocations[op_id]


def _completion(
    inv: _Invocation,
    at_ms: float | None,
    outcome: Outcome,
    observed: Hashable | _NoValue = _NO_VALUE,
) -> Op:
    value = inv.value
    if inv.kind is OpKind.READ:
        # Only a successful read observed something.
        value = None if isinstance(observed, _NoValue) else observed
    return Op(inv.process, inv.key, inv.kind, inv.invoke_ms, at_ms, outcome, value, inv.expected)
