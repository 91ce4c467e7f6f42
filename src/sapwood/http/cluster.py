"""Admin routes behind `sapwood cluster ...`: join, plan, commit, leave, force-remove, status, ring.

    GET  /admin/cluster/status        members, up/down view, ownership, handoffs
    GET  /admin/cluster/ring          partition owners (and the planned ones during a transition)
    POST /admin/cluster/join          {"node": "name@host[:port]" | "host:port"}: join that node's cluster
    GET  /admin/cluster/plan          what committing the staged changes would do
    POST /admin/cluster/commit        carry the plan out
    POST /admin/cluster/leave         {"node": name} (default: this node)
    POST /admin/cluster/force-remove  {"node": name}
    POST /admin/cluster/clear         drop the staged changes
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sapwood.core.cluster import AdminRequest
from sapwood.core.errors import BadRequest
from sapwood.http.admin import check_admin_peer as _check_peer
from sapwood.http.guard import guarded
from sapwood.http.state import node_of

DEFAULT_CLUSTER_PORT = 8099


def parse_node_address(text: str) -> tuple[str | None, str]:
    """`name@host[:port]` or `host:port` -> (name or None, "host:port")."""
    text = text.strip()
    name: str | None = None
    host_port = text
    if "@" in text:
        name_part, _, host_port = text.partition("@")
        host, _, port = host_port.partition(":")
        name = f"{name_part}@{host}"
        host_port = f"{host}:{port or DEFAULT_CLUSTER_PORT}"
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise BadRequest(f"expected name@host[:port] or host:port, got {text!r}")
    return name, host_port


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"body must be JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


async def _admin(request: web.Request, op: str, *args: Any) -> web.Response:
    _check_peer(request)
    result = await node_of(request).request(AdminRequest(op, args), op=f"cluster_{op}")
    return web.json_response(result)


async def status(request: web.Request) -> web.Response:
    _check_peer(request)
    node = node_of(request)
    return web.json_response(node.core.status() | {"node": node.name})


async def ring(request: web.Request) -> web.Response:
    _check_peer(request)
    state = node_of(request).core.state
    return web.json_response({
        "ring_size": len(state.owners),
        "owners": [{"partition": p, "node": o} for p, o in enumerate(state.owners)],
        "next_owners": None if state.next_owners is None else list(state.next_owners),
    })


async def join(request: web.Request) -> web.Response:
    _check_peer(request)
    body = await _body(request)
    target = body.get("node")
    if not isinstance(target, str):
        raise BadRequest('join needs {"node": "name@host[:port]"}')
    name, address = parse_node_address(target)
    node = node_of(request)
    actual = await node.probe(address)
    if name is not None and actual != name:
        raise BadRequest(f"{address} is node {actual}, not {name}")
    return await _admin(request, "join", actual, address)


async def plan(request: web.Request) -> web.Response:
    return await _admin(request, "plan")


async def commit(request: web.Request) -> web.Response:
    return await _admin(request, "commit")


async def leave(request: web.Request) -> web.Response:
    body = await _body(request)
    return await _admin(request, "leave", body.get("node") or node_of(request).name)


async def force_remove(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body.get("node"), str):
        raise BadRequest('force-remove needs {"node": "name@host"}')
    return await _admin(request, "force-remove", body["node"])


async def clear(request: web.Request) -> web.Response:
    return await _admin(request, "clear")


def add_routes(app: web.Application) -> None:
    prefix = "/admin/cluster"
    app.router.add_get(f"{prefix}/status", guarded(status))
    app.router.add_get(f"{prefix}/ring", guarded(ring))
    app.router.add_post(f"{prefix}/join", guarded(join))
    app.router.add_get(f"{prefix}/plan", guarded(plan))
    app.router.add_post(f"{prefix}/commit", guarded(commit))
    app.router.add_post(f"{prefix}/leave", guarded(leave))
    app.router.add_post(f"{prefix}/force-remove", guarded(force_remove))
    app.router.add_post(f"{prefix}/clear", guarded(clear))
