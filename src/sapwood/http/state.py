"""What every handler shares: the node, the app's own counters, and small helpers around them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sapwood.core.kvobject import KVObject, resolve_newest
from sapwood.node.node import Node


@dataclass(slots=True)
class HttpStats:
    """Requests per handler and responses per status class, for /stats."""

    requests: dict[str, int] = field(default_factory=dict)
    responses: dict[str, int] = field(default_factory=dict)

    def record(self, handler: str, status: int) -> None:
        requests, responses = self.requests, self.responses
        requests[handler] = requests.get(handler, 0) + 1
        digit = status // 100
        status_class = _STATUS_CLASSES[digit] if 0 <= digit <= 9 else f"{digit}xx"
        responses[status_class] = responses.get(status_class, 0) + 1


# Classes of three-digit statuses, built once rather than formatted per response.
_STATUS_CLASSES = tuple(f"{digit}xx" for digit in range(10))


NODE = web.AppKey("node", Node)
STATS = web.AppKey("http_stats", HttpStats)
ADMIN_FROM_ANYWHERE = web.AppKey("admin_from_anywhere", bool)


def node_of(request: web.Request) -> Node:
    return request.app[NODE]


def props_of(node: Node, bucket_type: str, bucket: str) -> dict[str, Any]:
    """A bucket's effective properties; NotFound (404) for an unknown or inactive type."""
    return node.service.metadata.bucket_props(bucket_type, bucket)


def visible(node: Node, bucket_type: str, bucket: str, obj: KVObject | None) -> KVObject | None:
    """The object as clients see it: buckets without allow_mult never show siblings."""
    if obj is None:
        return None
    props = props_of(node, bucket_type, bucket)
    if not props["allow_mult"] or props["last_write_wins"]:
        return resolve_newest(obj)
    return obj


async def sync_metadata(node: Node) -> None:
    """Make a metadata change (types, bucket props) durable before acknowledging it."""
    await asyncio.get_running_loop().run_in_executor(None, node.service.backend.sync)
