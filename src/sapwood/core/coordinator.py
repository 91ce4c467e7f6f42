"""Get, put and delete coordinators: one request's life, as named states.

A coordinator runs on the node that received the request. It talks to the replicas of the key's
preference list only through messages, so the same code serves one node (all replicas local) and a
cluster (replicas across the network), and the simulator drives it unchanged. One shortcut: a GET
whose replicas are all on this node reads them in one step (`GetCoordinator.read_locally`), with
the same quorum accounting, answer and read repair as its messages would have given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sapwood.core import kvobject
from sapwood.core.effects import Effect, Reply, Send, SetTimer
from sapwood.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    SapwoodError,
    TooLarge,
    Unavailable,
)
from sapwood.core.kvobject import KVObject, Metadata
from sapwood.core.messages import (
    CoordinatePut,
    CoordinatePutReply,
    CoordinateUpdate,
    Fetch,
    FetchReply,
    Reap,
    Replicate,
    StoreAck,
)
from sapwood.core.quorum import GetQuorum, PutQuorum, Verdict
from sapwood.core.records import fast_init
from sapwood.core.requests import DeleteResult, GetResult, PutResult
from sapwood.core.ring import BKey, PreflistEntry

_ERRORS_BY_STATUS: dict[int, type[SapwoodError]] = {
    400: BadRequest, 409: Conflict, 412: PreconditionFailed, 413: TooLarge,
}


@fast_init
@dataclass(frozen=True, slots=True)
class Quorums:
    """A request's quorum values, already resolved to replica counts against n_val."""

    n: int
    r: int = 1
    pr: int = 0
    w: int = 1
    dw: int = 1
    pw: int = 0
    notfound_ok: bool = True
    basic_quorum: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class WriteMode:
    allow_mult: bool
    last_write_wins: bool
    delete_mode: int | str = 3000


class Phase(Enum):
    COLLECTING = "collecting"
    ANSWERED = "answered"  # the client has its answer; still collecting for read repair
    DONE = "done"


# Enum members as module constants: reading a member off an Enum class costs several times a
# global lookup (CPython 3.11), and the phase and verdict checks run on every message.
_COLLECTING, _ANSWERED, _DONE = Phase.COLLECTING, Phase.ANSWERED, Phase.DONE
_V_PENDING, _V_OK, _V_FAILED = Verdict.PENDING, Verdict.OK, Verdict.FAILED


def timer_key(req_id: int) -> tuple[str, int]:
    return ("request", req_id)


class _KeyCoordinator:
    """What every single-key request knows: who asked, for which key, of which replicas."""

    def __init__(
        self, req_id: int, node: str, bkey: BKey, preflist: list[PreflistEntry],
        mode: WriteMode, timeout_ms: int,
    ) -> None:
        self.req_id = req_id
        self.node = node
        self.bkey = bkey
        self.preflist = preflist
        self.mode = mode
        self.timeout_ms = timeout_ms
        self._primary = {e.partition: e.primary for e in preflist}
        self._primaries = sum(self._primary.values())  # summed in C: no generator per request


class GetCoordinator(_KeyCoordinator):
    """Fetch from all N replicas, answer at R, then read-repair the replicas that were behind."""

    def __init__(
        self, req_id: int, node: str, bkey: BKey, preflist: list[PreflistEntry],
        quorums: Quorums, mode: WriteMode, timeout_ms: int,
    ) -> None:
        super().__init__(req_id, node, bkey, preflist, mode, timeout_ms)
        self.phase = _COLLECTING
        self.replies: dict[int, KVObject | None] = {}
        self.quorum = GetQuorum(
            n=quorums.n, r=quorums.r, pr=quorums.pr, notfound_ok=quorums.notfound_ok,
            basic_quorum=quorums.basic_quorum, primaries=self._primaries, asked=len(preflist),
        )
        self._merged: tuple[int, KVObject | None] = (0, None)  # (replies merged, their merge)

    @property
    def done(self) -> bool:
        return self.phase is _DONE

    def start(self, now_ms: int) -> list[Effect]:
        if self.quorum.verdict() is _V_FAILED:
            # Fewer replicas reachable than R (or PR): say so now rather than at the timeout.
            self.phase = _DONE
            return [Reply(self.req_id, Unavailable(self.quorum.reason))]
        effects: list[Effect] = [
            Send(e.node, Fetch(self.req_id, self.node, e.partition, self.bkey)) for e in self.preflist
        ]
        effects.append(SetTimer(timer_key(self.req_id), now_ms + self.timeout_ms))
        return effects

    def merged(self) -> KVObject | None:
        count, result = self._merged
        if count == len(self.replies) and count:
            return result  # replies only grow: the same count is the same replies
        result = None
        for obj in self.replies.values():
            result = kvobject.merge(result, obj, allow_mult=self.mode.allow_mult)
        if result is not None and (not self.mode.allow_mult or self.mode.last_write_wins):
            # One replica's answer, or siblings written before allow_mult was switched off.
            result = kvobject.resolve_newest(result)
        self._merged = (len(self.replies), result)
        return result

    def read_locally(self, read: Callable[[int, BKey], KVObject | None], now_ms: int
                     ) -> list[Effect]:
        """`start` for a preference list that is all on this node: read each replica now, in
        preflist order, and finish in this one step, with no messages and no timer.

        The replies are taken exactly as their FetchReplies would be, and nothing is written
        between the reads, so the answer and the read repairs are those of the message path.
        """
        if self.quorum.verdict() is _V_FAILED:
            self.phase = _DONE
            return [Reply(self.req_id, Unavailable(self.quorum.reason))]
        effects: list[Effect] = []
        for entry in self.preflist:
            effects += self.on_replica(entry.partition, read(entry.partition, self.bkey), None,
                                       now_ms)
        return effects

    def on_message(self, msg: Any, now_ms: int) -> list[Effect]:
        if type(msg) is not FetchReply:
            return []
        return self.on_replica(msg.partition, msg.obj, msg.error, now_ms)

    def on_replica(self, partition: int, obj: KVObject | None, error: str | None, now_ms: int
                   ) -> list[Effect]:
        """One replica's answer: its object (None: not found), or the error it gave."""
        primary = self._primary.get(partition)
        if primary is None or partition in self.replies:
            return []  # not asked, or a duplicate
        if error is None:
            self.replies[partition] = obj
        verdict = self.quorum.add(found=obj is not None, error=error is not None,
                                  primary=primary)
        effects: list[Effect] = []
        if self.phase is _COLLECTING and verdict is not _V_PENDING:
            effects.append(self._answer(verdict))
        if self.quorum.replies >= len(self.preflist):
            effects += self._finish(now_ms)
        return effects

    def _answer(self, verdict: Verdict) -> Reply:
        self.phase = _ANSWERED
        if verdict is _V_FAILED:
            return Reply(self.req_id, Unavailable(self.quorum.reason))
        obj = self.merged() if verdict is _V_OK else None
        return Reply(self.req_id, GetResult(self.bkey, obj))

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        if self.phase is _COLLECTING:
            self.phase = _ANSWERED
            got = self.quorum.found + self.quorum.notfound
            effects.append(Reply(self.req_id, Unavailable(
                f"R-value unsatisfied: {got}/{self.quorum.r} (timeout)")))
        return effects + self._finish(now_ms)

    def _finish(self, now_ms: int) -> list[Effect]:
        """All replies are in (or time is up): repair the replicas that were behind."""
        if self.phase is _DONE:
            return []
        self.phase = _DONE
        merged = self.merged()
        if merged is None:
            return []
        effects: list[Effect] = []
        for partition, obj in self.replies.items():
            if not kvobject.equivalent(obj, merged):
                effects.append(Send(self._node_of(partition), Replicate(
                    -1, "", partition, self.bkey, merged, self.mode.allow_mult)))
        if merged.is_tombstone and not effects and self._all_primaries_replied():
            effects += reap_effects(self.bkey, self.preflist, merged, self.mode.delete_mode)
        return effects

    def _node_of(self, partition: int) -> str:
        # Only read repair needs it: not worth a dict per request.
        return next(e.node for e in self.preflist if e.partition == partition)

    def _all_primaries_replied(self) -> bool:
        primaries = [e.partition for e in self.preflist if e.primary]
        return len(primaries) == self.quorum.n and all(p in self.replies for p in primaries)


def reap_effects(
    bkey: BKey, preflist: list[PreflistEntry], tombstone: KVObject, delete_mode: int | str
) -> list[Effect]:
    """Every primary holds this same tombstone: ask each to remove it (after delete_mode ms)."""
    if delete_mode == "keep":
        return []
    delay = 0 if delete_mode == "immediate" else int(delete_mode)
    clock = dict(tombstone.clock)
    return [Send(e.node, Reap(e.partition, bkey, clock, delay)) for e in preflist if e.primary]


class PutPhase(Enum):
    COORDINATING = "coordinating"  # waiting for the coordinating vnode to mint the new version
    REPLICATING = "replicating"
    DONE = "done"


_PUT_COORDINATING, _PUT_REPLICATING, _PUT_DONE = (
    PutPhase.COORDINATING, PutPhase.REPLICATING, PutPhase.DONE)


class PutCoordinator(_KeyCoordinator):
    """Apply the write at one vnode (which mints the dot), replicate to the rest, count W/DW/PW."""

    def __init__(
        self, req_id: int, node: str, bkey: BKey, preflist: list[PreflistEntry],
        quorums: Quorums, mode: WriteMode, timeout_ms: int,
        value: bytes, meta: Metadata, context: dict[bytes, int], return_body: bool,
        update: CoordinateUpdate | None = None,
    ) -> None:
        super().__init__(req_id, node, bkey, preflist, mode, timeout_ms)
        self.value = value
        self.meta = meta
        self.context = context
        self.return_body = return_body
        self.update = update
        self.phase = _PUT_COORDINATING
        self.obj: KVObject | None = None
        self.quorum = PutQuorum(
            n=quorums.n, w=quorums.w, dw=max(quorums.dw, 1), pw=quorums.pw,
            primaries=self._primaries, asked=len(preflist),
        )
        local = [e for e in preflist if e.node == node]
        candidates = local or preflist
        self.coordinating: PreflistEntry | None = candidates[0] if candidates else None

    @property
    def done(self) -> bool:
        return self.phase is _PUT_DONE

    def start(self, now_ms: int) -> list[Effect]:
        if self.coordinating is None:
            self.phase = _PUT_DONE  # no replica is up to take the write (sim seed 71)
            return [Reply(self.req_id, Unavailable("no replica of this key is up"))]
        early = self.quorum.verdict()
        if early is _V_FAILED:
            self.phase = _PUT_DONE
            return [Reply(self.req_id, Unavailable(self.quorum.reason))]
        c = self.coordinating
        assert c is not None
        msg: CoordinatePut | CoordinateUpdate
        if self.update is not None:
            msg = replace(self.update, partition=c.partition)
        else:
            msg = CoordinatePut(
                self.req_id, self.node, c.partition, self.bkey, self.value, self.meta,
                self.context, self.mode.allow_mult, self.mode.last_write_wins,
            )
        return [Send(c.node, msg), SetTimer(timer_key(self.req_id), now_ms + self.timeout_ms)]

    def on_message(self, msg: Any, now_ms: int) -> list[Effect]:
        if self.phase is _PUT_DONE:
            return []
        if isinstance(msg, CoordinatePutReply) and self.phase is _PUT_COORDINATING:
            return self._on_coordinated(msg)
        if isinstance(msg, StoreAck) and msg.partition in self._primary:
            primary = self._primary[msg.partition]
            if msg.error is not None:
                return self._decide(self.quorum.fail(msg.partition, primary=primary))
            return self._decide(self.quorum.ack(msg.partition, durable=msg.durable, primary=primary))
        return []

    def _on_coordinated(self, msg: CoordinatePutReply) -> list[Effect]:
        if msg.obj is None:
            self.phase = _PUT_DONE
            error_class = _ERRORS_BY_STATUS.get(msg.status, Unavailable)
            return [Reply(self.req_id, error_class(msg.error or "the coordinating vnode failed"))]
        self.obj = msg.obj
        self.phase = _PUT_REPLICATING
        effects: list[Effect] = [
            Send(e.node, Replicate(self.req_id, self.node, e.partition, self.bkey, msg.obj,
                                   self.mode.allow_mult))
            for e in self.preflist if e.partition != msg.partition
        ]
        primary = self._primary[msg.partition]
        verdict = self.quorum.ack(msg.partition, durable=msg.durable, primary=primary)
        return effects + self._decide(verdict)

    def _decide(self, verdict: Verdict) -> list[Effect]:
        if verdict is _V_PENDING:
            return []
        self.phase = _PUT_DONE
        if verdict is _V_FAILED:
            return [Reply(self.req_id, Unavailable(self.quorum.reason))]
        obj = self.obj if self.return_body else None
        return [Reply(self.req_id, PutResult(self.bkey, obj))]

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        if self.phase is _PUT_DONE:
            return []
        self.phase = _PUT_DONE
        return [Reply(self.req_id, Unavailable(self.quorum.timeout_reason()))]


class DeletePhase(Enum):
    READING = "reading"  # no context given: fetch the current version to delete it
    WRITING = "writing"  # putting the tombstone
    CONFIRMING = "confirming"  # answered; checking every primary holds the tombstone, then reap
    DONE = "done"


_DELETE_READING, _DELETE_WRITING, _DELETE_CONFIRMING, _DELETE_DONE = (
    DeletePhase.READING, DeletePhase.WRITING, DeletePhase.CONFIRMING, DeletePhase.DONE)


class DeleteCoordinator:
    """A delete is a put of a tombstone over what the client (or a fresh read) has seen.

    Once it succeeds, a read of all primaries decides whether the tombstone can be reaped.
    """

    def __init__(
        self, req_id: int, node: str, bkey: BKey, preflist: list[PreflistEntry],
        quorums: Quorums, mode: WriteMode, timeout_ms: int, context: dict[bytes, int] | None,
    ) -> None:
        self.req_id = req_id
        self.node = node
        self.bkey = bkey
        self.preflist = preflist
        self.quorums = quorums
        self.mode = mode
        self.timeout_ms = timeout_ms
        self.context = context
        self.phase = _DELETE_READING
        self.inner: GetCoordinator | PutCoordinator | None = None

    @property
    def done(self) -> bool:
        return self.phase is _DELETE_DONE

    def start(self, now_ms: int) -> list[Effect]:
        if self.context is not None:
            return self._write(self.context, now_ms)
        self.inner = GetCoordinator(self.req_id, self.node, self.bkey, self.preflist,
                                    self.quorums, self.mode, self.timeout_ms)
        return self.inner.start(now_ms)

    def _write(self, context: dict[bytes, int], now_ms: int) -> list[Effect]:
        self.phase = _DELETE_WRITING
        tombstone = Metadata(deleted=True)
        # A tombstone must never be resolved away by a concurrent live sibling on allow_mult=false
        # buckets before every replica has it, so it is written like any other value.
        self.inner = PutCoordinator(
            self.req_id, self.node, self.bkey, self.preflist, self.quorums, self.mode,
            self.timeout_ms, b"", tombstone, context, return_body=False,
        )
        return self.inner.start(now_ms)

    def _confirm(self, now_ms: int) -> list[Effect]:
        self.phase = _DELETE_CONFIRMING
        primaries = [e for e in self.preflist if e.primary]
        if len(primaries) < self.quorums.n or self.mode.delete_mode == "keep":
            self.phase = _DELETE_DONE
            return []
        confirm = Quorums(n=self.quorums.n, r=self.quorums.n, notfound_ok=True)
        self.inner = GetCoordinator(self.req_id, self.node, self.bkey, primaries, confirm,
                                    self.mode, self.timeout_ms)
        return self.inner.start(now_ms)

    def _translate(self, effects: list[Effect], now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        for effect in effects:
            if not isinstance(effect, Reply):
                out.append(effect)
            else:
                out += self._on_inner_reply(effect.result, now_ms)
        if self.phase is _DELETE_CONFIRMING and self.inner is not None and self.inner.done:
            self.phase = _DELETE_DONE
        return out

    def _on_inner_reply(self, result: Any, now_ms: int) -> list[Effect]:
        if self.phase is _DELETE_READING:
            if isinstance(result, SapwoodError):
                self.phase = _DELETE_DONE
                return [Reply(self.req_id, result)]
            assert isinstance(result, GetResult)
            if not result.found:
                self.phase = _DELETE_DONE
                return [Reply(self.req_id, NotFound("not found"))]
            assert result.obj is not None
            return self._write(dict(result.obj.clock), now_ms)
        if self.phase is _DELETE_WRITING:
            if isinstance(result, SapwoodError):
                self.phase = _DELETE_DONE
                return [Reply(self.req_id, result)]
            return [Reply(self.req_id, DeleteResult(self.bkey)), *self._confirm(now_ms)]
        return []  # the confirming read's own answer goes nowhere: its repair and reap effects do

    def on_message(self, msg: Any, now_ms: int) -> list[Effect]:
        if self.inner is None or self.phase is _DELETE_DONE:
            return []
        return self._translate(self.inner.on_message(msg, now_ms), now_ms)

    def on_timer(self, key: Any, now_ms: int) -> list[Effect]:
        if self.inner is None or self.phase is _DELETE_DONE:
            return []
        return self._translate(self.inner.on_timer(key, now_ms), now_ms)
