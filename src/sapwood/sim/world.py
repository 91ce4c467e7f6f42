"""A seeded, simulated world: production ClusterNodes on virtual time, with faults.

One `random.Random(seed)` decides everything — message delays and losses, timer jitter inside the
cores, which faults strike when — so a run is a pure function of its seed. Each node has its own
clock (offset and drift), a memory backend that loses unsynced writes when the node crashes, and
is driven through exactly the doors the asyncio node uses.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
from mypy_extensions import mypyc_attr

from sapwood.core import membership as ms
from sapwood.core.claim import claim
from sapwood.core.cluster import STATE_KEY, AdminRequest, ClusterConfig, ClusterNode, load_state
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.membership import ClusterState, Member, Status
from sapwood.core.messages import CoordinatePut, CoordinateUpdate
from sapwood.core.requests import Request
from sapwood.sim import draws
from sapwood.sim.disk import SimBackend
from sapwood.sim.network import LOST, Network, NetworkConfig

FLUSH_DELAY_MS = (1, 3)  # how long a group commit (fsync) takes, uniform
MAX_EVENTS = 50_000_000  # a run that needs more is looping
TRACE_CHUNK = 4096  # trace entries hashed at a time
CLOCK_BASE_MS = 1_000_000  # node clocks start here, so a negative skew stays positive

Callback = Callable[[Any], None]


# Not native classes under mypyc (which cannot subclass ConnectionError natively): still plain
# exceptions to every caller.
@mypyc_attr(native_class=False)
class NotRunning(ConnectionError):
    """The request never reached a node (it was down or paused): it certainly did nothing."""


@mypyc_attr(native_class=False)
class LostInCrash(ConnectionError):
    """The node crashed with the request in flight: it may or may not have taken effect."""


@dataclass(slots=True)
class SimNode:
    """One node of the world; its `core` and `paused` change only through the World's methods
    (which keep the World's cached view of who is up in step)."""

    name: str
    backend: SimBackend
    core: ClusterNode | None
    incarnation: int = 1
    offset_ms: int = 0
    drift: float = 0.0  # fractional clock rate error
    wall_step_ms: int = 0  # wall-clock steps the core sees only once the process restarts
    paused: bool = False
    timer_versions: dict[Any, int] = field(default_factory=dict)
    parked: list[tuple[Callable[[Any], None], Any]] = field(default_factory=list)
    callbacks: dict[int, Callback] = field(default_factory=dict)  # client requests in flight
    # The tail of this node's trace entries for a delivery, by sender and message type.
    trace_tags: dict[str, dict[type, str]] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.core is not None

    @property
    def running(self) -> bool:
        return self.core is not None and not self.paused


class World:
    def __init__(
        self, seed: int, names: Sequence[str], *, ring_size: int = 16,
        network: NetworkConfig | None = None, skew_ms: int = 0, drift: float = 0.0,
        hinted_idle_ms: int = 500, flush_delay_ms: tuple[int, int] = FLUSH_DELAY_MS,
        members: Sequence[str] | None = None,
    ) -> None:
        """`members`: nodes that start as one committed cluster (the others start standalone)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.network = Network(random.Random(self.rng.getrandbits(64)), network or NetworkConfig())
        self.config = ClusterConfig(ring_size=ring_size, hinted_idle_ms=hinted_idle_ms)
        self.flush_delay_ms = flush_delay_ms
        # The event queue: a heap of the times that have events, and each time's events in the
        # order they were scheduled (one heap entry per busy millisecond, not per event).
        self._times: list[int] = []
        self._slots: dict[int, list[tuple[Callable[[Any], None], Any]]] = {}
        self._seq = itertools.count()  # timer versions
        self._req_ids = itertools.count(1)
        # The entries not hashed yet, two strings each: ", " and the entry tuple's repr, or for
        # a delivery ", (<now>, " (the lead, one string per ms) and the rest of the repr.
        self._trace: list[str] = []
        self._lead_at = -1
        self._lead = ""
        self._hash = hashlib.sha256()
        self.events_run = 0
        self._halted = False
        self._looping = False
        # Bound once: one is scheduled for every message, timer and flush.
        self._deliver = self._on_deliver
        # Bumped whenever a node starts, stops, pauses or resumes; `pick_target` keeps the live
        # nodes of the latest targets it saw for as long as it stays put.
        self._liveness = 0
        self._live_targets: tuple[int, list[str], list[str]] = (-1, [], [])
        self._timer = self._on_timer
        self._flush = self._on_flush
        # Client requests whose CoordinatePut (or CoordinateUpdate) the network delivered twice:
        # the coordinating vnode sees two writes (the checkers allow the extra sibling such a
        # write leaves, and a data type update applied twice).
        self.duplicated_puts: set[int] = set()
        self.nodes: dict[str, SimNode] = {}
        formed = self._formed_state(list(members)) if members else None
        for name in names:
            node = SimNode(name, SimBackend(), None,
                           offset_ms=self.rng.randint(-skew_ms, skew_ms) if skew_ms else 0,
                           drift=self.rng.uniform(-drift, drift) if drift else 0.0)
            self.nodes[name] = node
            state = formed if members and name in members else None
            if state is not None:
                node.backend.meta_put(STATE_KEY, msgpack.packb(ms.state_to_wire(state),
                                                               use_bin_type=True))
                node.backend.sync()
            self._boot(node, state)

    def _formed_state(self, members: list[str]) -> ClusterState:
        """The state a committed cluster of `members` reaches once its first handoffs are done."""
        size = self.config.ring_size
        names = sorted(members)
        owners = claim(tuple([names[0]] * size), names, self.config.target_n_val)
        return ClusterState(
            self.config.cluster_name, 2, names[0],
            tuple(Member(n, Status.VALID, n, "") for n in names), tuple(owners),
        )

    # --- clocks -------------------------------------------------------------------------------

    def clock(self, node: SimNode) -> int:
        return int(self.now * (1 + node.drift)) + node.offset_ms + CLOCK_BASE_MS

    def _to_world_time(self, node: SimNode, at_ms: int) -> int:
        """The first world time at which the node's clock reads at least `at_ms`.

        Rounding down would fire a timer while the node's clock still reads less than its time,
        and a core that re-arms for the same time would then spin at one instant.
        """
        base = node.offset_ms + CLOCK_BASE_MS
        if not node.drift:
            return max(self.now, at_ms - base)
        rate = 1 + node.drift
        t = max(self.now, math.ceil((at_ms - base) / rate))
        while int(t * rate) + base < at_ms:
            t += 1
        return t

    def shift_clock(self, name: str, delta_ms: int) -> None:
        """The node's wall clock steps (NTP step, VM migration).

        A running core never sees it: a real node runs its core on a monotonic clock anchored to
        the wall clock at process start (node.local.core_ms), as leader leases require. The step
        reaches the core when the process restarts and re-anchors (`restart`), so a restarted
        node's clock may read earlier or later than before its crash.
        """
        self.nodes[name].wall_step_ms += delta_ms
        self.record("clock", name, delta_ms)

    # --- nodes --------------------------------------------------------------------------------

    def _boot(self, node: SimNode, state: ClusterState | None) -> None:
        config = replace(self.config, cluster_addr=node.name, http_url="")
        rng = random.Random(self.rng.getrandbits(64))
        node.core = ClusterNode(node.name, node.backend, node.incarnation, config, rng, state)
        self._liveness += 1
        self._execute(node, node.core.start(self.clock(node)))

    def form_cluster(self, names: list[str] | None = None) -> None:
        """Make all (or the given) nodes one committed cluster, as `cluster join` + commit would."""
        names = names or list(self.nodes)
        for name in names[1:]:
            self.admin(name, AdminRequest("join", (names[0], names[0])))
            self.run_for(50)
        self.admin(names[0], AdminRequest("commit"))
        self.run_for(50)

    def crash(self, name: str) -> None:
        """The process dies: volatile state is gone and unsynced writes are lost."""
        node = self.nodes[name]
        if node.core is None:
            return
        node.backend.crash()
        node.core = None
        node.paused = False
        self._liveness += 1
        node.parked.clear()
        node.timer_versions.clear()
        self.record("crash", name)
        callbacks, node.callbacks = node.callbacks, {}
        for req_id in sorted(callbacks):
            callbacks[req_id](LostInCrash(f"{name} crashed while serving the request"))

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        if node.alive:
            return
        node.incarnation += 1
        node.offset_ms += node.wall_step_ms
        node.wall_step_ms = 0
        self.record("restart", name)
        self._boot(node, load_state(node.backend))

    def pause(self, name: str) -> None:
        """The process stops (SIGSTOP, a long GC): nothing it receives or times is handled."""
        node = self.nodes[name]
        if node.core is not None and not node.paused:
            node.paused = True
            self._liveness += 1
            self.record("pause", name)

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        if not node.paused:
            return
        node.paused = False
        self._liveness += 1
        self.record("resume", name)
        parked, node.parked = node.parked, []
        for handler, payload in parked:
            self._schedule(0, handler, payload)

    def is_running(self, name: str) -> bool:
        node = self.nodes[name]
        return node.core is not None and not node.paused

    def pick_target(self, targets: Sequence[str], rng: random.Random, live_bias: float) -> str:
        """The node a simulated client sends to: one it believes is up with chance `live_bias`
        (clients learn of crashes only by their requests failing), else any of `targets`."""
        cached = self._live_targets
        if cached[0] != self._liveness or cached[1] != targets:
            nodes = self.nodes
            live = [n for n in targets if (node := nodes[n]).core is not None and not node.paused]
            self._live_targets = cached = (self._liveness, list(targets), live)
        live = cached[2]
        if live and rng.random() < live_bias:
            return draws.choice(rng, live)
        return draws.choice(rng, targets)

    def sync_all(self) -> None:
        """Make every running node's writes durable (the set-up phase is long past)."""
        for node in self.nodes.values():
            if node.core is not None:
                node.backend.sync()

    # --- requests -----------------------------------------------------------------------------

    def submit(self, name: str, request: Request | AdminRequest, callback: Callback) -> int:
        """Send a client request to a node; `callback` gets the result or an exception.

        A node that is down or paused refuses at once (NotRunning); one that crashes before
        answering reports LostInCrash.
        """
        node = self.nodes[name]
        req_id = next(self._req_ids)
        if node.core is None or node.paused:
            callback(NotRunning(f"{name} is not running"))
            return req_id
        node.callbacks[req_id] = callback
        self._execute(node, node.core.submit(req_id, request, self.clock(node)))
        return req_id

    def call(self, name: str, request: Request | AdminRequest, limit_ms: int = 120_000) -> Any:
        """Submit and run until answered (for tests and set-up)."""
        box: list[Any] = []
        self.submit(name, request, box.append)
        if not self.run_until(lambda: bool(box), limit_ms):
            raise TimeoutError(f"no answer from {name} within {limit_ms} ms")
        return box[0]

    def admin(self, name: str, request: AdminRequest) -> Any:
        result = self.call(name, request)
        if isinstance(result, Exception):
            raise result
        return result

    def operate(self, name: str, action: Callable[[ClusterNode], None]) -> None:
        """Change a node from outside its doors (bucket types, props), as the admin routes do,
        then carry out what the change asks for (spreading it to the other members)."""
        node = self.nodes[name]
        core = self.core(name)
        action(core)
        self._execute(node, core.drain())

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        """Run `action` after `delay_ms` of virtual time (clients and the fault injector)."""
        self._schedule(delay_ms, _call, action)

    # --- the event loop -----------------------------------------------------------------------

    def _schedule(self, delay: int, handler: Callable[[Any], None], payload: Any) -> None:
        self._push(self.now + delay, handler, payload)

    def _push(self, at: int, handler: Callable[[Any], None], payload: Any) -> None:
        """Events run in time order, and those of one time in the order they were scheduled."""
        slot = self._slots.get(at)
        if slot is None:
            self._slots[at] = [(handler, payload)]
            heapq.heappush(self._times, at)
        else:
            slot.append((handler, payload))

    def step(self) -> bool:
        if not self._times:
            return False
        self._loop(self._times[0], None, limit=1)
        return True

    def run_for(self, ms: int) -> None:
        deadline = self.now + ms
        self._loop(deadline, None)
        self.now = max(self.now, deadline)

    def run_until(self, done: Callable[[], bool], limit_ms: int) -> bool:
        """Run until `done()` holds (checked after every event) or `limit_ms` passes."""
        deadline = self.now + limit_ms
        if self._loop(deadline, done):
            return True
        self.now = max(self.now, deadline)
        return done()

    def halt(self) -> None:
        """Stop `run_until_halted` after the current event (cheaper than a predicate)."""
        self._halted = True

    def run_until_halted(self, limit_ms: int) -> bool:
        """Run until something calls `halt()` or `limit_ms` passes; returns whether halted."""
        self._halted = False
        deadline = self.now + limit_ms
        if self._loop(deadline, None, watch_halt=True):
            return True
        self.now = max(self.now, deadline)
        return False

    def _loop(self, deadline: int, done: Callable[[], bool] | None, *, limit: int = MAX_EVENTS,
              watch_halt: bool = False) -> bool:
        """The event loop. Returns True when stopped by `done` or a halt, False at the deadline."""
        if self._looping:
            # A slot being run by an outer loop would be run again by this one.
            raise RuntimeError("the event loop is not re-entrant: an event handler ran the world")
        self._looping = True
        try:
            if done is None and watch_halt and limit >= MAX_EVENTS:
                return self._loop_until_halted(deadline)
            return self._loop_events(deadline, done, limit, watch_halt)
        finally:
            self._looping = False

    def _loop_events(self, deadline: int, done: Callable[[], bool] | None, limit: int,
                     watch_halt: bool) -> bool:
        times, slots = self._times, self._slots
        budget = min(limit, MAX_EVENTS - self.events_run)
        count = 0
        try:
            while times and times[0] <= deadline:
                at = times[0]
                slot = slots[at]
                ran = 0
                try:
                    # Events scheduled for this same time while it runs join the slot and run
                    # in this pass (a list iterator sees items appended during the iteration).
                    for handler, payload in slot:
                        if done is not None and done():
                            return True
                        if count >= budget:
                            if limit < MAX_EVENTS:
                                return False
                            raise RuntimeError(f"event budget of {MAX_EVENTS} exhausted")
                        if at > self.now:  # time moves only when an event runs
                            self.now = at
                        ran += 1
                        count += 1
                        handler(payload)
                        if watch_halt and self._halted:
                            return True
                finally:
                    self._consumed(at, slot, ran)
            return done is not None and done()
        finally:
            self.events_run += count

    def _loop_until_halted(self, deadline: int) -> bool:
        """`_loop` for the client phase, where every event counts: no predicate to call."""
        times, slots = self._times, self._slots
        budget = MAX_EVENTS - self.events_run
        count = 0
        try:
            while times and times[0] <= deadline:
                at = times[0]
                if at > self.now:
                    self.now = at
                slot = slots[at]
                ran = 0
                try:
                    for handler, payload in slot:  # see _loop: the slot may grow meanwhile
                        ran += 1
                        handler(payload)
                        if self._halted:
                            return True
                finally:
                    count += ran
                    if ran >= len(slot):  # _consumed, inlined: this runs for every busy ms
                        heapq.heappop(times)
                        del slots[at]
                    else:
                        del slot[:ran]
                if count >= budget:
                    raise RuntimeError(f"event budget of {MAX_EVENTS} exhausted")
            return False
        finally:
            self.events_run += count

    def _consumed(self, at: int, slot: list[tuple[Callable[[Any], None], Any]], ran: int) -> None:
        """The first `ran` events of the slot for time `at` have run."""
        if ran >= len(slot):
            heapq.heappop(self._times)
            del self._slots[at]
        elif ran:
            del slot[:ran]

    def _on_deliver(self, payload: tuple[SimNode, str, Any]) -> None:
        node, sender, msg = payload
        core = node.core
        if core is None:
            return
        if node.paused:
            node.parked.append((self._on_deliver, payload))
            return
        # The trace entry is the repr of (now, node, sender, message type), from cached pieces:
        # this runs for every message, and the tail takes one of a few hundred values.
        tags = node.trace_tags.get(sender)
        if tags is None:
            tags = node.trace_tags[sender] = {}
        kind = type(msg)
        tail = tags.get(kind)
        if tail is None:
            tail = tags[kind] = repr((node.name, sender, kind.__name__))[1:]
        if self._lead_at != self.now:
            self._lead_at = self.now
            self._lead = f", ({self.now}, "
        trace = self._trace
        trace.append(self._lead)
        trace.append(tail)
        if len(trace) >= 2 * TRACE_CHUNK:
            self._hash_trace()
        effects = core.on_message(sender, msg,
                                  int(self.now * (1 + node.drift)) + node.offset_ms + CLOCK_BASE_MS)
        if effects:
            self._execute(node, effects)

    def _on_timer(self, payload: tuple[SimNode, int, Any, int]) -> None:
        node, incarnation, key, version = payload
        core = node.core
        if core is None or node.incarnation != incarnation:
            return
        if node.timer_versions.get(key) != version:
            return  # replaced or cancelled
        if node.paused:
            node.parked.append((self._on_timer, payload))
            return
        del node.timer_versions[key]
        effects = core.on_timer(key,
                                int(self.now * (1 + node.drift)) + node.offset_ms + CLOCK_BASE_MS)
        if effects:
            self._execute(node, effects)

    def _on_flush(self, payload: tuple[SimNode, int, int, list[Flush]]) -> None:
        node, incarnation, mark, flushes = payload
        if node.core is None or node.incarnation != incarnation:
            return  # the process died before its fsync finished
        if node.paused:
            node.parked.append((self._on_flush, payload))
            return
        node.backend.sync_through(mark)
        for flush in flushes:
            self._send(node, flush.to, flush.done)

    def _execute(self, node: SimNode, effects: list[Effect]) -> None:
        flushes: list[Flush] | None = None
        for effect in effects:
            if type(effect) is Send:  # exact types: effects are final dataclasses
                self._send(node, effect.to, effect.msg)
            elif type(effect) is Reply:
                callback = node.callbacks.pop(effect.req_id, None)
                if callback is not None:
                    callback(effect.result)
            elif type(effect) is SetTimer:
                version = next(self._seq)
                node.timer_versions[effect.key] = version
                self._push(self._to_world_time(node, effect.at_ms), self._timer,
                           (node, node.incarnation, effect.key, version))
            elif type(effect) is CancelTimer:
                node.timer_versions.pop(effect.key, None)
            elif type(effect) is Flush:
                if flushes is None:
                    flushes = []
                flushes.append(effect)
        if flushes:
            low, high = self.flush_delay_ms
            self._schedule(low + int(self.rng.random() * (high - low + 1)), self._flush,
                           (node, node.incarnation, node.backend.mark(), flushes))

    def _send(self, node: SimNode, to: str, msg: Any) -> None:
        target = self.nodes.get(to)
        if target is None:
            return
        delay = self.network.delay(node.name, to)
        if delay >= 0:
            payload = (target, node.name, msg)
            at = self.now + delay
            slot = self._slots.get(at)  # _push, inlined: this runs for every message
            if slot is None:
                self._slots[at] = [(self._deliver, payload)]
                heapq.heappush(self._times, at)
            else:
                slot.append((self._deliver, payload))
            return
        if delay == LOST:
            return
        first, second = self.network.echo
        if isinstance(msg, CoordinatePut | CoordinateUpdate):
            self.duplicated_puts.add(msg.req_id)
        payload = (target, node.name, msg)
        self._push(self.now + first, self._deliver, payload)
        self._push(self.now + second, self._deliver, payload)

    # --- the trace ----------------------------------------------------------------------------

    def record(self, *parts: Any) -> None:
        """Add an entry to the trace the digest is computed over (values must repr stably)."""
        trace = self._trace
        trace.append(", ")
        trace.append(repr((self.now, *parts)))
        if len(trace) >= 2 * TRACE_CHUNK:
            self._hash_trace()

    def _hash_trace(self) -> None:
        # A chunk hashes as the repr of the list of its entries' tuples would (the digests of
        # earlier versions stay valid): "[" + the entries' reprs, comma-separated, + "]".
        self._hash.update(("[" + "".join(self._trace)[2:] + "]").encode())
        self._trace.clear()

    def digest(self) -> str:
        """A fingerprint of everything that happened so far: equal runs give equal digests."""
        self._hash_trace()
        return self._hash.hexdigest()[:16]

    # --- inspection ---------------------------------------------------------------------------

    def core(self, name: str) -> ClusterNode:
        core = self.nodes[name].core
        assert core is not None, f"{name} is not running"
        return core

    def members_view(self) -> dict[str, list[str]]:
        return {n: list(s.core.state.active_members) for n, s in self.nodes.items() if s.core}

    @property
    def pending_events(self) -> int:
        return sum(len(slot) for slot in self._slots.values())


def _call(action: Callable[[], None]) -> None:
    action()


def standalone(name: str, ring_size: int) -> ClusterState:
    return ClusterState.standalone("sapwood", Member(name, Status.VALID, name, ""), ring_size)
