"""The data type scenario: counters, sets and maps updated concurrently through random nodes.

Each client runs a closed loop (`sapwood.sim.clients`) against random live nodes, with random
w/dw/r as the kv workload:

- increment: add a non-zero amount (positive or negative) to a counter key;
- set_add: add a unique element (named after the op) to a set key;
- set_remove: fetch a set key, then remove some elements the fetch saw, with its context;
- map_update: update some fields of a map key — increment `hits_counter`, add a unique element
  to `tags_set`, write `name_register`, enable or disable `on_flag`;
- map_remove: fetch a map key, then remove one field it holds, with the fetch's context;
- fetch: read any key and look at it (nothing may appear that no update carried).

Every operation is recorded as invoked, then ok / fail (certainly no effect) / info (unknown).
Once the run is quiet `sapwood.sim.datatype_checkers` judges the history against the replicas.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sapwood.core.crdt import Datatype, FieldKey, FlagOp, MapOp, Op, RegisterOp, SetOp
from sapwood.core.crdt.ops import CounterOp
from sapwood.core.datatypes import join_state
from sapwood.core.requests import GetRequest, GetResult, Quorum, UpdateRequest
from sapwood.core.ring import BKey
from sapwood.sim import clients, draws
from sapwood.sim import datatype_checkers as dc
from sapwood.sim.checkers import Verdict
from sapwood.sim.datatype_checkers import DtKind, DtOp, Finals, Universe
from sapwood.sim.history import Outcome
from sapwood.sim.scenario import N_VAL, ClientLoopScenario, JudgeContext, ScenarioConfig, ScenarioSpec
from sapwood.sim.world import World

COUNTER_TYPE = "sim_counters"
SET_TYPE = "sim_dt_sets"
MAP_TYPE = "sim_maps"
BUCKET = "d"
DATATYPE_OF = {COUNTER_TYPE: "counter", SET_TYPE: "set", MAP_TYPE: "map"}
MAX_REMOVED_PER_OP = 3  # elements one set_remove takes out
MAX_COUNTER_STEP = 5
MAX_PHANTOM_NOTES = 100  # fetch-time phantom descriptions kept (the verdict quotes a few)


@dataclass(frozen=True)
class DatatypeConfig(clients.ClientConfig):
    keys_per_type: int = 4
    mix: tuple[tuple[DtKind, int], ...] = (
        (DtKind.INCREMENT, 20), (DtKind.SET_ADD, 20), (DtKind.SET_REMOVE, 6),
        (DtKind.MAP_UPDATE, 25), (DtKind.MAP_REMOVE, 4), (DtKind.FETCH, 15),
    )
    # (w, dw) of each update, picked at random; None is the bucket's default (quorum).
    write_quorums: tuple[tuple[Quorum, Quorum], ...] = ((None, None), (2, 2), (1, 1))
    read_quorums: tuple[Quorum, ...] = (None, None, 1)


_TYPE_OF_KIND = {DtKind.INCREMENT: COUNTER_TYPE, DtKind.SET_ADD: SET_TYPE,
                 DtKind.SET_REMOVE: SET_TYPE, DtKind.MAP_UPDATE: MAP_TYPE,
                 DtKind.MAP_REMOVE: MAP_TYPE}
_FIELDS = {name: FieldKey(*name.rsplit("_", 1)) for name in dc.MAP_FIELDS}


class DatatypeWorkload(clients.ClientLoop[DtOp, DatatypeConfig]):
    """Clients issuing `config.ops` operations; `targets` are the nodes clients may talk to."""

    def __init__(self, world: World, config: DatatypeConfig, rng: random.Random,
                 targets: list[str]) -> None:
        super().__init__(world, config, rng, targets)
        self.ops: list[DtOp] = []
        self.universe = Universe()
        self.phantoms: list[str] = []  # seen by fetches during the run
        self.fetches = 0
        self.keys_written: set[BKey] = set()
        self._mix = clients.WeightedMix(config.mix)
        n = config.keys_per_type
        self.keys = {bucket_type: [BKey(bucket_type, BUCKET, f"{DATATYPE_OF[bucket_type][0]}{i}")
                                   for i in range(n)] for bucket_type in DATATYPE_OF}
        self.all_keys = [k for keys in self.keys.values() for k in keys]

    def counts(self) -> dict[str, dict[str, int]]:
        return clients.outcome_counts(self.ops)

    def duplicated(self) -> frozenset[int]:
        """Ops whose update the network delivered twice to the coordinating vnode."""
        dups = self.world.duplicated_puts
        return frozenset(op.op_id for op in self.ops if op.wrote and op.req_id in dups)

    # --- the client loop's operations ---------------------------------------------------------

    def _start_op(self, client: int) -> None:
        kind = self._mix.draw(self.rng)
        bucket_type = _TYPE_OF_KIND.get(kind)
        key = draws.choice(self.rng, self.keys[bucket_type] if bucket_type else self.all_keys)
        op = DtOp(len(self.ops), client, kind, key.key, self.world.now)
        self.ops.append(op)
        self._admit(op)
        if kind in (DtKind.SET_REMOVE, DtKind.MAP_REMOVE, DtKind.FETCH):
            r = draws.choice(self.rng, self.config.read_quorums)
            self._request(op, GetRequest(key, r=r, timeout_ms=self.config.request_timeout_ms),
                          lambda result: self._after_fetch(op, key, result))
        else:
            self._update(op, key, self._blind_op(op), None)

    def _is_completed(self, op: DtOp) -> bool:
        return op.outcome is not None

    def _is_writing(self, op: DtOp) -> bool:
        return op.wrote

    def _complete(self, op: DtOp, outcome: Outcome, detail: str) -> None:
        clients.complete_op(op, outcome, self.world.now, detail)
        if outcome is Outcome.FAIL and op.wrote:
            self.universe.discard(op)
        self.world.record("op", op.op_id, op.kind.value, op.key, outcome.value)

    def _blind_op(self, op: DtOp) -> Op:
        """The op of an update that needs no fetch first (and what it carries, noted in `op`)."""
        if op.kind is DtKind.INCREMENT:
            op.amount = self._amount()
            return CounterOp(op.amount)
        if op.kind is DtKind.SET_ADD:
            op.element = f"e{op.op_id}"
            return SetOp(adds=(op.element.encode(),))
        return self._map_update(op)

    def _amount(self) -> int:
        amount = draws.randint(self.rng, 1, MAX_COUNTER_STEP)
        return amount if self.rng.random() < 0.7 else -amount

    def _map_update(self, op: DtOp) -> MapOp:
        chosen = [name for name in dc.MAP_FIELDS if self.rng.random() < 0.5]
        if not chosen:
            chosen = [draws.choice(self.rng, dc.MAP_FIELDS)]
        updates: list[tuple[FieldKey, Op]] = []
        for name in chosen:
            sub: Op
            if name == dc.COUNTER_FIELD:
                op.amount = self._amount()
                sub = CounterOp(op.amount)
            elif name == dc.SET_FIELD:
                op.element = f"e{op.op_id}"
                sub = SetOp(adds=(op.element.encode(),))
            elif name == dc.REGISTER_FIELD:
                op.register = f"r{op.op_id}"
                sub = RegisterOp(op.register.encode())
            else:
                op.flag = self.rng.random() < 0.6
                sub = FlagOp(op.flag)
            updates.append((_FIELDS[name], sub))
        return MapOp(updates=tuple(updates))

    # --- fetches and updates ------------------------------------------------------------------

    def _after_fetch(self, op: DtOp, key: BKey, result: Any) -> None:
        if isinstance(result, Exception):
            self._finish(op, Outcome.FAIL, clients.describe_error(result))
            return
        assert isinstance(result, GetResult)
        try:
            state = join_state(result.obj) if result.found else None
        except Exception as exc:  # a fetch a client could not read is a broken store
            self._finish(op, Outcome.FAIL, clients.describe_error(exc))
            return
        value: Any = None if state is None else state.value()
        self._observe(op, key, value)
        if op.kind is DtKind.FETCH:
            self._finish(op, Outcome.OK, f"{_size(value)} items")
        elif state is None:
            self._finish(op, Outcome.OK, "nothing to remove")
        elif op.kind is DtKind.SET_REMOVE:
            self._remove_elements(op, key, state, value)
        else:
            self._remove_field(op, key, state, value)

    def _observe(self, op: DtOp, key: BKey, value: Any) -> None:
        self.fetches += 1
        if value is None:
            return
        for problem in self.universe.phantoms(key.key, DATATYPE_OF[key.type], value):
            if len(self.phantoms) < MAX_PHANTOM_NOTES:
                self.phantoms.append(f"op {op.op_id} fetch via {op.node}: {problem}")

    def _remove_elements(self, op: DtOp, key: BKey, state: Datatype, value: list[str]) -> None:
        if not value:
            self._finish(op, Outcome.OK, "nothing to remove")
            return
        count = min(len(value), draws.randint(self.rng, 1, MAX_REMOVED_PER_OP))
        removed = sorted(self.rng.sample(sorted(value), count))
        op.removed = frozenset(removed)
        set_op = SetOp(removes=tuple(e.encode() for e in removed))
        self._update(op, key, set_op, state.context())

    def _remove_field(self, op: DtOp, key: BKey, state: Datatype,
                      value: dict[str, Any]) -> None:
        present = sorted(name for name in value if name in _FIELDS
                         and (name != dc.COUNTER_FIELD or counter_removable(key.key)))
        if not present:
            self._finish(op, Outcome.OK, "nothing to remove")
            return
        op.field = draws.choice(self.rng, present)
        if op.field == dc.SET_FIELD:
            op.observed = frozenset(value[op.field])
        self._update(op, key, MapOp(removes=(_FIELDS[op.field],)), state.context())

    def _update(self, op: DtOp, key: BKey, dt_op: Op, context: bytes | None) -> None:
        w, dw = draws.choice(self.rng, self.config.write_quorums)
        op.wrote = True
        self.universe.add(op)
        self.keys_written.add(key)
        request = UpdateRequest(key, DATATYPE_OF[key.type], dt_op, context or None, w=w, dw=dw,
                                timeout_ms=self.config.request_timeout_ms)
        self._request(op, request, lambda result: self._finish_write(op, result))


def counter_removable(key: str) -> bool:
    """Whether map_remove may take out `key`'s counter field. A removed counter field has no
    bound the history can check (see datatype_checkers), so half the map keys keep theirs."""
    return int(key[1:]) % 2 == 1


def _size(value: Any) -> int:
    if value is None:
        return 0
    return 1 if isinstance(value, int) else len(value)


class DatatypeScenario(ClientLoopScenario[DatatypeWorkload]):
    def __init__(self, world: World, config: ScenarioConfig | DatatypeConfig,
                 rng: random.Random, targets: list[str]) -> None:
        dt_config = (config if isinstance(config, DatatypeConfig)
                     else DatatypeConfig(ops=config.ops, clients=config.clients))
        self.workload = DatatypeWorkload(world, dt_config, rng, targets)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.workload.counts()

    def final_keys(self) -> list[BKey]:
        return sorted(self.workload.keys_written)

    def judge(self, ctx: JudgeContext) -> list[Verdict]:
        workload = self.workload
        finals, disagreements, storage, most = read_finals(ctx, self.final_keys())
        ops = workload.ops
        duplicated = workload.duplicated()
        return [
            dc.check_counters(ops, finals, duplicated),
            dc.check_sets(ops, finals),
            dc.check_maps(ops, finals, duplicated),
            dc.check_removes(ops, finals, duplicated),
            dc.check_phantoms(ops, finals, workload.phantoms),
            dc.check_convergence(disagreements, len(self.final_keys())),
            dc.check_storage(storage, most),
            dc.check_errors(ops),
        ]


def read_finals(ctx: JudgeContext, keys: list[BKey]) -> tuple[Finals, list[str], list[str], int]:
    """(final values, keys whose primaries differ, bad siblings, most siblings on a replica)."""
    finals = Finals()
    disagreements: list[str] = []
    storage: list[str] = []
    most = 0
    for key in keys:
        datatype = DATATYPE_OF[key.type]
        joined: Datatype | None = None
        prints = []
        for node, partition, obj in ctx.replicas(key):
            state, problems = dc.replica_state(obj, datatype)
            storage += [f"{key.key} on {node}/p{partition}: {p}" for p in problems]
            if obj is not None:
                most = max(most, len(obj.live_siblings))
            prints.append((f"{node}/p{partition}", dc.state_fingerprint(state)))
            if state is not None:
                joined = state if joined is None else joined.merge(state)
        if len({repr(p) for _, p in prints}) > 1:
            disagreements.append(f"{key.key}: " + "; ".join(
                f"{where}: {'absent' if p is None else p[:2]}" for where, p in prints))
        if joined is None:
            continue
        value = joined.value()
        if datatype == "counter":
            finals.counters[key.key] = value
        elif datatype == "set":
            finals.sets[key.key] = set(value)
        else:
            finals.maps[key.key] = value
    return finals, disagreements, storage, most


DATATYPES = ScenarioSpec(
    name="datatypes",
    bucket_types={
        bucket_type: {"datatype": datatype, "allow_mult": True, "n_val": N_VAL}
        for bucket_type, datatype in DATATYPE_OF.items()
    },
    factory=DatatypeScenario,
)
