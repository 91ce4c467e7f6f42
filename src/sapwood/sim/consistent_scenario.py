"""The consistent scenario: compare-and-set registers on a strongly consistent bucket type.

Clients work a handful of keys of `sim_consistent` ({"consistent": true, "n_val": 3}):

- read: a consistent read;
- create: a write without context, which may only succeed while the key is absent;
- cas: read, then write with the read's context (compare-and-set on the version read);
- cas_delete: read, then delete with the read's context (compare-and-delete);
- delete: a delete without context (unconditional).

Every value is unique to the operation that wrote it, so a version read names its value and the
register can be checked on values: a cas expects the value its read returned (None: absent).
Every call goes into a `HistoryRecorder` — the reads of a cas too, as reads of their own — and is
judged by the linearizability checker, key by key.

Outcomes: an answer is ok; a refusal that certainly did not apply (precondition failed, not
found, a node that was not running, a read that failed) is fail; a write whose fate is unknown (a
503, which may follow a proposal that commits later; a crash; the client's timeout) is info.

Liveness: from the heal (the moment the last client operation ends, when the runner quiesces the
faults) every key must serve a consistent read and then a write within `LIVENESS_BOUND_MS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sapwood.core.errors import NotFound, PreconditionFailed
from sapwood.core.errors import Unavailable as UnavailableError
from sapwood.core.requests import DeleteRequest, GetRequest, GetResult, PutRequest
from sapwood.core.ring import BKey
from sapwood.sim import draws, linearizability
from sapwood.sim.checkers import Verdict, _details
from sapwood.sim.clients import ClientConfig, ClientLoop, WeightedMix, describe_error
from sapwood.sim.history import HistoryRecorder, OpKind, Outcome
from sapwood.sim.scenario import N_VAL, ClientLoopScenario, JudgeContext, ScenarioConfig, ScenarioSpec
from sapwood.sim.world import NotRunning, World

CONSISTENT_TYPE = "sim_consistent"
BUCKET = "c"
LIVENESS_BOUND_MS = 30_000  # from the heal, every key serves a read and a write within this
PROBE_RETRY_MS = 200
PROBE_TIMEOUT_MS = 5_000
# The coordinator's refusal, at submission, when most of a group's nodes look down
# (`ensemble_ops.minority_refusal`): nothing was proposed. Any other 503 may follow a proposal.
MINORITY_REFUSAL = "this node can reach; a majority"
KEY_BUDGET_S = 20.0  # the checker's search budget per key (real seconds)
TOTAL_BUDGET_S = 120.0


class CallKind(StrEnum):
    READ = "read"
    CREATE = "create"
    CAS = "cas"
    CAS_DELETE = "cas_delete"
    DELETE = "delete"


@dataclass(frozen=True)
class ConsistentConfig(ClientConfig):
    keys: int = 6
    mix: tuple[tuple[CallKind, int], ...] = (
        (CallKind.READ, 30), (CallKind.CREATE, 10), (CallKind.CAS, 45),
        (CallKind.CAS_DELETE, 8), (CallKind.DELETE, 7),
    )
    # A consensus round takes longer than a quorum write: longer deadlines and pauses.
    request_timeout_ms: int = 3_000
    client_timeout_ms: int = 5_000
    think_ms: tuple[int, int] = (0, 5)
    backoff_ms: tuple[int, int] = (50, 250)


@dataclass(slots=True)
class Call:
    """One client operation in flight: its current request and, once sent, its history op."""

    op_id: int  # the call's number, in the order calls begin (not its history op)
    client: int
    kind: CallKind
    key: BKey
    value: str  # unique to this operation
    phase: int = 0  # bumped per request, so a late answer to an abandoned request is ignored
    req_id: int = 0  # the world's id of the latest request
    history_id: int | None = None  # the recorded op of the current request
    writing: bool = False  # the current request is a write (its fate may be unknown)
    deadline_ms: int = 0
    node: str = ""
    done: bool = False


@dataclass
class Tally:
    """Operations by kind and outcome, and answers no correct run gives."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)

    def add(self, kind: str, outcome: Outcome) -> None:
        row = self.counts.setdefault(kind, {o.value: 0 for o in Outcome})
        row[outcome.value] += 1


class ConsistentWorkload(ClientLoop[Call, ConsistentConfig]):
    """Clients issuing `config.ops` operations on consistent keys through `targets`."""

    def __init__(self, world: World, config: ConsistentConfig, rng: random.Random,
                 targets: list[str]) -> None:
        super().__init__(world, config, rng, targets)
        self.recorder = HistoryRecorder()
        self.tally = Tally()
        self.keys = [BKey(CONSISTENT_TYPE, BUCKET, f"r{i}") for i in range(config.keys)]
        self._mix = WeightedMix(config.mix)
        self._begun = 0
        self.finished_at: int | None = None
        self.on_finished: Callable[[], None] | None = None

    # --- the client loop's operations ---------------------------------------------------------

    def _start_op(self, client: int) -> None:
        kind = self._mix.draw(self.rng)
        call = Call(self._begun, client, kind, draws.choice(self.rng, self.keys),
                    f"v{self.issued}c{client}")
        self._begun += 1
        self._admit(call)
        if kind is CallKind.CREATE:
            self._write(call, expected=None, context={})
        elif kind is CallKind.DELETE:
            self._delete(call, context=None)
        else:
            self._read(call)

    def _is_completed(self, call: Call) -> bool:
        return call.done

    def _is_writing(self, call: Call) -> bool:
        return call.writing

    def _complete(self, call: Call, outcome: Outcome, detail: str) -> None:
        call.done = True
        self.tally.add(call.kind.value, outcome)
        self.world.record("cop", call.kind.value, call.key.key, outcome.value)

    def _abandon(self, call: Call, outcome: Outcome) -> None:
        assert call.history_id is not None
        if outcome is Outcome.INFO:
            self.recorder.info(call.history_id)
        else:
            self.recorder.fail(call.history_id, self.world.now)

    def _on_finished(self) -> None:
        self.finished_at = self.world.now
        if self.on_finished is not None:
            self.on_finished()

    # --- reads and writes ---------------------------------------------------------------------

    def _read(self, call: Call) -> None:
        call.writing = False
        call.history_id = self.recorder.invoke(call.client, call.key.key, OpKind.READ,
                                               self.world.now)
        request = GetRequest(call.key, timeout_ms=self.config.request_timeout_ms)
        self._request(call, request, lambda result: self._after_read(call, result))

    def _after_read(self, call: Call, result: Any) -> None:
        assert call.history_id is not None
        if isinstance(result, Exception):
            self.recorder.fail(call.history_id, self.world.now)
            self._note_unexpected(call, result)
            self._finish(call, Outcome.FAIL)
            return
        assert isinstance(result, GetResult)
        value = observed_value(result)
        self.recorder.ok(call.history_id, self.world.now, value=value)
        context = dict(result.obj.clock) if result.obj is not None else {}
        if call.kind is CallKind.READ:
            self._finish(call, Outcome.OK)
        elif call.kind is CallKind.CAS:
            self._write(call, expected=value, context=context)
        elif value is None:  # compare-and-delete of nothing: nothing to do
            self._finish(call, Outcome.OK)
        else:
            self._delete(call, context=context, expected=value)

    def _write(self, call: Call, expected: str | None, context: dict[bytes, int]) -> None:
        call.writing = True
        call.history_id = self.recorder.invoke(call.client, call.key.key, OpKind.CAS,
                                               self.world.now, value=call.value,
                                               expected=expected)
        request = PutRequest(call.key, call.value.encode(), context=context,
                             timeout_ms=self.config.request_timeout_ms)
        self._request(call, request, lambda result: self._after_write(call, result))

    def _delete(self, call: Call, context: dict[bytes, int] | None,
                expected: str | None = None) -> None:
        call.writing = True
        if context is None:
            call.history_id = self.recorder.invoke(call.client, call.key.key, OpKind.DELETE,
                                                   self.world.now)
        else:  # compare-and-delete: a cas to absent
            call.history_id = self.recorder.invoke(call.client, call.key.key, OpKind.CAS,
                                                   self.world.now, value=None,
                                                   expected=expected)
        request = DeleteRequest(call.key, context=context,
                                timeout_ms=self.config.request_timeout_ms)
        self._request(call, request, lambda result: self._after_write(call, result))

    def _after_write(self, call: Call, result: Any) -> None:
        assert call.history_id is not None
        outcome = write_outcome(result)
        if outcome is Outcome.OK:
            self.recorder.ok(call.history_id, self.world.now)
        elif outcome is Outcome.FAIL:
            self.recorder.fail(call.history_id, self.world.now)
        else:
            self.recorder.info(call.history_id)
        if isinstance(result, Exception):
            self._note_unexpected(call, result)
        self._finish(call, outcome)

    def _note_unexpected(self, call: Call, error: Exception) -> None:
        expected = (NotRunning, ConnectionError, UnavailableError, PreconditionFailed, NotFound)
        if not isinstance(error, expected):
            self.tally.unexpected.append(
                f"{call.kind} of {call.key.key} via {call.node}: {describe_error(error)}")


def observed_value(result: GetResult) -> str | None:
    """The value a consistent read saw (None: absent); a consistent object has one sibling."""
    obj = result.obj
    if obj is None or obj.is_tombstone:
        return None
    if len(obj.siblings) != 1:
        return f"<{len(obj.siblings)} siblings>"  # never a written value: the checker objects
    return obj.siblings[0].value.decode()


def write_outcome(result: Any) -> Outcome:
    """What a write's answer tells about its effect."""
    if not isinstance(result, Exception):
        return Outcome.OK
    if isinstance(result, NotRunning | PreconditionFailed | NotFound):
        return Outcome.FAIL  # never reached a node, or refused by the group: no effect
    if isinstance(result, UnavailableError) and MINORITY_REFUSAL in result.message:
        return Outcome.FAIL  # refused by the coordinator before any member was asked
    # A 503 may follow a proposal that reached a leader and commits later; a crash, likewise.
    return Outcome.INFO


class LivenessProbe:
    """After the heal, each key must serve a consistent read and then a write (cas on what the
    read saw), retried until they succeed; both are recorded in the history like any call."""

    def __init__(self, workload: ConsistentWorkload, members: list[str]) -> None:
        self.workload = workload
        self.world = workload.world
        self.members = members
        self.started_at: int | None = None
        self.latency: dict[str, int | None] = {k.key: None for k in workload.keys}
        self.last_error: dict[str, str] = {}
        self._seq = 0

    @property
    def done(self) -> bool:
        return all(v is not None for v in self.latency.values())

    def start(self) -> None:
        if self.started_at is not None:
            return
        self.started_at = self.world.now
        for key in self.workload.keys:
            self._read(key)

    def _node(self) -> str:
        serving = [n for n in self.members if self.world.is_running(n)] or self.members
        return self.workload.rng.choice(serving)

    def _in_time(self) -> bool:
        assert self.started_at is not None
        return self.world.now - self.started_at <= LIVENESS_BOUND_MS

    def _retry(self, key: BKey, error: Any) -> None:
        self.last_error[key.key] = describe_error(error)
        if self._in_time():
            self.world.schedule(PROBE_RETRY_MS, lambda: self._read(key))

    def _read(self, key: BKey) -> None:
        recorder = self.workload.recorder
        op = recorder.invoke("probe", key.key, OpKind.READ, self.world.now)

        def answer(result: Any) -> None:
            if isinstance(result, Exception):
                recorder.fail(op, self.world.now)
                self._retry(key, result)
                return
            value = observed_value(result)
            recorder.ok(op, self.world.now, value=value)
            self._write(key, value, dict(result.obj.clock) if result.obj is not None else {})

        self.world.submit(self._node(), GetRequest(key, timeout_ms=PROBE_TIMEOUT_MS), answer)

    def _write(self, key: BKey, expected: str | None, context: dict[bytes, int]) -> None:
        recorder = self.workload.recorder
        self._seq += 1
        value = f"probe{self._seq}"
        op = recorder.invoke("probe", key.key, OpKind.CAS, self.world.now, value=value,
                             expected=expected)

        def answer(result: Any) -> None:
            outcome = write_outcome(result)
            if outcome is Outcome.OK:
                recorder.ok(op, self.world.now)
                assert self.started_at is not None
                self.latency[key.key] = self.world.now - self.started_at
                return
            if outcome is Outcome.FAIL:
                recorder.fail(op, self.world.now)
            else:
                recorder.info(op)
            self._retry(key, result)

        request = PutRequest(key, value.encode(), context=context, timeout_ms=PROBE_TIMEOUT_MS)
        self.world.submit(self._node(), request, answer)

    def verdict(self) -> Verdict:
        slow = [f"{k}: no read and write within {LIVENESS_BOUND_MS} ms of the heal; last: "
                f"{self.last_error.get(k, 'no answer')}"
                for k, v in sorted(self.latency.items()) if v is None]
        if slow:
            return Verdict("consistent-liveness", False,
                           f"{len(slow)} of {len(self.latency)} keys unavailable after the heal",
                           _details(slow))
        worst = max((v for v in self.latency.values() if v is not None), default=0)
        return Verdict("consistent-liveness", True,
                       f"every key read and written within {worst} ms of the heal")


class ConsistentScenario(ClientLoopScenario[ConsistentWorkload]):
    def __init__(self, world: World, config: ScenarioConfig | ConsistentConfig,
                 rng: random.Random, targets: list[str]) -> None:
        workload_config = (config if isinstance(config, ConsistentConfig)
                           else ConsistentConfig(ops=config.ops, clients=config.clients))
        self.workload = ConsistentWorkload(world, workload_config, rng, targets)
        self.probe = LivenessProbe(self.workload, targets)
        # Probe from the heal: the runner quiesces the faults right after the last op ends.
        self.workload.on_finished = lambda: world.schedule(1, self.probe.start)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.workload.tally.counts

    def final_keys(self) -> list[BKey]:
        return []  # r=all reads are for eventually consistent keys

    def judge(self, ctx: JudgeContext) -> list[Verdict]:
        probe = self.probe
        probe.start()
        assert probe.started_at is not None
        remaining = LIVENESS_BOUND_MS + PROBE_TIMEOUT_MS - (ctx.world.now - probe.started_at)
        if not probe.done and remaining > 0:
            ctx.world.run_until(lambda: probe.done, remaining)
        return [
            check_linearizable(self.workload.recorder),
            probe.verdict(),
            check_answers(self.workload.tally),
        ]


def check_linearizable(recorder: HistoryRecorder, key_budget_s: float = KEY_BUDGET_S,
                       total_budget_s: float = TOTAL_BUDGET_S) -> Verdict:
    history = recorder.history()
    result = linearizability.check(history, budget_s=key_budget_s, total_budget_s=total_budget_s)
    ops = len(history)
    if result.verdict is linearizability.Verdict.OK:
        return Verdict("linearizable", True, f"{ops} ops on {len(result.keys)} keys linearizable")
    if result.verdict is linearizability.Verdict.UNKNOWN:
        keys: list[Hashable] = result.unknown_keys
        return Verdict("linearizable", False,
                       f"unknown: the search budget ran out on {len(keys)} keys ({ops} ops)",
                       tuple(result.explain().splitlines()))
    return Verdict("linearizable", False,
                   f"not linearizable: {len(result.illegal_keys)} keys ({ops} ops)",
                   tuple(result.explain().splitlines()))


def check_answers(tally: Tally) -> Verdict:
    if tally.unexpected:
        return Verdict("consistent-answers", False,
                       f"{len(tally.unexpected)} answers no consistent bucket should give",
                       _details(tally.unexpected))
    return Verdict("consistent-answers", True, "every answer was a result, 412, 404 or 503")


CONSISTENT = ScenarioSpec(
    name="consistent",
    bucket_types={CONSISTENT_TYPE: {"consistent": True, "n_val": N_VAL}},
    factory=ConsistentScenario,
)
