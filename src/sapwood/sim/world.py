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
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sapwood.core.cluster import AdminRequest, ClusterConfig, ClusterNode, load_state
from sapwood.core.effects import CancelTimer, Effect, Flush, Reply, Send, SetTimer
from sapwood.core.membership import ClusterState, Member, Status
from sapwood.core.requests import Request
from sapwood.sim.network import Network, NetworkConfig
from sapwood.storage.memory import MemoryBackend

FLUSH_DELAY_MS = (1, 3)
MAX_EVENTS = 50_000_000


@dataclass
class SimNode:
    name: str
    backend: MemoryBackend
    core: ClusterNode | None
    incarnation: int = 1
    offset_ms: int = 0
    drift: float = 0.0  # fractional clock rate error
    paused: bool = False
    timer_versions: dict[Any, int] = field(default_factory=dict)
    parked: list[tuple[str, Any]] = field(default_factory=list)  # messages held while paused

    @property
    def alive(self) -> bool:
        return self.core is not None


Callback = Callable[[Any], None]


class World:
    def __init__(
        self, seed: int, names: list[str], *, ring_size: int = 16,
        network: NetworkConfig | None = None, skew_ms: int = 0, drift: float = 0.0,
        hinted_idle_ms: int = 500,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.network = Network(random.Random(self.rng.getrandbits(64)), network or NetworkConfig())
        self.config = ClusterConfig(ring_size=ring_size, hinted_idle_ms=hinted_idle_ms)
        self._events: list[tuple[int, int, str, Any]] = []
        self._seq = itertools.count()
        self._req_ids = itertools.count(1)
        self.callbacks: dict[tuple[str, int], Callback] = {}
        self.trace = hashlib.sha256()
        self.events_run = 0
        self.nodes: dict[str, SimNode] = {}
        for name in names:
            node = SimNode(name, MemoryBackend(), None,
                           offset_ms=self.rng.randint(-skew_ms, skew_ms) if skew_ms else 0,
                           drift=self.rng.uniform(-drift, drift) if drift else 0.0)
            self.nodes[name] = node
            self._boot(node, state=None)

    # --- clocks -------------------------------------------------------------------------------

    def clock(self, node: SimNode) -> int:
        return int(self.now * (1 + node.drift)) + node.offset_ms + 1_000_000

    def _to_world_time(self, node: SimNode, at_ms: int) -> int:
        return max(self.now, int((at_ms - node.offset_ms - 1_000_000) / (1 + node.drift)))

    # --- nodes --------------------------------------------------------------------------------

    def _boot(self, node: SimNode, state: ClusterState | None) -> None:
        config = ClusterConfig(**{**self.config.__dict__, "cluster_addr": node.name,
                                  "http_url": ""})
        rng = random.Random(self.rng.getrandbits(64))
        node.core = ClusterNode(node.name, node.backend, node.incarnation, config, rng, state)
        self._execute(node, node.core.start(self.clock(node)))

    def form_cluster(self, names: list[str] | None = None) -> None:
        """Make all (or the given) nodes one committed cluster, as `cluster join` + commit would."""
        names = names or list(self.nodes)
        first = self.nodes[names[0]].core
        assert first is not None
        for name in names[1:]:
            self.admin(name, AdminRequest("join", (names[0], names[0])))
            self.run_for(50)
        self.admin(names[0], AdminRequest("commit"))
        self.run_for(50)

    def crash(self, name: str) -> None:
        """The process dies: volatile state is gone and unsynced writes are lost."""
        node = self.nodes[name]
        node.backend.crash()
        node.core = None
        node.paused = False
        node.parked.clear()
        node.timer_versions.clear()
        self._record("crash", name)

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        if node.alive:
            return
        node.incarnation += 1
        self._record("restart", name)
        self._boot(node, load_state(node.backend))

    def pause(self, name: str) -> None:
        self.nodes[name].paused = True

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        node.paused = False
        parked, node.parked = node.parked, []
        for kind, payload in parked:
            self._schedule(0, kind, payload)

    # --- requests -----------------------------------------------------------------------------

    def submit(self, name: str, request: Request | AdminRequest, callback: Callback) -> int:
        node = self.nodes[name]
        req_id = next(self._req_ids)
        if node.core is None or node.paused:
            callback(ConnectionError(f"{name} is not running"))
            return req_id
        self.callbacks[(name, req_id)] = callback
        self._execute(node, node.core.submit(req_id, request, self.clock(node)))
        return req_id

    def call(self, name: str, request: Request | AdminRequest, limit_ms: int = 120_000) -> Any:
        """Submit and run until answered (for tests and set-up)."""
        box: list[Any] = []
        self.submit(name, request, box.append)
        deadline = self.now + limit_ms
        while not box and self._events and self.now <= deadline:
            self.step()
        if not box:
            raise TimeoutError(f"no answer from {name} within {limit_ms} ms")
        return box[0]

    def admin(self, name: str, request: AdminRequest) -> Any:
        result = self.call(name, request)
        if isinstance(result, Exception):
            raise result
        return result

    # --- the event loop -----------------------------------------------------------------------

    def _schedule(self, delay: int, kind: str, payload: Any) -> None:
        heapq.heappush(self._events, (self.now + delay, next(self._seq), kind, payload))

    def step(self) -> bool:
        if not self._events:
            return False
        at, _, kind, payload = heapq.heappop(self._events)
        self.now = max(self.now, at)
        self.events_run += 1
        if self.events_run > MAX_EVENTS:
            raise RuntimeError("event budget exhausted")
        getattr(self, f"_on_{kind}")(payload)
        return True

    def run_for(self, ms: int) -> None:
        deadline = self.now + ms
        while self._events and self._events[0][0] <= deadline:
            self.step()
        self.now = max(self.now, deadline)

    def _on_deliver(self, payload: tuple[str, str, Any]) -> None:
        to, sender, msg = payload
        node = self.nodes[to]
        if node.core is None:
            return
        if node.paused:
            node.parked.append(("deliver", payload))
            return
        self._record("msg", to, sender, type(msg).__name__)
        self._execute(node, node.core.on_message(sender, msg, self.clock(node)))

    def _on_timer(self, payload: tuple[str, int, Any, int]) -> None:
        name, incarnation, key, version = payload
        node = self.nodes[name]
        if node.core is None or node.incarnation != incarnation:
            return
        if node.timer_versions.get(key) != version:
            return  # replaced or cancelled
        if node.paused:
            node.parked.append(("timer", payload))
            return
        del node.timer_versions[key]
        self._execute(node, node.core.on_timer(key, self.clock(node)))

    def _on_flush(self, payload: tuple[str, int, list[Flush]]) -> None:
        name, incarnation, flushes = payload
        node = self.nodes[name]
        if node.core is None or node.incarnation != incarnation:
            return  # the process died before its fsync finished
        node.backend.sync()
        for flush in flushes:
            self._send(node, flush.to, flush.done)

    def _execute(self, node: SimNode, effects: list[Effect]) -> None:
        flushes: list[Flush] = []
        for effect in effects:
            if isinstance(effect, Send):
                self._send(node, effect.to, effect.msg)
            elif isinstance(effect, Reply):
                callback = self.callbacks.pop((node.name, effect.req_id), None)
                if callback is not None:
                    callback(effect.result)
            elif isinstance(effect, SetTimer):
                version = next(self._seq)
                node.timer_versions[effect.key] = version
                at = self._to_world_time(node, effect.at_ms)
                self._schedule(at - self.now, "timer",
                               (node.name, node.incarnation, effect.key, version))
            elif isinstance(effect, CancelTimer):
                node.timer_versions.pop(effect.key, None)
            elif isinstance(effect, Flush):
                flushes.append(effect)
        if flushes:
            self._schedule(self.rng.randint(*FLUSH_DELAY_MS), "flush",
                           (node.name, node.incarnation, flushes))

    def _send(self, node: SimNode, to: str, msg: Any) -> None:
        if to not in self.nodes:
            return
        for delay in self.network.delays(node.name, to):
            self._schedule(delay, "deliver", (to, node.name, msg))

    def _record(self, *parts: Any) -> None:
        self.trace.update(repr((self.now, *parts)).encode())

    def digest(self) -> str:
        return self.trace.hexdigest()[:16]

    # --- inspection ---------------------------------------------------------------------------

    def core(self, name: str) -> ClusterNode:
        core = self.nodes[name].core
        assert core is not None, f"{name} is not running"
        return core

    def members_view(self) -> dict[str, list[str]]:
        return {n: list(s.core.state.active_members) for n, s in self.nodes.items() if s.core}


def standalone(name: str, ring_size: int) -> ClusterState:
    return ClusterState.standalone("sapwood", Member(name, Status.VALID, name, ""), ring_size)
