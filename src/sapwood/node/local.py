"""Opening a data directory: the backend, this start's incarnation, the ring and the metadata.

`sapwood.open()` and `sapwood start` open a directory the same way, so either can serve data the
other wrote.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from sapwood.core.cluster import ClusterConfig, ClusterNode, load_state
from sapwood.core.membership import ClusterState, Member, Status
from sapwood.core.ring import DEFAULT_RING_SIZE, Ring, validate_ring_size
from sapwood.core.service import KVService
from sapwood.storage.lmdb import LmdbBackend

DEFAULT_NODE = "sapwood@127.0.0.1"
RING_KEY = b"ring"
INCARNATION_KEY = b"incarnation"
_CLOCK_ANCHOR_MS = time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000


def core_ms() -> int:
    """The clock a node's core runs on: wall time as of process start, advancing monotonically
    from there, so clock adjustments never step it (consistent groups' leases rely on that)."""
    return time.monotonic_ns() // 1_000_000 + _CLOCK_ANCHOR_MS


def next_incarnation(backend: LmdbBackend) -> int:
    """Count this start, durably, before any write can mint a dot with it."""
    raw = backend.meta_get(INCARNATION_KEY)
    incarnation = (int(raw) if raw else 0) + 1
    backend.meta_put(INCARNATION_KEY, str(incarnation).encode())
    backend.sync()
    return incarnation


def load_ring(backend: LmdbBackend, node: str, ring_size: int) -> Ring:
    raw = backend.meta_get(RING_KEY)
    if raw is None:
        validate_ring_size(ring_size)
        ring = Ring.single(node, ring_size)
    else:
        ring = Ring(tuple(json.loads(raw)["owners"]))
        if len(set(ring.owners)) == 1 and ring.owners[0] != node:
            # A lone node may be renamed: its data is all its own.
            ring = Ring.single(node, ring.size)
    save_ring(backend, ring)
    return ring


def save_ring(backend: LmdbBackend, ring: Ring) -> None:
    backend.meta_put(RING_KEY, json.dumps({"owners": list(ring.owners)}).encode())


def open_service(
    data_dir: str | Path, node: str = DEFAULT_NODE, ring_size: int = DEFAULT_RING_SIZE
) -> KVService:
    """A single-node service over a data directory (the embedded store)."""
    backend = LmdbBackend(data_dir)
    state = load_state(backend)
    if state is not None and len(state.active_members) > 1:
        backend.close()
        raise ClusterMember(
            f"{data_dir} belongs to a cluster of {len(state.active_members)} members "
            f"({', '.join(state.active_members)}); serve it with `sapwood start`"
        )
    incarnation = next_incarnation(backend)
    ring = load_ring(backend, node, ring_size)
    service = KVService(node, ring, backend, incarnation)
    service.load_metadata()
    return service


class ClusterMember(RuntimeError):
    """The data directory is part of a multi-node cluster and cannot be opened embedded."""


def open_embedded_node(
    data_dir: str | Path, node: str = DEFAULT_NODE, ring_size: int = DEFAULT_RING_SIZE
) -> ClusterNode:
    """The node core of the embedded store: a one-member cluster over a data directory (the
    embedded driver runs it; consistent buckets need its groups, not just the KV service)."""
    backend = LmdbBackend(data_dir)
    state = load_state(backend)
    if state is not None and len(state.active_members) > 1:
        backend.close()
        raise ClusterMember(
            f"{data_dir} belongs to a cluster of {len(state.active_members)} members "
            f"({', '.join(state.active_members)}); serve it with `sapwood start`"
        )
    incarnation = next_incarnation(backend)
    ring = load_ring(backend, node, ring_size)
    me = Member(node, Status.VALID, "", "")
    standalone = replace(ClusterState.standalone("sapwood", me, ring.size), owners=ring.owners)
    if state is not None and state.active_members == [node]:
        standalone = state
    config = ClusterConfig(ring_size=ring.size)
    return ClusterNode(node, backend, incarnation, config, random.Random(), standalone)


def open_cluster_node(
    data_dir: str | Path, node: str, config: ClusterConfig, rng: random.Random
) -> ClusterNode:
    """The full node core over a data directory (the server)."""
    backend = LmdbBackend(data_dir)
    incarnation = next_incarnation(backend)
    state = load_state(backend)
    if state is None:
        ring = load_ring(backend, node, config.ring_size)
        me = Member(node, Status.VALID, config.cluster_addr, config.http_url)
        state = ClusterState.standalone(config.cluster_name, me, ring.size)
        state = replace(state, owners=ring.owners)
    elif len(state.active_members) == 1 and state.active_members[0] != node:
        me = Member(node, Status.VALID, config.cluster_addr, config.http_url)
        state = ClusterState.standalone(config.cluster_name, me, len(state.owners))
    return ClusterNode(node, backend, incarnation, config, rng, state)
