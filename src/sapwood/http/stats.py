"""GET /stats: Riak's fields clients switch features on, plus Sapwood's own counters."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from sapwood import __version__
from sapwood.http.state import HttpStats
from sapwood.node.node import Node, wall_ms

# Clients enable bucket types, data types and preflists from riak_kv_version >= 2.1.
RIAK_KV_VERSION = "2.1.4"
_RIAK_TIMES = {"get": "node_get_fsm_time", "put": "node_put_fsm_time"}


def _ring_ownership(owners: tuple[str, ...]) -> str:
    # Riak reports this as an Erlang term in a string; clients display it, none parse it.
    counts = sorted(Counter(owners).items())
    return "[" + ",".join(f"{{'{node}',{count}}}" for node, count in counts) + "]"


def _riak_times(latency: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for op, prefix in _RIAK_TIMES.items():
        figures = latency.get(op)
        if figures is not None:
            out[f"{prefix}_median"] = figures["p50_us"]
            out[f"{prefix}_95"] = figures["p95_us"]
            out[f"{prefix}_99"] = figures["p99_us"]
    return out


def stats_body(node: Node, http: HttpStats) -> dict[str, Any]:
    service = node.service
    latency = node.latency.percentiles()
    return {
        "nodename": node.name,
        "riak_kv_version": RIAK_KV_VERSION,
        "sapwood_version": __version__,
        "ring_members": list(service.ring.members),
        "ring_num_partitions": service.ring.size,
        "ring_ownership": _ring_ownership(service.ring.owners),
        "connected_nodes": [m for m in node.core.peers() if node.core.is_up(m)],
        "node_gets_total": service.stats.requests.get("GetRequest", 0),
        "node_puts_total": service.stats.requests.get("PutRequest", 0),
        **_riak_times(latency),
        "uptime_s": (wall_ms() - node.started_ms) // 1000,
        "sapwood_pid": os.getpid(),
        "sapwood_requests": dict(service.stats.requests),
        "sapwood_request_errors": dict(service.stats.errors),
        "sapwood_latency": latency,
        "sapwood_http_requests": dict(http.requests),
        # Members with their up/down view and ring share, transfers and handoffs in progress.
        "sapwood_cluster": node.core.status(),
        "sapwood_http_responses": dict(http.responses),
        # Consistent groups: elections won, entries committed, reads served by a leader lease.
        "sapwood_ensembles": node.core.ensembles.stats(),
    }
