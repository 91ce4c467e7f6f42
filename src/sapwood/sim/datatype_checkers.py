"""Checkers of the data type scenario: what must hold of counters, sets and maps after a run.

They judge a history of `DtOp`s (see `sapwood.sim.datatype_scenario`) against the final, quiet
values (the join of every primary replica's state, decoded to plain Python values):

- counters: the final value is one the history allows. Ok increments counted once, info ones
  zero or one times; an update the network delivered twice to its coordinating vnode may count
  once more (counter updates are not idempotent, and the simulated network duplicates what TCP
  would not). With no info and no duplicate the value is exact;
- sets: every acknowledged add is present unless a remove whose fetch observed the element (and
  that was not a certain failure) removed it; nothing is present that no add carried;
- removes: what an acknowledged remove observed is gone, unless its add was applied twice;
- maps: the counter field obeys the counter rule and the set field the set rule, except that a
  field remove which observed the field may drop what it observed (the concurrent updates it did
  not observe survive: update wins over a concurrent remove). A counter field that any remove
  touched is not bounded: a concurrent increment revives its actor's whole total (riak_dt's
  reset-remove), which no history of deltas pins down. The register holds a value some update
  wrote;
- convergence: once quiet, the primaries of each key hold equal states (compared decoded —
  value, causal clock and pending removes — not as bytes);
- storage: every sibling on every replica decodes as the bucket's data type. Siblings may sit on
  disk until the next read or update joins them (sapwood.core.datatypes); clients never see them,
  and how many there were is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sapwood.core.crdt import CorruptDatatype, Counter, Datatype, decode_datatype
from sapwood.core.crdt.dots import CausalCRDT
from sapwood.core.kvobject import KVObject
from sapwood.sim.checkers import Verdict, _details
from sapwood.sim.history import Outcome

COUNTER_FIELD = "hits_counter"
SET_FIELD = "tags_set"
REGISTER_FIELD = "name_register"
FLAG_FIELD = "on_flag"
MAP_FIELDS = (COUNTER_FIELD, SET_FIELD, REGISTER_FIELD, FLAG_FIELD)
# Errors that say the store or the workload is wrong, not that the cluster was unlucky.
BROKEN_ERRORS = ("BadRequest", "Conflict", "PreconditionFailed", "CorruptDatatype", "TooLarge",
                 "AssertionError", "TypeError", "ValueError", "KeyError")


class DtKind(StrEnum):
    INCREMENT = "increment"  # a counter key: add `amount` (negative decrements)
    SET_ADD = "set_add"  # a set key: add the unique `element`
    SET_REMOVE = "set_remove"  # a set key: fetch, then remove some observed elements by context
    MAP_UPDATE = "map_update"  # a map key: update some of its four fields
    MAP_REMOVE = "map_remove"  # a map key: fetch, then remove one present field by context
    FETCH = "fetch"  # any key: read and look


UPDATES = (DtKind.INCREMENT, DtKind.SET_ADD, DtKind.SET_REMOVE, DtKind.MAP_UPDATE,
           DtKind.MAP_REMOVE)


@dataclass(slots=True)
class DtOp:
    """One client operation. Elements, registers and fields are text (what `value()` shows)."""

    op_id: int
    client: int
    kind: DtKind
    key: str
    invoke_ms: int
    node: str = ""
    complete_ms: int | None = None
    outcome: Outcome | None = None  # None while pending
    detail: str = ""
    amount: int = 0  # increment, or a map update's counter field delta (0: field untouched)
    element: str = ""  # set add, or a map update's set field add ("": untouched)
    register: str = ""  # a map update's register value ("": untouched)
    flag: bool | None = None  # a map update's flag op (None: untouched)
    removed: frozenset[str] = frozenset()  # set remove: the elements removed (its fetch saw them)
    field: str = ""  # map remove: the field removed
    observed: frozenset[str] = frozenset()  # map remove of the set field: the elements seen
    wrote: bool = False  # the update was submitted (it may take effect from now on)
    phase: int = 0  # bumped per request, so a late answer to an abandoned request is ignored
    req_id: int = 0  # the world's id of the op's latest request
    deadline_ms: int = 0

    @property
    def effective(self) -> bool:
        """Might have changed something: submitted, and not a certain failure."""
        return self.wrote and self.outcome is not Outcome.FAIL


# --- final values ------------------------------------------------------------------------------


@dataclass
class Finals:
    """Final decoded values by key (a key nobody managed to write is simply absent)."""

    counters: dict[str, int] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)


def state_fingerprint(state: Datatype | None) -> Any:
    """What two equal states share, independent of their encodings."""
    if state is None:
        return None
    if isinstance(state, Counter):
        return ("counter", sorted(state.p.items()), sorted(state.n.items()))
    if isinstance(state, CausalCRDT):
        deferred = sorted((key, sorted(map(repr, paths))) for key, paths in state.deferred.items())
        return (state.type_name, repr(state.value()), sorted(state.clock.items()), deferred)
    return (state.type_name, repr(state.value()))


def replica_state(obj: KVObject | None, datatype: str) -> tuple[Datatype | None, list[str]]:
    """The joined state of one replica's object, and what is wrong with its siblings."""
    if obj is None or obj.is_tombstone:
        return None, []
    problems = []
    state: Datatype | None = None
    for sibling in obj.live_siblings:
        try:
            decoded = decode_datatype(sibling.value)
        except CorruptDatatype as exc:
            problems.append(f"a sibling does not decode: {exc}")
            continue
        if decoded.type_name != datatype:
            problems.append(f"a sibling holds a {decoded.type_name}, not a {datatype}")
            continue
        state = decoded if state is None else state.merge(decoded)
    return state, problems


# --- counters -----------------------------------------------------------------------------------


def counter_range(ops: Iterable[DtOp], duplicated: frozenset[int]) -> tuple[int, int, int]:
    """(lowest, highest) value the ops allow and how many were counted, from each op's `amount`.

    An ok op applied once, or twice if duplicated; an info op zero times, once, or (duplicated)
    twice. A certain failure never.
    """
    low = high = counted = 0
    for op in ops:
        if not op.effective or op.amount == 0:
            continue
        counted += 1
        most = 2 if op.op_id in duplicated else 1
        least = 1 if op.outcome is Outcome.OK else 0
        extremes = (op.amount * least, op.amount * most)
        low += min(extremes)
        high += max(extremes)
    return low, high, counted


def _counter_problem(where: str, value: int, ops: Sequence[DtOp],
                     duplicated: frozenset[int]) -> str:
    low, high, counted = counter_range(ops, duplicated)
    if low <= value <= high:
        return ""
    ok_sum = sum(op.amount for op in ops if op.outcome is Outcome.OK)
    bound = f"exactly {low}" if low == high else f"within [{low}, {high}]"
    return (f"{where} is {value}, but {counted} updates allow {bound} (acknowledged sum "
            f"{ok_sum}): {'increments lost' if value < low else 'increments invented'}")


def check_counters(ops: Sequence[DtOp], finals: Finals, duplicated: frozenset[int]) -> Verdict:
    by_key = _group(ops, (DtKind.INCREMENT,))
    problems = []
    exact = 0
    for key in sorted(by_key.keys() | finals.counters.keys()):
        key_ops = by_key.get(key, [])
        low, high, _ = counter_range(key_ops, duplicated)
        exact += low == high
        problem = _counter_problem(key, finals.counters.get(key, 0), key_ops, duplicated)
        if problem:
            problems.append(problem)
    total = len(by_key.keys() | finals.counters.keys())
    if problems:
        return Verdict("counter-value", False, f"{len(problems)} of {total} counters off",
                       _details(problems))
    return Verdict("counter-value", True,
                   f"{total} counters within their allowed range ({exact} exact)")


# --- sets -------------------------------------------------------------------------------------


def lost_elements(adds: Iterable[DtOp], present: set[str], excused: set[str]) -> list[DtOp]:
    """Acknowledged adds whose element is neither present nor excused by an observing remove."""
    return [op for op in adds if op.outcome is Outcome.OK and op.element
            and op.element not in present and op.element not in excused]


def _describe_loss(where: str, op: DtOp) -> str:
    return (f"{where}: element {op.element!r} added by op {op.op_id} (client {op.client} via "
            f"{op.node}, acknowledged at {op.complete_ms} ms) is gone, and no remove saw it")


def check_sets(ops: Sequence[DtOp], finals: Finals) -> Verdict:
    adds = _group(ops, (DtKind.SET_ADD,))
    excused: dict[str, set[str]] = {}
    for op in ops:
        if op.kind is DtKind.SET_REMOVE and op.effective:
            excused.setdefault(op.key, set()).update(op.removed)
    problems = []
    checked = 0
    for key, key_adds in sorted(adds.items()):
        checked += sum(op.outcome is Outcome.OK for op in key_adds)
        for op in lost_elements(key_adds, finals.sets.get(key, set()), excused.get(key, set())):
            problems.append(_describe_loss(key, op))
    if problems:
        return Verdict("set-adds", False, f"{len(problems)} of {checked} acknowledged adds lost",
                       _details(problems))
    return Verdict("set-adds", True, f"all {checked} acknowledged adds present or observed "
                   "by a remove")


def check_removes(ops: Sequence[DtOp], finals: Finals, duplicated: frozenset[int]) -> Verdict:
    """An acknowledged remove takes out what it observed: elements are unique, so one it saw
    can only come back if the network applied its add twice (a second, unseen dot)."""
    adder = {op.element: op for op in ops
             if op.kind in (DtKind.SET_ADD, DtKind.MAP_UPDATE) and op.element}
    problems = []
    checked = 0
    for op in ops:
        if op.outcome is not Outcome.OK:
            continue
        if op.kind is DtKind.SET_REMOVE:
            where, gone, present = op.key, op.removed, finals.sets.get(op.key, set())
        elif op.kind is DtKind.MAP_REMOVE and op.field == SET_FIELD:
            where, gone = f"{op.key}/{SET_FIELD}", op.observed
            present = set(finals.maps.get(op.key, {}).get(SET_FIELD, ()))
        else:
            continue
        checked += 1
        back = sorted(e for e in gone & present
                      if e not in adder or adder[e].op_id not in duplicated)
        if back:
            problems.append(f"{where}: op {op.op_id} (via {op.node}, acknowledged at "
                            f"{op.complete_ms} ms) removed {back[:5]}, still present")
    if problems:
        return Verdict("dt-removes", False, f"{len(problems)} of {checked} acknowledged removes "
                       "undone", _details(problems))
    return Verdict("dt-removes", True, f"all {checked} acknowledged removes took effect")


# --- maps -------------------------------------------------------------------------------------


def check_maps(ops: Sequence[DtOp], finals: Finals, duplicated: frozenset[int]) -> Verdict:
    updates = _group(ops, (DtKind.MAP_UPDATE,))
    removes = _group(ops, (DtKind.MAP_REMOVE,))
    problems = []
    counters = unbounded = adds = 0
    for key in sorted(updates.keys() | finals.maps.keys()):
        value = finals.maps.get(key, {})
        key_removes = [op for op in removes.get(key, []) if op.effective]
        removed_fields = {op.field for op in key_removes}
        key_updates = updates.get(key, [])
        if COUNTER_FIELD in removed_fields:
            unbounded += 1
        else:
            counters += 1
            problem = _counter_problem(f"{key}/{COUNTER_FIELD}", value.get(COUNTER_FIELD, 0),
                                       key_updates, duplicated)
            if problem:
                problems.append(problem)
        excused: set[str] = set()
        for op in key_removes:
            if op.field == SET_FIELD:
                excused |= op.observed
        present = set(value.get(SET_FIELD, ()))
        adds += sum(op.outcome is Outcome.OK and bool(op.element) for op in key_updates)
        for op in lost_elements(key_updates, present, excused):
            problems.append(_describe_loss(f"{key}/{SET_FIELD}", op))
    if problems:
        return Verdict("map-fields", False, f"{len(problems)} map field violations",
                       _details(problems))
    return Verdict("map-fields", True,
                   f"{counters} counter fields in range ({unbounded} reset by removes, not "
                   f"bounded), all {adds} acknowledged set-field adds present or observed by a "
                   "field remove")


# --- phantoms -----------------------------------------------------------------------------------


@dataclass
class Universe:
    """Everything an update carried, by where it may appear ("s0", "m1/tags_set", ...)."""

    sent: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, ops: Iterable[DtOp]) -> Universe:
        universe = cls()
        for op in ops:
            if op.effective:
                universe.add(op)
        return universe

    def add(self, op: DtOp) -> None:
        if op.kind is DtKind.SET_ADD:
            self.sent.setdefault(op.key, set()).add(op.element)
        elif op.kind is DtKind.MAP_UPDATE:
            if op.element:
                self.sent.setdefault(f"{op.key}/{SET_FIELD}", set()).add(op.element)
            if op.register:
                self.sent.setdefault(f"{op.key}/{REGISTER_FIELD}", set()).add(op.register)

    def discard(self, op: DtOp) -> None:
        """A certain failure carried nothing after all."""
        for where, item in ((op.key, op.element), (f"{op.key}/{SET_FIELD}", op.element),
                            (f"{op.key}/{REGISTER_FIELD}", op.register)):
            if item:
                self.sent.get(where, set()).discard(item)

    def phantoms(self, key: str, datatype: str, value: Any) -> list[str]:
        """What `value` (a `value()` of `key`) holds that no update carried."""
        if datatype == "set":
            return _unknown(key, set(value), self.sent.get(key, set()))
        if datatype != "map":
            return []
        found = _unknown(f"{key}/{SET_FIELD}", set(value.get(SET_FIELD, ())),
                         self.sent.get(f"{key}/{SET_FIELD}", set()))
        register = value.get(REGISTER_FIELD)
        if register is not None:
            found += _unknown(f"{key}/{REGISTER_FIELD}", {register},
                              self.sent.get(f"{key}/{REGISTER_FIELD}", set()))
        unknown_fields = sorted(set(value) - set(MAP_FIELDS))
        if unknown_fields:
            found.append(f"{key}: fields nobody wrote: {unknown_fields[:5]}")
        return found


def _unknown(where: str, items: set[str], sent: set[str]) -> list[str]:
    unknown = sorted(items - sent)
    return [f"{where}: holds {len(unknown)} items nobody wrote: {unknown[:5]}"] if unknown else []


def check_phantoms(ops: Sequence[DtOp], finals: Finals, seen_during_run: Sequence[str]) -> Verdict:
    """Nothing in a final value that no update carried; `seen_during_run`: what fetches saw."""
    universe = Universe.of(ops)
    problems = list(seen_during_run)
    for key, elements in sorted(finals.sets.items()):
        problems += universe.phantoms(key, "set", elements)
    for key, value in sorted(finals.maps.items()):
        problems += universe.phantoms(key, "map", value)
    if problems:
        return Verdict("dt-phantoms", False, f"{len(problems)} phantom observations",
                       _details(problems))
    return Verdict("dt-phantoms", True, f"{len(finals.sets)} sets, {len(finals.maps)} maps and "
                   "every fetch hold only what updates carried")


# --- replicas -------------------------------------------------------------------------------------


def check_convergence(disagreements: Sequence[str], keys: int) -> Verdict:
    if disagreements:
        return Verdict("dt-convergence", False,
                       f"{len(disagreements)} of {keys} keys differ across primaries",
                       _details(disagreements))
    return Verdict("dt-convergence", True, f"all primaries of {keys} keys hold equal states")


def check_storage(problems: Sequence[str], most_siblings: int) -> Verdict:
    if problems:
        return Verdict("dt-storage", False, f"{len(problems)} replicas hold bad siblings",
                       _details(problems))
    return Verdict("dt-storage", True, "every replica's siblings decode as the bucket's type "
                   f"(at most {most_siblings} unjoined on one replica; clients see one state)")


def check_errors(ops: Sequence[DtOp]) -> Verdict:
    """No operation refused for a reason that means the store (or this workload) is broken."""
    broken = [f"op {op.op_id} {op.kind.value} {op.key} via {op.node}: {op.detail}" for op in ops
              if op.outcome is not Outcome.OK and op.detail.startswith(BROKEN_ERRORS)]
    if broken:
        return Verdict("dt-errors", False, f"{len(broken)} operations refused as malformed",
                       _details(broken))
    return Verdict("dt-errors", True, "no operation refused as malformed")


def _group(ops: Iterable[DtOp], kinds: Iterable[DtKind]) -> dict[str, list[DtOp]]:
    wanted = set(kinds)
    out: dict[str, list[DtOp]] = {}
    for op in ops:
        if op.kind in wanted:
            out.setdefault(op.key, []).append(op)
    return out

