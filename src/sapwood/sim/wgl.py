"""The search behind the linearizability checker: Wing & Gong with Lowe's memoisation.

This is Porcupine's entry-list form of the algorithm, for one key's ops. Every ok op becomes
a call entry at its invocation and a return entry at its completion, in one time-ordered
doubly linked list. The search walks the list: a call entry whose op the model accepts in the
current state is linearized (lifted out of the list, with its return entry) and the walk
restarts; reaching a return entry means that op should already have been linearized, so the
search backtracks. Configurations already explored -- (set of linearized ops, model state) --
are cached and never explored again.

Info ops (indeterminate outcome) have no return entry: their completion is +infinity, so
nothing ever waits for them, and the search succeeds once every ok op is linearized; an info
op left over never took effect. They sit in a second list, in invocation order, and are tried
after the ok candidates of each configuration. Since leaving an info op unused only widens the
future, the cache also prunes a configuration when one with the same ok ops and state but a
subset of its info ops was seen -- and trying ok ops first makes the smaller sets come first.

A model may add hints (`HintedModel`) that let the search skip info ops that cannot matter:
one whose resulting state no other op could observe is dropped up front, and of several
interchangeable info ops only the latest-invoked is tried (leaving the earlier, more
flexible ones). Right after an info op a blind overwrite is not tried: the configuration
before that info op (or its run of info ops) tries the same overwrite with a smaller info
set, which the cache would find dominating -- so this only spares the lookup.

Ops whose intervals merely touch (one completes at t, the other is invoked at t) count as
concurrent: that can only accept more histories, never reject a linearizable one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from sapwood.sim.history import Op, Outcome

# Reading the clock on every step would dominate the search (a power of two: used as a mask).
CLOCK_CHECK_EVERY: Final = 1024
# Working out which states are reachable at all (to drop info ops nobody could observe)
# gives up beyond this many; the search is then merely slower.
MAX_REACHABLE_STATES: Final = 10_000
# The memo table grows by a configuration per successful step; past this many (around a
# gigabyte) the search gives up rather than exhaust memory.
MAX_CACHED_CONFIGURATIONS: Final = 4_000_000

StateT = TypeVar("StateT", bound=Hashable)


class Model(Protocol[StateT]):
    """A sequential specification. States must be hashable (they are memoised)."""

    def init(self) -> StateT:
        """The state before any op."""
        ...

    def step(self, state: StateT, op: Op) -> tuple[bool, StateT]:
        """Whether `op` (ok, or info taking effect) may happen in `state`, and the state after."""
        ...


@runtime_checkable
class HintedModel(Model[StateT], Protocol[StateT]):
    """A model that tells the search two facts about ops, which let it skip useless info ops.

    Hints are optional (a plain `Model` is checked correctly, only slower when info ops
    abound), but must be true: a wrong hint can wrongly reject a history.
    """

    def overwrites(self, op: Op) -> bool:
        """True if `op` is legal in every state and the state after it ignores the state
        before it. An info op just before such an op might as well never have taken effect."""
        ...

    def effect(self, op: Op) -> Hashable:
        """Ops with equal effects are interchangeable: the same legality and next state in
        every state. Of several such info ops, trying the latest-invoked one suffices."""
        ...


@dataclass(slots=True)
class SearchResult:
    """`linearizable` is None when the search gave up, and `gave_up` says why. `best_prefix`
    is the longest linearization reached (indices into the ops, in order; the whole one when
    linearizable), `best_ok` the ok ops in it, and `best_state` the model state after it."""

    linearizable: bool | None
    steps: int
    best_prefix: list[int]
    best_state: Any
    best_ok: int = 0
    gave_up: str = ""


def search(
    ops: Sequence[Op], model: Model[Any], deadline: float, clock: Callable[[], float]
) -> SearchResult:
    """Whether one key's ok and info ops have a linearization (fail ops are ignored), until
    `clock()` passes `deadline`."""
    return _Search(ops, model).run(deadline, clock)


class _Search:
    """One search. Entry-list slots: 0 head, 1..E entries, E+1 tail; the same for the info
    list. Lifting and relinking entries is the dancing-links trick, so backtracking
    restores the lists exactly."""

    def __init__(self, ops: Sequence[Op], model: Model[Any]) -> None:
        self.ops = ops
        self.model = model
        ok_ops = [i for i, op in enumerate(ops) if op.outcome is Outcome.OK]
        self.ok_count = len(ok_ops)
        hints = model if isinstance(model, HintedModel) else None
        self.blind = [hints is not None and hints.overwrites(op) for op in ops]
        relevant = _info_ops(ops)
        if hints is not None:
            relevant = _relevant_info_ops(ops, model, self.blind, relevant)
        info_ops = sorted(relevant, key=lambda i: (ops[i].invoke_ms, i))
        # Ok and info ops get separate bit spaces, so the cache can compare info sets alone.
        self.bit = [0] * len(ops)
        for ops_of_a_kind in (ok_ops, info_ops):
            for n, op_index in enumerate(ops_of_a_kind):
                self.bit[op_index] = 1 << n
        self._index_ok_entries(ok_ops)
        self.info_op = [-1, *info_ops, -1]
        # The tail's +inf invocation time ends every scan of the info list.
        self.info_invoke = [0.0, *(ops[i].invoke_ms for i in info_ops), float("inf")]
        self.info_nxt, self.info_prv = _links(len(info_ops))
        # For each info slot, the later-invoked slots of ops with the same effect.
        self.info_twins: list[list[int]] = [[] for _ in self.info_op]
        if hints is not None:
            self._index_info_twins(hints, info_ops)

    def _index_ok_entries(self, ok_ops: Sequence[int]) -> None:
        events = sorted(_entry_events(self.ops, ok_ops))
        size = len(events) + 2
        self.entry_op = [-1] * size
        self.entry_time = [0.0] * size
        self.entry_is_call = [False] * size
        self.entry_return = [-1] * size  # a call entry's return entry
        call_slot: dict[int, int] = {}
        for slot, (at_ms, order, op_index) in enumerate(events, start=1):
            self.entry_op[slot] = op_index
            self.entry_time[slot] = at_ms
            if order == _CALL:
                self.entry_is_call[slot] = True
                call_slot[op_index] = slot
            else:
                self.entry_return[call_slot[op_index]] = slot
        self.nxt, self.prv = _links(len(events))

    def _index_info_twins(self, hints: HintedModel[Any], info_ops: Sequence[int]) -> None:
        slots_by_effect: dict[Hashable, list[int]] = {}
        for slot, op_index in enumerate(info_ops, start=1):
            twins = slots_by_effect.setdefault(hints.effect(self.ops[op_index]), [])
            for twin in twins:
                self.info_twins[twin].append(slot)
            twins.append(slot)

    def run(self, deadline: float, clock: Callable[[], float]) -> SearchResult:
        # One loop over local variables, on purpose: this is the hot path.
        ops, step, bit, blind = self.ops, self.model.step, self.bit, self.blind
        entry_op, entry_is_call, nxt = self.entry_op, self.entry_is_call, self.nxt
        info_op, info_invoke, info_nxt = self.info_op, self.info_invoke, self.info_nxt
        state: Any = self.model.init()
        lin_ok = lin_info = 0
        after_info = False  # right after an info op, blind overwrites are not tried
        remaining = self.ok_count
        # (scanning info ops?, slot, state before, the info scan's time limit)
        stack: list[tuple[bool, int, Any, float]] = []
        # (linearized ok set, state) -> the info sets seen with them
        seen: dict[tuple[int, Any], list[int]] = {}
        best = SearchResult(False, 0, [], state)
        mask = CLOCK_CHECK_EVERY - 1
        steps = 0
        in_info, slot, limit = False, nxt[0], 0.0
        while remaining:
            if steps & mask == 0:
                gave_up = _reason_to_give_up(clock, deadline, len(seen))
                if gave_up:
                    best.linearizable, best.steps, best.gave_up = None, steps, gave_up
                    return best
            steps += 1
            if in_info:
                if info_invoke[slot] > limit:
                    # Every candidate of this configuration was tried: backtrack.
                    if not stack:
                        best.steps = steps
                        return best
                    in_info, slot, state, limit = stack.pop()
                    if in_info:
                        lin_info &= ~bit[info_op[slot]]
                        _relink(info_nxt, self.info_prv, slot)
                        slot = info_nxt[slot]
                    else:
                        lin_ok &= ~bit[entry_op[slot]]
                        remaining += 1
                        self._unlift_ok(slot)
                        slot = nxt[slot]
                    after_info = bool(stack) and stack[-1][0]
                    continue
                op_index = info_op[slot]
                new_ok, new_info = lin_ok, lin_info | bit[op_index]
            elif entry_is_call[slot]:
                op_index = entry_op[slot]
                new_ok, new_info = lin_ok | bit[op_index], lin_info
            else:
                # The first return entry: its op must come by then, so the only other
                # candidates are the info ops invoked by that time.
                in_info, limit, slot = True, self.entry_time[slot], info_nxt[0]
                continue
            if not (after_info and blind[op_index]) and not (
                in_info and self._later_twin_available(slot, limit, lin_info)
            ):
                legal, new_state = step(state, ops[op_index])
                if legal:
                    infos = seen.setdefault((new_ok, new_state), [])
                    if not any(old & new_info == old for old in infos):
                        infos.append(new_info)
                        stack.append((in_info, slot, state, limit))
                        state, lin_ok, lin_info, after_info = new_state, new_ok, new_info, in_info
                        if in_info:
                            _unlink(info_nxt, self.info_prv, slot)
                        else:
                            self._lift_ok(slot)
                            remaining -= 1
                            if self.ok_count - remaining > best.best_ok:
                                best.best_ok = self.ok_count - remaining
                                best.best_prefix = self._linearized(stack)
                                best.best_state = state
                        in_info, slot = False, nxt[0]
                        continue
            slot = info_nxt[slot] if in_info else nxt[slot]
        return SearchResult(True, steps, self._linearized(stack), state, self.ok_count)

    def _lift_ok(self, slot: int) -> None:
        _unlink(self.nxt, self.prv, slot)
        _unlink(self.nxt, self.prv, self.entry_return[slot])

    def _unlift_ok(self, slot: int) -> None:
        _relink(self.nxt, self.prv, self.entry_return[slot])
        _relink(self.nxt, self.prv, slot)

    def _later_twin_available(self, slot: int, limit: float, lin_info: int) -> bool:
        for twin in self.info_twins[slot]:
            if self.info_invoke[twin] > limit:
                return False
            if not lin_info & self.bit[self.info_op[twin]]:
                return True
        return False

    def _linearized(self, stack: Iterable[tuple[bool, int, Any, float]]) -> list[int]:
        return [
            self.info_op[slot] if in_info else self.entry_op[slot] for in_info, slot, _, _ in stack
        ]


def _reason_to_give_up(clock: Callable[[], float], deadline: float, cached: int) -> str:
    if cached > MAX_CACHED_CONFIGURATIONS:
        return f"the memo table is full ({MAX_CACHED_CONFIGURATIONS} configurations)"
    if clock() >= deadline:
        return "the time budget is spent"
    return ""


_CALL: Final = 0
_RETURN: Final = 1


def _entry_events(ops: Sequence[Op], ok_ops: Iterable[int]) -> Iterable[tuple[float, int, int]]:
    # At equal times calls sort before returns: touching intervals count as concurrent.
    for index in ok_ops:
        op = ops[index]
        assert op.complete_ms is not None
        yield (op.invoke_ms, _CALL, index)
        yield (op.complete_ms, _RETURN, index)


def _links(size: int) -> tuple[list[int], list[int]]:
    """Next/previous links of a list of `size` slots between head 0 and tail size+1."""
    return [*range(1, size + 2), size + 1], [0, *range(size + 1)]


def _unlink(nxt: list[int], prv: list[int], slot: int) -> None:
    nxt[prv[slot]] = nxt[slot]
    prv[nxt[slot]] = prv[slot]


def _relink(nxt: list[int], prv: list[int], slot: int) -> None:
    # Valid only in the reverse order of the unlinks: slot's own links are still intact.
    nxt[prv[slot]] = slot
    prv[nxt[slot]] = slot


def _info_ops(ops: Sequence[Op]) -> set[int]:
    return {i for i, op in enumerate(ops) if op.outcome is Outcome.INFO}


def _relevant_info_ops(
    ops: Sequence[Op], model: Model[Any], blind: Sequence[bool], info_ops: set[int]
) -> set[int]:
    """The info ops whose effect some other op could observe.

    An info op matters only if, in some state reachable before it, it is legal and leaves a
    state in which another op that is not a blind overwrite is legal. Otherwise anything
    following it overwrites its effect, so it might as well never have taken effect. Dropping
    one info op can strand another (whose only observer it was), so repeat until stable.
    """
    kept = set(info_ops)
    observers = [j for j, op in enumerate(ops) if not blind[j] and op.outcome is not Outcome.FAIL]
    states: set[Any] | None = None
    if any(not blind[i] for i in kept):
        states = _reachable_states(ops, model, blind)
    # Which op showed that an info op matters; only those shown by a dropped op are rechecked.
    shown_by: dict[int, int] = {}
    to_check = set(kept)
    while to_check:
        dropped = set()
        for i in to_check:
            witness = _observer_of(i, ops, model, blind[i], states, observers, kept)
            if witness is None:
                dropped.add(i)
            else:
                shown_by[i] = witness
        kept -= dropped
        to_check = {i for i in kept if shown_by[i] in dropped}
    return kept


def _observer_of(
    i: int,
    ops: Sequence[Op],
    model: Model[Any],
    is_blind: bool,
    states: set[Any] | None,
    observers: Sequence[int],
    kept: set[int],
) -> int | None:
    """Another op legal right after info op `i` and not blind (-1: cannot tell), or None."""
    if is_blind:
        afters = {model.step(model.init(), ops[i])[1]}
    elif states is None:
        return -1
    else:
        afters = {after for legal, after in (model.step(s, ops[i]) for s in states) if legal}
    for after in afters:
        for j in observers:
            if j == i or not (j in kept or ops[j].outcome is Outcome.OK):
                continue
            if model.step(after, ops[j])[0]:
                return j
    return None


def _reachable_states(
    ops: Sequence[Op], model: Model[Any], blind: Sequence[bool]
) -> set[Any] | None:
    """Every state some sequence of the ops can reach (a superset of those any linearization
    reaches), or None past MAX_REACHABLE_STATES."""
    init = model.init()
    states = {init} | {
        model.step(init, op)[1]
        for j, op in enumerate(ops)
        if blind[j] and op.outcome is not Outcome.FAIL
    }
    stateful = [op for j, op in enumerate(ops) if not blind[j] and op.outcome is not Outcome.FAIL]
    frontier = list(states)
    while frontier:
        state = frontier.pop()
        for op in stateful:
            legal, after = model.step(state, op)
            if legal and after not in states:
                if len(states) >= MAX_REACHABLE_STATES:
                    return None
                states.add(after)
                frontier.append(after)
    return states
