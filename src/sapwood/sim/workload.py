"""Simulated clients and the history of what they did.

Each client runs a closed loop (`sapwood.sim.clients`) of operations against random live nodes:

- add: read a set-valued key, merge its siblings by union, add a unique element, write it back
  with the read's causal context (allow_mult bucket type `sim_sets`);
- blind: write a one-element set with no context (a new sibling beside whatever is there);
- delete: read, then delete with the read's context (what it removes is what it saw);
- read: read and look at the siblings;
- lww_add: the add cycle on a last_write_wins bucket, where acknowledged adds may be lost;
- list: a coverage query (list keys) over the sets bucket.

Every operation is recorded as invoked, then ok / fail (certainly no effect) / info (unknown). An
element is the id of the operation that added it; a stored value is `"<writer op id>:<elements>"`,
so every sibling names the write that made it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sapwood.core.kvobject import KVObject
from sapwood.core.requests import (
    CoverageRequest,
    CoverageResult,
    DeleteRequest,
    GetRequest,
    GetResult,
    ListKeys,
    PutRequest,
    Quorum,
)
from sapwood.core.ring import BKey
from sapwood.sim import draws
from sapwood.sim.checkers import Observer
from sapwood.sim.clients import (
    ClientConfig,
    ClientLoop,
    WeightedMix,
    complete_op,
    describe_error,
    outcome_counts,
)
from sapwood.sim.history import Outcome
from sapwood.sim.world import World

SETS_TYPE = "sim_sets"
LWW_TYPE = "sim_lww"
BUCKET = "b"
PROBE_BUCKET = "probe"
VALUE_CACHE_ENTRIES = 4096


class OpKind(StrEnum):
    ADD = "add"
    BLIND = "blind"
    DELETE = "delete"
    READ = "read"
    LWW_ADD = "lww_add"
    LIST = "list"


WRITES = (OpKind.ADD, OpKind.BLIND, OpKind.LWW_ADD)


@dataclass(frozen=True)
class WorkloadConfig(ClientConfig):
    set_keys: int = 12
    lww_keys: int = 4
    mix: tuple[tuple[OpKind, int], ...] = (
        (OpKind.ADD, 50), (OpKind.BLIND, 4), (OpKind.DELETE, 3), (OpKind.READ, 20),
        (OpKind.LWW_ADD, 20), (OpKind.LIST, 3),
    )
    # (w, dw) of each write, picked at random; None is the bucket's default (quorum).
    write_quorums: tuple[tuple[Quorum, Quorum], ...] = ((None, None), (2, 2), (1, 1))
    read_quorums: tuple[Quorum, ...] = (None, None, 1)


@dataclass(slots=True)
class OpRecord:
    op_id: int
    client: int
    kind: OpKind
    key: str  # "" for list
    invoke_ms: int
    node: str = ""
    complete_ms: int | None = None
    outcome: Outcome | None = None  # None while pending
    detail: str = ""
    removed: frozenset[int] = frozenset()  # a delete: the elements its read saw
    wrote: bool = False  # the write was submitted (its element may exist from now on)
    phase: int = 0  # bumped per request, so a late answer to an abandoned request is ignored
    req_id: int = 0  # the world's id of the op's latest request
    deadline_ms: int = 0


class History:
    """Operations in invocation order, each completed once."""

    def __init__(self) -> None:
        self.ops: list[OpRecord] = []

    def invoke(self, client: int, kind: OpKind, key: str, now_ms: int) -> OpRecord:
        op = OpRecord(len(self.ops), client, kind, key, now_ms)
        self.ops.append(op)
        return op

    @staticmethod
    def complete(op: OpRecord, outcome: Outcome, now_ms: int, detail: str = "") -> None:
        complete_op(op, outcome, now_ms, detail)

    def counts(self) -> dict[str, dict[str, int]]:
        """Operations by kind and outcome."""
        return outcome_counts(self.ops)


def encode_value(tag: int, elements: Iterable[int]) -> bytes:
    return f"{tag}:{','.join(map(str, sorted(elements)))}".encode()


def extend_value(tag: int, raw: bytes, elements: frozenset[int]) -> bytes:
    """`encode_value(tag, elements | {tag})`, where `raw` is the encoding of `elements` (under
    another tag): a newer writer's tag sorts last, so it only needs appending to `raw`'s list."""
    if not elements:
        return b"%d:%d" % (tag, tag)
    if tag in elements or tag < max(elements):
        return encode_value(tag, elements | {tag})
    return b"%d:%s,%d" % (tag, raw.partition(b":")[2], tag)


def decode_value(raw: bytes) -> tuple[int, frozenset[int]]:
    tag, _, rest = raw.partition(b":")
    return int(tag), frozenset(map(int, rest.split(b","))) if rest else frozenset()


class ValueCache:
    """Decoded values by their bytes: replicas and repeated reads share identical values."""

    def __init__(self, limit: int = VALUE_CACHE_ENTRIES) -> None:
        self.limit = limit
        self._entries: dict[bytes, tuple[int, frozenset[int]]] = {}

    def decode(self, raw: bytes) -> tuple[int, frozenset[int]]:
        found = self._entries.get(raw)
        if found is None:
            found = decode_value(raw)
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[raw] = found
        return found

    def remember(self, raw: bytes, tag: int, elements: frozenset[int]) -> None:
        """A value a client is about to write: its reads will find it decoded."""
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[raw] = (tag, elements)

    def siblings(self, obj: KVObject | None) -> list[tuple[int, frozenset[int]]]:
        return [self.decode(raw) for raw in self.live(obj)]

    @staticmethod
    def live(obj: KVObject | None) -> list[bytes]:
        """The values of the object's siblings that are not deletions."""
        if obj is None:
            return []
        return [s.value for s in obj.siblings if not s.meta.deleted]


class Workload(ClientLoop[OpRecord, WorkloadConfig]):
    """Clients issuing `config.ops` operations; `targets` are the nodes clients may talk to."""

    def __init__(self, world: World, config: WorkloadConfig, rng: random.Random,
                 targets: list[str]) -> None:
        super().__init__(world, config, rng, targets)
        self.history = History()
        self.observer = Observer()
        self.values = ValueCache()
        self.keys_written: set[BKey] = set()
        self._mix = WeightedMix(config.mix)
        self.observer.duplicated = self._duplicated
        self.set_keys = [BKey(SETS_TYPE, BUCKET, f"s{i}") for i in range(config.set_keys)]
        self.lww_keys = [BKey(LWW_TYPE, BUCKET, f"l{i}") for i in range(config.lww_keys)]

    def _duplicated(self, op_id: int) -> bool:
        """Whether the network delivered this write to its coordinating vnode twice."""
        ops = self.history.ops
        return 0 <= op_id < len(ops) and ops[op_id].req_id in self.world.duplicated_puts

    # --- the client loop's operations ---------------------------------------------------------

    def _start_op(self, client: int) -> None:
        kind = self._mix.draw(self.rng)
        key = draws.choice(self.rng, self.lww_keys if kind is OpKind.LWW_ADD else self.set_keys)
        op = self._admit(self.history.invoke(client, kind, "" if kind is OpKind.LIST else key.key,
                                             self.world.now))
        if kind in (OpKind.ADD, OpKind.LWW_ADD, OpKind.DELETE, OpKind.READ):
            r = draws.choice(self.rng, self.config.read_quorums)
            self._request(op, GetRequest(key, r=r, timeout_ms=self.config.request_timeout_ms),
                          lambda result: self._after_read(op, key, result))
        elif kind is OpKind.BLIND:
            elements = frozenset((op.op_id,))
            self._write(op, key, encode_value(op.op_id, elements), elements, {})
        else:
            query = CoverageRequest(ListKeys(SETS_TYPE, BUCKET),
                                    timeout_ms=self.config.request_timeout_ms)
            self._request(op, query, lambda result: self._after_list(op, result))

    def _is_completed(self, op: OpRecord) -> bool:
        return op.outcome is not None

    def _is_writing(self, op: OpRecord) -> bool:
        return op.wrote

    def _complete(self, op: OpRecord, outcome: Outcome, detail: str) -> None:
        History.complete(op, outcome, self.world.now, detail)
        # `_value_`: the same str as `.value`, without the enum property's Python-level lookup
        self.world.record("op", op.op_id, op.kind._value_, op.key, outcome._value_)

    # --- reads and writes ---------------------------------------------------------------------

    def _after_read(self, op: OpRecord, key: BKey, result: Any) -> None:
        if isinstance(result, Exception):
            self._finish(op, Outcome.FAIL, describe_error(result))
            return
        assert isinstance(result, GetResult)
        raws = self.values.live(result.obj)
        siblings = [self.values.decode(raw) for raw in raws]
        if key.type == SETS_TYPE:
            self.observer.observe(key.key, siblings, f"op {op.op_id} read via {op.node}")
        if op.kind is OpKind.READ:
            self._finish(op, Outcome.OK, f"{len(siblings)} siblings")
            return
        elements: set[int] = set()
        for _, values in siblings:
            elements |= values
        context = dict(result.obj.clock) if result.obj is not None else {}
        if op.kind is OpKind.DELETE:
            if not siblings:
                self._finish(op, Outcome.OK, "nothing to delete")
                return
            op.removed = frozenset(elements)
            op.wrote = True
            request = DeleteRequest(key, context=context,
                                    timeout_ms=self.config.request_timeout_ms)
            self._request(op, request, lambda res: self._finish_write(op, res))
            return
        elements.add(op.op_id)
        # The usual read finds one sibling, whose encoded list this write extends.
        value = (extend_value(op.op_id, raws[0], siblings[0][1]) if len(raws) == 1
                 else encode_value(op.op_id, elements))
        self._write(op, key, value, frozenset(elements), context)

    def _write(self, op: OpRecord, key: BKey, value: bytes, elements: frozenset[int],
               context: dict[bytes, int]) -> None:
        """Write `value`, the encoding of `elements` under this op's tag."""
        self.values.remember(value, op.op_id, elements)
        w, dw = draws.choice(self.rng, self.config.write_quorums)
        op.wrote = True
        self.observer.wrote(key.key if key.type == SETS_TYPE else "lww:" + key.key, op.op_id)
        self.keys_written.add(key)
        request = PutRequest(key, value, context=context, w=w, dw=dw,
                             timeout_ms=self.config.request_timeout_ms)
        self._request(op, request, lambda result: self._finish_write(op, result))

    def _after_list(self, op: OpRecord, result: Any) -> None:
        if isinstance(result, Exception):
            self._finish(op, Outcome.FAIL, describe_error(result))
            return
        assert isinstance(result, CoverageResult)
        written = {k.key for k in self.keys_written if k.type == SETS_TYPE}
        self.observer.listed(result.items, written, f"op {op.op_id} list via {op.node}")
        self._finish(op, Outcome.OK, f"{len(result.items)} keys, harvest {result.harvest:.2f}")
