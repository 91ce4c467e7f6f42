"""One client operation on a consistent bucket: which member to ask, when to ask another, and
what the answer means to the client.

A member that is not the leader answers NotLeader (with the leader it knows of, if any): the
operation follows the hint at once, or waits a little (an election may be running) and asks the
next member. It ends with the group's answer, or with 503 when its deadline passes. A write whose
attempt may have reached a leader but was never answered has an unknown fate: it is not retried
(a retried compare-and-set would report a failure for a write that took effect) and ends with a
503 that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sapwood.core.consensus import (
    Absent,
    Get,
    Indeterminate,
    Invalid,
    NotLeader,
    Ok,
    Precondition,
    Result,
    TooLarge,
    Unavailable,
)
from sapwood.core.ensemble_groups import majority
from sapwood.core.ensemble_messages import ConsistentCommand
from sapwood.core.ensemble_objects import (
    ConsistentRequest,
    command_for,
    describe,
    stored_object,
)
from sapwood.core.errors import BadRequest, NotFound, PreconditionFailed, SapwoodError
from sapwood.core.errors import TooLarge as TooLargeError
from sapwood.core.errors import Unavailable as UnavailableError
from sapwood.core.limits import MAX_TIMEOUT_MS
from sapwood.core.requests import DeleteResult, GetRequest, GetResult, PutRequest, PutResult

DEFAULT_CONSISTENT_TIMEOUT_MS = 10_000  # when the request names none
CALL_TIMEOUT_MS = 2_000  # a member on another node that has not answered by then is presumed gone
RETRY_BASE_MS = 50  # first pause before asking again when no leader is known; doubles
RETRY_MAX_MS = 500
MAX_ATTEMPTS = 64  # members asked by one operation, at most
MAX_OPEN_OPS = 10_000  # consistent operations coordinated by one node at once


class OpPhase(Enum):
    ASKING = "asking"  # a member has the command; waiting for its answer
    PAUSED = "paused"  # waiting before asking again
    DONE = "done"


@dataclass(slots=True)
class ConsistentOp:
    req_id: int
    request: ConsistentRequest
    group: str
    command: ConsistentCommand
    deadline_ms: int
    phase: OpPhase = OpPhase.PAUSED
    attempts: int = 0
    target: str | None = None
    call_id: int | None = None
    remote: bool = False
    call_deadline_ms: int = 0
    avoid: set[str] = field(default_factory=set)
    last_problem: str = "no member has answered yet"

    @property
    def is_write(self) -> bool:
        return not isinstance(self.command, Get)

    def next_wake_ms(self, now_ms: int) -> int:
        """When the op's one timer must fire: its deadline, or the end of a call or pause."""
        if self.phase is OpPhase.ASKING and self.remote:
            return min(self.deadline_ms, self.call_deadline_ms)
        if self.phase is OpPhase.PAUSED:
            return min(self.deadline_ms, now_ms + retry_pause_ms(self.attempts))
        return self.deadline_ms


def new_op(req_id: int, request: ConsistentRequest, group: str, now_ms: int) -> ConsistentOp:
    """The operation a request starts; BadRequest for a request consistent buckets refuse."""
    timeout = request.timeout_ms
    if timeout is None:
        timeout = DEFAULT_CONSISTENT_TIMEOUT_MS
    elif not 1 <= timeout <= MAX_TIMEOUT_MS:
        raise BadRequest(f"timeout must be from 1 to {MAX_TIMEOUT_MS} ms")
    return ConsistentOp(req_id, request, group, command_for(request, now_ms), now_ms + timeout)


def retry_pause_ms(attempts: int) -> int:
    return int(min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** min(attempts, 10)))


@dataclass(frozen=True, slots=True)
class Final:
    """The operation is over: `answer` is a result dataclass or a SapwoodError."""

    answer: Any


@dataclass(frozen=True, slots=True)
class Retry:
    """Ask again: `hint` (a member id) when the answer named the leader."""

    hint: str | None
    why: str


def judge(op: ConsistentOp, result: Result) -> Final | Retry:
    """What a member's answer means for the operation."""
    if isinstance(result, NotLeader):
        return Retry(result.leader_hint, f"{op.target} is not the leader")
    if isinstance(result, Unavailable):
        # Refused without effect (no quorum yet, a full queue, superseded): safe to ask again.
        return Retry(None, result.message)
    if isinstance(result, Indeterminate):
        return Final(unavailable(op, f"{result.message}; read the key to find out"))
    return Final(client_answer(op.request, result))


def client_answer(request: ConsistentRequest, result: Result) -> Any:
    """The group's definite answer as the client's result (or error)."""
    if isinstance(result, Precondition):
        return PreconditionFailed(f"consistent bucket: {result.message}")
    if isinstance(result, TooLarge):
        return TooLargeError(result.message)
    if isinstance(result, Invalid):
        return BadRequest(result.message)
    if isinstance(request, GetRequest):
        if isinstance(result, Ok) and result.value is not None:
            return GetResult(request.bkey, stored_object(result.version, result.value))
        return GetResult(request.bkey, None)
    if isinstance(request, PutRequest):
        if isinstance(result, Ok) and result.value is not None:
            obj = stored_object(result.version, result.value) if request.return_body else None
            return PutResult(request.bkey, obj)
        return SapwoodError(f"unexpected answer to a consistent write: {result!r}")
    if isinstance(result, Absent):
        return NotFound("not found")
    return DeleteResult(request.bkey)


def unavailable(op: ConsistentOp, why: str) -> UnavailableError:
    return UnavailableError(f"consistent group {op.group} is unavailable: the {describe(op.command)}"
                            f" failed ({why})")


def minority_refusal(op: ConsistentOp, members: Sequence[str], reachable: Sequence[str]
                     ) -> UnavailableError | None:
    """The refusal when fewer than a majority of the group's members are reachable."""
    need = majority(len(members))
    if len(reachable) >= need:
        return None
    return unavailable(op, f"only {len(reachable)} of its {len(members)} members are on nodes "
                           f"this node can reach; a majority ({need}) is needed")


def timed_out(op: ConsistentOp) -> UnavailableError:
    if op.phase is OpPhase.ASKING and op.is_write:
        return unavailable(op, "no answer before the timeout; the write may or may not have been "
                               "applied, read the key to find out")
    return unavailable(op, f"no leader with a majority answered before the timeout; last: "
                           f"{op.last_problem}")
