"""Admin routes behind `sapwood bucket-type ...`: create, activate, update, list, status.

They change cluster metadata, so they are served only to loopback clients unless the node is
configured to accept them from anywhere.

    GET  /admin/bucket-types                  {"types": [{"name", "status", "props"}, ...]}
    GET  /admin/bucket-types/T                {"name": T, "status": "created"|"active", "props"}
    POST /admin/bucket-types/T                create from {"props": {...}} (body optional) -> 201
    PUT  /admin/bucket-types/T                update with {"props": {...}} -> 200
    POST /admin/bucket-types/T/activate       -> 200
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from sapwood.http.guard import guarded
from sapwood.http.state import ADMIN_FROM_ANYWHERE, node_of, sync_metadata
from sapwood.node.node import Node

ADMIN_PREFIX = "/admin"


def check_admin_peer(request: web.Request) -> None:
    """403 unless the client is on loopback (or the app serves admin routes to anyone)."""
    if request.app[ADMIN_FROM_ANYWHERE]:
        return
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise web.HTTPForbidden(
            text=f"admin routes are served to loopback clients only (request came from {peer})\n")





def _describe(node: Node, name: str) -> dict[str, Any]:
    metadata = node.service.metadata
    props = {k: v for k, v in metadata.type_props(name).items() if k != "active"}
    return {"name": name, "status": metadata.status(name), "props": props}


async def list_types(request: web.Request) -> web.Response:
    check_admin_peer(request)
    node = node_of(request)
    names = sorted(node.service.metadata.types)
    return web.json_response({"types": [_describe(node, name) for name in names]})


async def type_status(request: web.Request) -> web.Response:
    check_admin_peer(request)
    return web.json_response(_describe(node_of(request), request.match_info["type"]))


async def create_type(request: web.Request) -> web.Response:
    check_admin_peer(request)
    node, name = node_of(request), request.match_info["type"]
    body = await request.read()
    node.service.create_type(name, body if body.strip() else {"props": {}})
    await sync_metadata(node)
    return web.json_response(_describe(node, name), status=201)


async def update_type(request: web.Request) -> web.Response:
    check_admin_peer(request)
    node, name = node_of(request), request.match_info["type"]
    node.service.update_type(name, await request.read())
    await sync_metadata(node)
    return web.json_response(_describe(node, name))


async def activate_type(request: web.Request) -> web.Response:
    check_admin_peer(request)
    node, name = node_of(request), request.match_info["type"]
    node.service.activate_type(name)
    await sync_metadata(node)
    return web.json_response(_describe(node, name))


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", ADMIN_PREFIX + "/bucket-types", guarded(list_types))
    one = app.router.add_resource(ADMIN_PREFIX + "/bucket-types/{type}")
    one.add_route("GET", guarded(type_status))
    one.add_route("POST", guarded(create_type))
    one.add_route("PUT", guarded(update_type))
    app.router.add_route("POST", ADMIN_PREFIX + "/bucket-types/{type}/activate", guarded(activate_type))
