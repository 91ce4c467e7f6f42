"""The client operations a node coordinates on consistent buckets: a node's half of every GET,
PUT and DELETE of a consistent bucket sent to it (see `ensembles` for the members it hosts).

An operation goes to a local member of the key's group if there is one (it knows the leader),
else to the group's primaries, the leader this node last heard of first; see `ensemble_ops` for
retries and timeouts. A node that left a call unanswered is asked last for SUSPECT_MS, and a
write whose call went unanswered is answered "unavailable" (it may or may not have been applied)
rather than asked again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from mypy_extensions import trait

from sapwood.core.consensus import Get, NotLeader, Result, Unavailable
from sapwood.core.effects import Effect, Reply, Send, SetTimer
from sapwood.core.ensemble_groups import RingView, group_id, member_node, members_under
from sapwood.core.ensemble_members import Call, CallKind, HostCounters, Hosted
from sapwood.core.ensemble_messages import OPS_TIMER, ConsistentCommand, EnsembleCall
from sapwood.core.ensemble_objects import ConsistentRequest
from sapwood.core.ensemble_ops import (
    CALL_TIMEOUT_MS,
    MAX_ATTEMPTS,
    MAX_OPEN_OPS,
    ConsistentOp,
    Final,
    OpPhase,
    judge,
    minority_refusal,
    new_op,
    timed_out,
    unavailable,
)
from sapwood.core.ensemble_wakes import OpWakes
from sapwood.core.errors import Unavailable as UnavailableError
from sapwood.core.ring import Ring

SUSPECT_MS = 3_000  # a node that left a call unanswered is asked last for this long
MAX_OPEN_CALLS = 20_000  # replica requests awaiting their answer on one node


# A trait: mypyc compiles a class with several bases only when all but one are traits.
@trait
class OpCoordinator:
    """The client-operation half of `EnsembleHost` (a mixin: the host owns the state used here)."""

    node: str
    ring: RingView
    is_up: Callable[[str], bool]
    now_ms: int
    _hash_ring: Ring
    _by_group: dict[str, list[Hosted]]
    _members: dict[str, tuple[tuple[str, ...], list[str]]]
    _members_ring: RingView | None
    ops: dict[int, ConsistentOp]
    calls: dict[int, Call]
    leaders: dict[str, str]
    suspects: dict[str, int]
    counters: HostCounters
    _call_ids: Iterator[int]
    _queue: deque[tuple[Hosted, list[Any]]]
    _wakes: OpWakes
    _out: list[Effect]

    # --- provided by the host -----------------------------------------------------------------

    def _ensure(self, group: str, member: str) -> Hosted | None:
        raise NotImplementedError

    # --- client operations --------------------------------------------------------------------

    def _new_op(self, req_id: int, request: ConsistentRequest, n_val: int) -> ConsistentOp:
        if len(self.ops) >= MAX_OPEN_OPS:
            raise UnavailableError(f"too many consistent operations in flight on {self.node} "
                                   f"(limit MAX_OPEN_OPS={MAX_OPEN_OPS})")
        group = group_id(self._hash_ring.first_partition(request.bkey), n_val)
        return new_op(req_id, request, group, self.now_ms)

    def _quorum_refusal(self, op: ConsistentOp) -> UnavailableError | None:
        """Refuse at once when this node sees most of the group's nodes down."""
        members = self._group_members(op.group)[0]
        is_up = self.is_up
        reachable = [m for m in members if is_up(member_node(m))]
        if members and len(reachable) == len(members):
            return None  # the usual case: nothing to count
        return minority_refusal(op, members, reachable)

    def _attempt(self, op: ConsistentOp, hint: str | None) -> None:
        """Ask the most promising member, or pause if none is reachable."""
        if op.attempts >= MAX_ATTEMPTS:
            self._end(op, unavailable(op, f"asked {op.attempts} members without an answer "
                                          f"(limit MAX_ATTEMPTS); last: {op.last_problem}"))
            return
        target = self._choose(op, hint)
        hosted = None
        if target is not None and member_node(target) == self.node:
            hosted = self._ensure(op.group, target)
            if hosted is None:
                op.avoid.add(target)
                target = None
        if target is None or len(self.calls) >= MAX_OPEN_CALLS:
            self._pause(op)
            return
        op.attempts += 1
        op.target, op.phase = target, OpPhase.ASKING
        call_id = next(self._call_ids)
        op.call_id = call_id
        self.calls[call_id] = Call(CallKind.CLIENT_OP, op.group, target, req_id=op.req_id,
                                   started_ms=self.now_ms)
        if hosted is not None:
            op.remote = False
            self._call_replica(hosted, call_id, op.command)
        else:
            op.remote = True
            op.call_deadline_ms = self.now_ms + CALL_TIMEOUT_MS
            call = EnsembleCall(call_id, self.node, op.group, target, op.command)
            self._out.append(Send(member_node(target), call))
        # Answers are handled after this (a local member's too), so the timer always goes first.
        self._wake(op)

    def _choose(self, op: ConsistentOp, hint: str | None) -> str | None:
        # The usual case first: the leader this node last heard of, asked straight away.
        first = hint if hint is not None else self.leaders.get(op.group)
        if first is not None and first not in op.avoid and self._reachable(first):
            return first
        local = self._by_group.get(op.group, ())
        candidates = [hint, self.leaders.get(op.group)]
        candidates += [h.replica.leader_id for h in local] + [h.member for h in local]
        primaries = self._group_members(op.group)[1]
        turn = op.attempts % len(primaries)
        candidates += primaries[turn:] + primaries[:turn]
        for member in candidates:
            if member is not None and member not in op.avoid and self._reachable(member):
                return member
        return None

    def _group_members(self, group: str) -> tuple[tuple[str, ...], list[str]]:
        """The group's members under the ring's owners, and those followed by the planned ring's
        (without repeats); cached until the ring changes."""
        if self._members_ring is not self.ring:
            self._members_ring = self.ring
            self._members = {}
        found = self._members.get(group)
        if found is None:
            now = members_under(group, self.ring.owners)
            found = (now, list(dict.fromkeys(now + members_under(group, self.ring.future))))
            self._members[group] = found
        return found

    def _reachable(self, member: str) -> bool:
        node = member_node(member)
        if node == self.node:
            return True
        return self.is_up(node) and self.suspects.get(node, 0) <= self.now_ms

    def _call_replica(self, hosted: Hosted, call_id: int, command: ConsistentCommand) -> None:
        replica = hosted.replica
        if isinstance(command, Get):
            effects = replica.read(call_id, command.key, self.now_ms)
        else:
            effects = replica.propose(call_id, command, self.now_ms)
        self._queue.append((hosted, effects))

    def _pause(self, op: ConsistentOp) -> None:
        op.phase, op.target, op.call_id = OpPhase.PAUSED, None, None
        self._wake(op)

    def _end(self, op: ConsistentOp, answer: Any) -> None:
        self.ops.pop(op.req_id, None)
        if op.call_id is not None:
            self.calls.pop(op.call_id, None)
        op.phase = OpPhase.DONE
        failed = isinstance(answer, UnavailableError)
        self.counters.count("unavailable" if failed else "answered")
        self._wakes.forget(op.req_id)
        self._out.append(Reply(op.req_id, answer))

    def _wake(self, op: ConsistentOp) -> None:
        arm = self._wakes.schedule(op.req_id, op.next_wake_ms(self.now_ms))
        if arm is not None:
            self._out.append(SetTimer(OPS_TIMER, arm))

    def _ops_due(self) -> None:
        for req_id in self._wakes.fired(self.now_ms):
            self._op_timer(req_id)
        arm = self._wakes.rearm()
        if arm is not None:
            self._out.append(SetTimer(OPS_TIMER, arm))

    def _op_timer(self, req_id: int) -> None:
        op = self.ops.get(req_id)
        if op is None:
            return
        now = self.now_ms
        if now >= op.deadline_ms:
            self._end(op, timed_out(op))
        elif op.phase is OpPhase.PAUSED:
            self._attempt(op, None)
        elif op.remote and now >= op.call_deadline_ms and op.target is not None:
            self._call_unanswered(op, op.target)
        else:
            self._wake(op)

    def _call_unanswered(self, op: ConsistentOp, target: str) -> None:
        node = member_node(target)
        self.suspects[node] = self.now_ms + SUSPECT_MS
        if self.leaders.get(op.group) == target:
            del self.leaders[op.group]
        if op.is_write:
            self._end(op, unavailable(op, f"{target} did not answer within {CALL_TIMEOUT_MS} ms; "
                                          "the write may or may not have been applied, read the "
                                          "key to find out"))
            return
        if op.call_id is not None:
            self.calls.pop(op.call_id, None)
        op.avoid.add(target)
        op.last_problem = f"{target} did not answer"
        self._attempt(op, None)

    def _op_answered(self, op: ConsistentOp, call: Call, result: Result) -> None:
        self._note_leader(op.group, call.member, result)
        verdict = judge(op, result)
        if isinstance(verdict, Final):
            self._end(op, verdict.answer)
            return
        op.last_problem = verdict.why
        op.call_id = None
        if verdict.hint is not None and verdict.hint != call.member:
            self._attempt(op, verdict.hint)
        else:
            self._pause(op)

    def _note_leader(self, group: str, member: str, result: Result) -> None:
        if isinstance(result, NotLeader):
            if result.leader_hint is None:
                self.leaders.pop(group, None)
            else:
                self.leaders[group] = result.leader_hint
        elif not isinstance(result, Unavailable):
            self.leaders[group] = member
