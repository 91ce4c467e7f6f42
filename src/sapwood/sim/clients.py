"""The closed loop every simulated client runs, whatever its operations are.

Each of `config.clients` clients begins an operation, waits for it to complete, pauses (think
time after a success, a backoff after anything else) and begins its next, until the run has
issued `config.ops` operations. Each request of an operation goes to the node
`World.pick_target` chooses and restarts the client's own deadline; an answer to a request the
operation has moved past (an older phase), or to an operation already completed, is dropped. A
periodic tick gives up operations past their deadline: one that was not writing certainly had no
effect (fail), one that was may still take effect (info).

A scenario subclasses `ClientLoop` and keeps what is its own: what an operation is and how it
begins (`_start_op`), how a completion goes into its history (`_complete`), and when an
operation counts as writing (`_is_writing`).

The loop's random draws are part of every seed's trajectory, so their order is fixed: the pause
when an operation is scheduled, the scenario's draws when it begins, the target of each request.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate
from typing import Any, Generic, Protocol, TypeVar

from sapwood.sim import draws
from sapwood.sim.history import Outcome
from sapwood.sim.world import NotRunning, World

TIMEOUT_TICK_MS = 100  # how often the client-side deadlines are checked


@dataclass(frozen=True)
class ClientConfig:
    """How many operations the clients issue and how they pace them (a scenario's config adds
    what its operations are)."""

    ops: int = 5000
    clients: int = 10
    request_timeout_ms: int = 2_000  # the coordinator's own timeout
    client_timeout_ms: int = 4_000  # the client gives up (info for a write) after this
    think_ms: tuple[int, int] = (0, 3)
    backoff_ms: tuple[int, int] = (20, 100)  # after an operation that did not succeed
    live_target_bias: float = 0.9  # how often a client picks a node it believes is up


class ClientOp(Protocol):
    """What the loop reads and writes on a scenario's operation."""

    op_id: int  # unique in the run, numbered in the order operations begin
    client: int
    node: str  # the target of the latest request
    phase: int  # bumped per request, so a late answer to an abandoned request is ignored
    req_id: int  # the world's id of the latest request
    deadline_ms: int  # the client gives the operation up at this time


class RecordedOp(Protocol):
    """An operation recorded as invoked, then completed once: ok, fail or info."""

    op_id: int
    outcome: Outcome | None  # None while pending
    complete_ms: int | None  # None while pending, and for info (it may take effect any time)
    detail: str

    @property
    def kind(self) -> StrEnum: ...


def complete_op(op: RecordedOp, outcome: Outcome, now_ms: int, detail: str = "") -> None:
    if op.outcome is not None:
        raise ValueError(f"op {op.op_id} was already completed ({op.outcome})")
    op.outcome = outcome
    op.complete_ms = None if outcome is Outcome.INFO else now_ms
    op.detail = detail


def outcome_counts(ops: Iterable[RecordedOp]) -> dict[str, dict[str, int]]:
    """Operations by kind and outcome (one still pending counts as info)."""
    by_kind: dict[StrEnum, dict[str, int]] = {}
    for op in ops:
        row = by_kind.get(op.kind)
        if row is None:
            row = by_kind[op.kind] = {o.value: 0 for o in Outcome}
        row[(op.outcome or Outcome.INFO)._value_] += 1
    return {kind.value: row for kind, row in by_kind.items()}


OpT = TypeVar("OpT", bound=ClientOp)
ConfigT = TypeVar("ConfigT", bound=ClientConfig)
KindT = TypeVar("KindT")


class WeightedMix(Generic[KindT]):
    """Operation kinds drawn by weight, one `rng.random()` a draw: what `rng.choices(kinds,
    weights)` draws, without its per-call set-up."""

    def __init__(self, weighted: Iterable[tuple[KindT, int]]) -> None:
        pairs = list(weighted)
        if not pairs or sum(weight for _, weight in pairs) <= 0:
            raise ValueError(f"an operation mix needs a positive total weight: {pairs!r}")
        self.kinds: list[KindT] = [kind for kind, _ in pairs]
        self.cum_weights: list[int] = list(accumulate(weight for _, weight in pairs))

    def draw(self, rng: random.Random) -> KindT:
        total = self.cum_weights[-1] + 0.0
        return self.kinds[bisect(self.cum_weights, rng.random() * total, 0, len(self.kinds) - 1)]


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ClientLoop(Generic[OpT, ConfigT]):
    """Clients issuing `config.ops` operations; `targets` are the nodes they may talk to."""

    def __init__(self, world: World, config: ConfigT, rng: random.Random,
                 targets: list[str]) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.targets = targets
        self.issued = 0  # operations scheduled, begun or not
        self.starting = 0  # operations scheduled to begin (think time) but not begun yet
        self.in_flight: dict[int, OpT] = {}  # begun and not completed, by op id, oldest first
        self.started = False

    @property
    def finished(self) -> bool:
        return (self.started and self.issued >= self.config.ops and not self.in_flight
                and not self.starting)

    def start(self) -> None:
        self.started = True
        for client in range(self.config.clients):
            self._next(client, self.config.think_ms)
        self.world.schedule(TIMEOUT_TICK_MS, self._expire)

    # --- what a scenario says -----------------------------------------------------------------

    def _start_op(self, client: int) -> None:
        """Make `client`'s next operation, `_admit` it and send its first request."""
        raise NotImplementedError

    def _is_completed(self, op: OpT) -> bool:
        raise NotImplementedError

    def _is_writing(self, op: OpT) -> bool:
        """Whether giving `op` up now leaves its effect unknown."""
        raise NotImplementedError

    def _complete(self, op: OpT, outcome: Outcome, detail: str) -> None:
        """Mark `op` completed with `outcome`: in the history, the tally and the world's trace."""
        raise NotImplementedError

    def _abandon(self, op: OpT, outcome: Outcome) -> None:
        """The client gives up `op`'s current request (`outcome`: fail or info), just before the
        op is completed; a history that records requests of their own closes it here."""

    def _on_finished(self) -> None:
        """The last operation has completed, just before the world halts."""

    # --- the loop -----------------------------------------------------------------------------

    def _next(self, client: int, delay_range: tuple[int, int]) -> None:
        if self.issued >= self.config.ops:
            return
        self.issued += 1
        self.starting += 1
        self.world.schedule(draws.randint(self.rng, *delay_range), lambda: self._begin(client))

    def _begin(self, client: int) -> None:
        self.starting -= 1
        self._start_op(client)

    def _admit(self, op: OpT) -> OpT:
        self.in_flight[op.op_id] = op
        return op

    def _pick_node(self) -> str:
        return self.world.pick_target(self.targets, self.rng, self.config.live_target_bias)

    def _request(self, op: OpT, request: Any, then: Callable[[Any], None]) -> None:
        op.phase += 1
        phase = op.phase
        op.node = self._pick_node()
        op.deadline_ms = self.world.now + self.config.client_timeout_ms

        def answer(result: Any) -> None:
            if not self._is_completed(op) and op.phase == phase:
                then(result)

        req_id = self.world.submit(op.node, request, answer)
        if op.phase == phase:  # not already answered and followed by the next request
            op.req_id = req_id

    def _finish(self, op: OpT, outcome: Outcome, detail: str = "") -> None:
        self._complete(op, outcome, detail)
        del self.in_flight[op.op_id]
        pause = self.config.think_ms if outcome is Outcome.OK else self.config.backoff_ms
        self._next(op.client, pause)
        if self.finished:
            self._on_finished()
            self.world.halt()

    def _finish_write(self, op: OpT, result: Any) -> None:
        """An eventually consistent write's answer: one that never reached a node did nothing;
        after any other error the write may still have been stored."""
        if isinstance(result, NotRunning):
            self._finish(op, Outcome.FAIL, describe_error(result))
        elif isinstance(result, Exception):
            self._finish(op, Outcome.INFO, describe_error(result))
        else:
            self._finish(op, Outcome.OK)

    def _expire(self) -> None:
        """The client-side timeout: an abandoned read did nothing, an abandoned write is unknown."""
        now = self.world.now
        for op in [op for op in self.in_flight.values() if op.deadline_ms <= now]:
            outcome = Outcome.INFO if self._is_writing(op) else Outcome.FAIL
            self._abandon(op, outcome)
            self._finish(op, outcome, "client timeout")
        if not self.finished:
            self.world.schedule(TIMEOUT_TICK_MS, self._expire)
