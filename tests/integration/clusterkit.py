"""Real multi-process clusters on 127.0.0.1 for integration tests.

    cluster = form_cluster(node_factory, workdir, count=3)   # dev1..dev3, joined, handoff done
    cluster.create_type("n2", {"n_val": 2})                  # active on every node on return
    dev4, plan = cluster.add_node()                          # joined and committed
    cluster.wait_settled()                                   # every handoff done, views agree
    with paused(dev4): ...                                   # SIGSTOP, SIGCONT whatever happens
    traffic = Traffic(cluster.nodes, make); traffic.start(); ...; answers = traffic.finish()
    traffic.wait_for_succeeded(20, cluster.nodes)            # 20 requests answered well

Every wait polls the nodes' admin routes until a condition holds or its deadline passes; the
deadlines only guard against hangs. A wait that gives up raises ClusterError with what it waited
for, what it saw last, and the tail of every node's log.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

if TYPE_CHECKING:
    from integration.conftest import NodeProcess

Record = TypeVar("Record")

RING_SIZE = 16  # small, so that handoff moves few partitions
SETTLE_DEADLINE_S = 60.0
VIEW_DEADLINE_S = 30.0
ADMIN_HTTP_TIMEOUT_S = 10.0
POLL_S = 0.1
LOG_TAIL_LINES = 25


class ClusterError(AssertionError):
    """A cluster did not reach the state a test waited for."""


def node_name(index: int) -> str:
    return f"dev{index}@127.0.0.1"


def write_secret(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    return path


def node_args(secret_file: Path, ring_size: int = RING_SIZE,
              extra: Sequence[str] = ()) -> list[str]:
    return ["--secret-file", str(secret_file), "--ring-size", str(ring_size), *extra]


def closed_port() -> int:
    """A loopback port that nothing listens on (just released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tails(nodes: Iterable[NodeProcess], lines: int = LOG_TAIL_LINES) -> str:
    parts = []
    for node in nodes:
        tail = "\n".join(node.log().splitlines()[-lines:])
        parts.append(f"--- {node.name} (pid {node.proc.pid if node.proc else '-'}, "
                     f"{'running' if node.running else 'not running'}) log tail:\n{tail}")
    return "\n".join(parts)


# --- admin routes ----------------------------------------------------------------------------


def admin(node: NodeProcess, method: str, path: str, body: dict[str, Any] | None = None
          ) -> httpx.Response:
    """One call to `node`'s /admin/cluster/<path>, whatever its status."""
    return httpx.request(method, f"{node.url}/admin/cluster/{path}", json=body,
                         timeout=ADMIN_HTTP_TIMEOUT_S)


def admin_ok(node: NodeProcess, method: str, path: str, body: dict[str, Any] | None = None,
             context: Iterable[NodeProcess] = ()) -> Any:
    """An admin call that must succeed: its JSON answer, or ClusterError with the node logs."""
    response = admin(node, method, path, body)
    if response.status_code >= 400:
        raise ClusterError(f"{method} /admin/cluster/{path} {body or ''} on {node.name} "
                           f"answered {response.status_code}: {response.text.strip()}\n"
                           f"{log_tails([node, *context])}")
    return response.json()


def status(node: NodeProcess) -> dict[str, Any]:
    view: dict[str, Any] = admin_ok(node, "GET", "status")
    return view


def owners(node: NodeProcess) -> list[str]:
    """Partition owners, as `node` sees the ring."""
    ring = admin_ok(node, "GET", "ring")
    return [entry["node"] for entry in ring["owners"]]


def active_members(view: dict[str, Any]) -> dict[str, str]:
    """name -> status of the members of a status answer that are not removed."""
    return {m["name"]: m["status"] for m in view["members"] if m["status"] != "removed"}


def comparable(view: dict[str, Any]) -> dict[str, Any]:
    """The parts of a status answer a refused admin operation must leave unchanged."""
    return {"epoch": view["epoch"], "claimant": view["claimant"],
            "cluster_name": view["cluster_name"], "staged": view["staged"],
            "members": sorted((m["name"], m["status"], m["ownership"]) for m in view["members"]),
            "transfers_pending": view["transfers_pending"]}


# --- waiting ---------------------------------------------------------------------------------


def wait_until(check: Callable[[], tuple[bool, str]], what: str, nodes: Sequence[NodeProcess],
               deadline_s: float) -> None:
    """Poll `check` (-> done, what it saw) until done; ClusterError after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    seen = "nothing yet"
    while True:
        try:
            done, seen = check()
        except httpx.HTTPError as exc:
            done, seen = False, f"{type(exc).__name__}: {exc}"
        if done:
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f"gave up after {deadline_s} s waiting for {what}; last seen:\n"
                               f"{seen}\n{log_tails(nodes)}")
        time.sleep(POLL_S)


def settled(nodes: Sequence[NodeProcess]) -> tuple[bool, str]:
    """Every node: no handoff waiting or running, no transfer pending, same epoch and claimant."""
    views = {node.name: status(node) for node in nodes}
    busy = []
    for name, view in views.items():
        handoffs = view["handoffs"]
        if handoffs["waiting"] or handoffs["active"] or view["transfers_pending"] or view["staged"]:
            busy.append(f"{name}: waiting={handoffs['waiting']} active={handoffs['active']} "
                        f"transfers_pending={view['transfers_pending']} staged={view['staged']}")
    versions = {name: (view["epoch"], view["claimant"]) for name, view in views.items()}
    if len(set(versions.values())) > 1:
        busy.append(f"views differ: {versions}")
    return not busy, "\n".join(busy)


def wait_settled(nodes: Sequence[NodeProcess], deadline_s: float = SETTLE_DEADLINE_S) -> None:
    wait_until(lambda: settled(nodes), "handoff to settle", nodes, deadline_s)


def wait_view(observers: Sequence[NodeProcess], up: dict[str, bool],
              deadline_s: float = VIEW_DEADLINE_S) -> None:
    """Wait until every observer's failure detector sees each named node as up (True) or down."""

    def check() -> tuple[bool, str]:
        wrong = []
        for observer in observers:
            seen = {m["name"]: m["up"] for m in status(observer)["members"]}
            mismatched = {n: seen.get(n) for n, want in up.items() if seen.get(n) is not want}
            if mismatched:
                wrong.append(f"{observer.name} sees {mismatched}")
        return not wrong, "\n".join(wrong)

    wait_until(check, f"the view {up}", observers, deadline_s)


@contextmanager
def paused(node: NodeProcess) -> Iterator[None]:
    """SIGSTOP the node for the block; SIGCONT it whatever happens."""
    os.kill(node.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.pid, signal.SIGCONT)


# --- the cluster -----------------------------------------------------------------------------


@dataclass
class Cluster:
    """Nodes dev1..devN of one cluster sharing a secret; `nodes` lists the current members."""

    factory: Callable[..., NodeProcess]
    secret_file: Path
    ring_size: int = RING_SIZE
    nodes: list[NodeProcess] = field(default_factory=list)
    started: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def first(self) -> NodeProcess:
        return self.nodes[0]

    def start_node(self, extra: Sequence[str] = ()) -> NodeProcess:
        """A new standalone node devK with the cluster's secret (not joined)."""
        with self._lock:
            self.started += 1
            index = self.started
        return self.factory(name=node_name(index),
                            args=node_args(self.secret_file, self.ring_size, extra))

    def claimant(self) -> NodeProcess:
        name = status(self.first)["claimant"]
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"the claimant {name} is not one of {[n.name for n in self.nodes]}")

    def join(self, node: NodeProcess) -> dict[str, Any]:
        """Stage `node` joining the cluster through the first member."""
        result: dict[str, Any] = admin_ok(node, "POST", "join",
                                          {"node": self.first.cluster_address}, self.nodes)
        return result

    def commit(self, staged: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """Commit on the claimant, once it holds every change in `staged`."""
        claimant = self.claimant()
        want = {f"{action} {name}" for action, name in staged}

        def check() -> tuple[bool, str]:
            have = {f"{a} {n}" for a, n in status(claimant)["staged"]}
            return want <= have, f"claimant {claimant.name} has staged {sorted(have)}"

        wait_until(check, f"{sorted(want)} staged on the claimant", self.nodes, VIEW_DEADLINE_S)
        result: dict[str, Any] = admin_ok(claimant, "POST", "commit", None, self.nodes)
        return result

    def add_node(self) -> tuple[NodeProcess, dict[str, Any]]:
        """Start devK, join it, commit; returns it and the committed plan (not yet settled)."""
        node = self.start_node()
        self.join(node)
        plan = self.commit([("join", node.name)])
        self.nodes.append(node)
        return node, plan

    def leave(self, node: NodeProcess) -> dict[str, Any]:
        """Stage `node` leaving and commit; returns the committed plan (not yet settled)."""
        admin_ok(self.first, "POST", "leave", {"node": node.name}, self.nodes)
        return self.commit([("leave", node.name)])

    def wait_settled(self, deadline_s: float = SETTLE_DEADLINE_S) -> None:
        wait_settled(self.nodes, deadline_s)

    def wait_all_up(self) -> None:
        wait_view(self.nodes, {n.name: True for n in self.nodes})

    def create_type(self, name: str, props: dict[str, Any]) -> None:
        """Create and activate a bucket type; returns once every member has it active."""
        base = f"{self.first.url}/admin/bucket-types/{name}"
        created = httpx.post(base, json={"props": props}, timeout=ADMIN_HTTP_TIMEOUT_S)
        if created.status_code != 201:
            raise ClusterError(f"creating bucket type {name}: {created.status_code} "
                               f"{created.text.strip()}")
        activated = httpx.post(base + "/activate", timeout=ADMIN_HTTP_TIMEOUT_S)
        if activated.status_code != 200:
            raise ClusterError(f"activating bucket type {name}: {activated.status_code} "
                               f"{activated.text.strip()}")

        def check() -> tuple[bool, str]:
            seen = {}
            for node in self.nodes:
                answer = httpx.get(f"{node.url}/admin/bucket-types/{name}",
                                   timeout=ADMIN_HTTP_TIMEOUT_S)
                seen[node.name] = (answer.json().get("status") if answer.status_code == 200
                                   else answer.status_code)
            return all(s == "active" for s in seen.values()), f"type {name} status: {seen}"

        wait_until(check, f"bucket type {name} active everywhere", self.nodes, VIEW_DEADLINE_S)


def form_cluster(factory: Callable[..., NodeProcess], workdir: Path, count: int,
                 ring_size: int = RING_SIZE) -> Cluster:
    """Start dev1..devN, join them to dev1, commit, and wait for ownership handoff to finish."""
    cluster = Cluster(factory, write_secret(workdir / "cluster.secret"), ring_size)
    cluster.nodes.append(cluster.start_node())
    with ThreadPoolExecutor(count) as pool:  # each start waits for its node to serve
        joiners = list(pool.map(lambda _: cluster.start_node(), range(count - 1)))
    for node in joiners:
        cluster.join(node)
    cluster.nodes += joiners
    if joiners:
        cluster.commit([("join", n.name) for n in joiners])
    cluster.wait_all_up()
    cluster.wait_settled()
    return cluster


# --- traffic ---------------------------------------------------------------------------------

REQUEST_TIMEOUT_MS = 3_000  # the server-side ?timeout= of traffic requests
CLIENT_GUARD_S = 10.0  # on top of REQUEST_TIMEOUT_MS: an answer later than this is a hang
TEXT = {"Content-Type": "text/plain"}


def client_timeout(request_timeout_ms: int = REQUEST_TIMEOUT_MS) -> float:
    return request_timeout_ms / 1000 + CLIENT_GUARD_S


@dataclass(frozen=True)
class Answer:
    """One request of a traffic thread: where it went and how it ended."""

    path: str
    node: str
    status: int | None  # None: no HTTP answer (connection refused, reset, client timeout)
    detail: str
    sent_at: float  # time.monotonic() when sent

    @property
    def ok(self) -> bool:
        """A 2xx answer (for a read: with the value that was written)."""
        return self.status is not None and 200 <= self.status < 300 and not self.detail


class RoundRobin(threading.Thread, Generic[Record]):
    """Sends requests round-robin over `targets` until finish(), recording one Record each.

    Targets can be dropped while it runs (before killing a node, so that only requests already
    in flight can hit it) and added back (once restarted). A subclass says how to send the i-th
    request (`send`) and which records count as successes (`succeeded`).
    """

    noun = "requests"  # what the errors call what it sends

    def __init__(self, targets: Sequence[NodeProcess]) -> None:
        super().__init__(daemon=True)
        self.targets = list(targets)
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def send(self, http: httpx.Client, node: NodeProcess, i: int) -> Record:
        raise NotImplementedError

    def succeeded(self, record: Record) -> bool:
        raise NotImplementedError

    def drop_target(self, node: NodeProcess) -> None:
        with self._lock:
            self.targets = [t for t in self.targets if t is not node]

    def add_target(self, node: NodeProcess) -> None:
        with self._lock:
            self.targets.append(node)

    def run(self) -> None:
        with httpx.Client(timeout=client_timeout()) as http:
            for i in itertools.count():
                if self._halt.is_set():
                    return
                with self._lock:
                    node = self.targets[i % len(self.targets)]
                self.records.append(self.send(http, node, i))

    def count_succeeded(self) -> int:
        return sum(self.succeeded(r) for r in list(self.records))

    def wait_for_succeeded(self, count: int, nodes: Sequence[NodeProcess],
                           deadline_s: float = VIEW_DEADLINE_S) -> None:
        """Wait until `count` requests in all have succeeded."""

        def check() -> tuple[bool, str]:
            records = list(self.records)
            ok = sum(self.succeeded(r) for r in records)
            last = records[-3:]
            return ok >= count, f"{ok} of {len(records)} {self.noun} succeeded; last: {last}"

        if not self.is_alive():
            raise ClusterError(f"the thread sending {self.noun} is not running")
        wait_until(check, f"{count} successful {self.noun}", nodes, deadline_s)

    def finish(self) -> list[Record]:
        self._halt.set()
        self.join(client_timeout() + CLIENT_GUARD_S)
        if self.is_alive():
            raise ClusterError(f"the thread sending {self.noun} did not stop")
        return list(self.records)


class Traffic(RoundRobin[Answer]):
    """`make(i) -> (method, path, params)` gives the i-th request; a PUT writes the path as the
    value and a GET checks it got that back (see Answer.ok)."""

    def __init__(self, targets: Sequence[NodeProcess],
                 make: Callable[[int], tuple[str, str, dict[str, str]]]) -> None:
        super().__init__(targets)
        self.make = make

    def succeeded(self, record: Answer) -> bool:
        return record.ok

    def send(self, http: httpx.Client, node: NodeProcess, i: int) -> Answer:
        method, path, params = self.make(i)
        sent = time.monotonic()
        params = {"timeout": str(REQUEST_TIMEOUT_MS), **params}
        try:
            body = path.encode() if method == "PUT" else None
            response = http.request(method, node.url + path, params=params, content=body,
                                    headers=TEXT if body is not None else None)
        except httpx.HTTPError as exc:
            return Answer(path, node.name, None, f"{type(exc).__name__}: {exc}", sent)
        detail = "" if response.status_code < 300 else response.text.strip()[:200]
        if method == "GET" and response.status_code == 200 and response.content != path.encode():
            detail = f"wrong value {response.content[:80]!r}"
        return Answer(path, node.name, response.status_code, detail, sent)


def value_path(path: str) -> bytes:
    """Traffic writes each key's own path as its value, so reads can check what they got."""
    return path.encode()
