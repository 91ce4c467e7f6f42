"""A small deterministic world of ClusterNodes for core tests of cluster-wide protocols.

One virtual clock; messages arrive after 1-3 ms (seeded), in order per pair of nodes; a flush
completes 1 ms after it is asked for (it syncs the node's memory backend, then delivers its
`done`). A crash drops the node's core and every write it had not synced; a restart builds a
new core from what survived, as the server does. `cut(a, b)` drops traffic between two nodes.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

from sapwood.core.claim import claim
from sapwood.core.cluster import ClusterConfig, ClusterNode, load_state
from sapwood.core.consensus import RaftConfig
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.membership import ClusterState, Member, Status
from sapwood.core.requests import Request
from sapwood.storage.memory import MemoryBackend

FAST_RAFT = RaftConfig(election_timeout_min_ms=150, election_timeout_max_ms=300,
                       heartbeat_interval_ms=30)
START_MS = 1_000_000


def formed_state(names: Sequence[str], ring_size: int) -> ClusterState:
    """A committed cluster of `names` whose first handoffs are done."""
    names = sorted(names)
    owners = claim(tuple([names[0]] * ring_size), names, 3)
    members = tuple(Member(n, Status.VALID, n, "") for n in names)
    return ClusterState("sapwood", 2, names[0], members, tuple(owners))


class ClusterNet:
    def __init__(self, names: Sequence[str], *, ring_size: int = 8, seed: int = 1,
                 members: Sequence[str] | None = None, raft: RaftConfig = FAST_RAFT) -> None:
        self.now = START_MS
        self.rng = random.Random(seed)
        self.config = ClusterConfig(ring_size=ring_size, raft=raft)
        self.backends = {n: MemoryBackend() for n in names}
        self.cores: dict[str, ClusterNode] = {}
        self.incarnations = dict.fromkeys(names, 0)
        self.cuts: set[frozenset[str]] = set()
        self.replies: dict[int, Any] = {}
        self._events: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._timers: dict[tuple[str, Any], int] = {}
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        formed = formed_state(members, ring_size) if members else None
        for name in names:
            self._boot(name, formed if members and name in members else None)

    # --- nodes --------------------------------------------------------------------------------

    def _boot(self, name: str, state: ClusterState | None) -> None:
        self.incarnations[name] += 1
        config = ClusterConfig(**{**self.config.__dict__, "cluster_addr": name})
        core = ClusterNode(name, self.backends[name], self.incarnations[name], config,
                           random.Random(self.rng.getrandbits(64)), state)
        self.cores[name] = core
        self._execute(name, core.start(self.now))

    def crash(self, name: str) -> None:
        """kill -9 and a lost page cache: the core and every unsynced write are gone."""
        self.cores.pop(name, None)
        self.backends[name].crash()
        self._timers = {k: v for k, v in self._timers.items() if k[0] != name}

    def restart(self, name: str) -> None:
        assert name not in self.cores
        self._boot(name, load_state(self.backends[name]))

    def core(self, name: str) -> ClusterNode:
        return self.cores[name]

    def cut(self, a: str, b: str) -> None:
        self.cuts.add(frozenset((a, b)))

    def isolate(self, name: str) -> None:
        for other in self.backends:
            if other != name:
                self.cut(name, other)

    def heal(self) -> None:
        self.cuts.clear()

    def _connected(self, a: str, b: str) -> bool:
        return a == b or frozenset((a, b)) not in self.cuts

    # --- requests -----------------------------------------------------------------------------

    def submit(self, name: str, request: Request | Any) -> int:
        req_id = next(self._ids)
        self._execute(name, self.cores[name].submit(req_id, request, self.now))
        return req_id

    def call(self, name: str, request: Request | Any, limit_ms: int = 60_000) -> Any:
        """Submit and run until answered: the result, or the SapwoodError it failed with."""
        req_id = self.submit(name, request)
        if not self.run_until(lambda: req_id in self.replies, limit_ms):
            raise TimeoutError(f"{name} did not answer {request!r} within {limit_ms} ms")
        return self.replies.pop(req_id)

    def operate(self, name: str, action: Callable[[ClusterNode], None]) -> None:
        """Change a node outside its doors (bucket types), then spread what it asks for."""
        core = self.cores[name]
        action(core)
        self._execute(name, core.drain())

    def inject(self, to: str, sender: str, msg: Any) -> list[Effect]:
        """Deliver `msg` now, carry out what it asks for, and return those effects."""
        effects = self.cores[to].on_message(sender, msg, self.now)
        self._execute(to, effects)
        return effects

    # --- the event loop -----------------------------------------------------------------------

    def _schedule(self, at: int, handler: Callable[[Any], None], payload: Any) -> None:
        heapq.heappush(self._events, (at, next(self._seq), handler, payload))

    def run_for(self, ms: int) -> None:
        self.run_until(lambda: False, ms)

    def run_until(self, done: Callable[[], bool], limit_ms: int) -> bool:
        deadline = self.now + limit_ms
        while not done():
            if not self._events or self._events[0][0] > deadline:
                self.now = max(self.now, deadline)
                return done()
            at, _, handler, payload = heapq.heappop(self._events)
            self.now = max(self.now, at)
            handler(payload)
        return True

    def _execute(self, name: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(name, effect.to, effect.msg)
            elif isinstance(effect, Reply):
                self.replies[effect.req_id] = effect.result
            elif isinstance(effect, SetTimer):
                version = next(self._seq)
                self._timers[(name, effect.key)] = version
                self._schedule(effect.at_ms, self._fire,
                               (name, self.incarnations[name], effect.key, version))
            elif isinstance(effect, CancelTimer):
                self._timers.pop((name, effect.key), None)
            elif isinstance(effect, Flush):
                self._schedule(self.now + 1, self._flush, (name, self.incarnations[name], effect))

    def _send(self, sender: str, to: str, msg: Any) -> None:
        if to in self.backends and self._connected(sender, to):
            self._schedule(self.now + 1 + self.rng.randrange(3), self._deliver, (sender, to, msg))

    def _deliver(self, payload: tuple[str, str, Any]) -> None:
        sender, to, msg = payload
        core = self.cores.get(to)
        if core is not None and self._connected(sender, to):
            self._execute(to, core.on_message(sender, msg, self.now))

    def _fire(self, payload: tuple[str, int, Any, int]) -> None:
        name, incarnation, key, version = payload
        core = self.cores.get(name)
        if core is None or self.incarnations[name] != incarnation:
            return
        if self._timers.get((name, key)) != version:
            return
        del self._timers[(name, key)]
        self._execute(name, core.on_timer(key, self.now))

    def _flush(self, payload: tuple[str, int, Flush]) -> None:
        name, incarnation, flush = payload
        if name not in self.cores or self.incarnations[name] != incarnation:
            return  # the process died before its fsync finished
        self.backends[name].sync()
        self._send(name, flush.to, flush.done)
