"""The aiohttp application: routes, discovery, ping and stats (errors: sapwood.http.guard)."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from sapwood.core.limits import MAX_OBJECT_BYTES
from sapwood.http import admin, buckets, cluster, datatypes, ensembles, index, objects
from sapwood.http.guard import guarded
from sapwood.http.state import ADMIN_FROM_ANYWHERE, NODE, STATS, HttpStats
from sapwood.http.stats import stats_body
from sapwood.node.node import Node

# Riak's resource names, as clients discover them from GET /.
RESOURCES = {
    "riak_kv_wm_bucket_type": "/types",
    "riak_kv_wm_buckets": "/buckets",
    "riak_kv_wm_counter": "/buckets",
    "riak_kv_wm_index": "/buckets",
    "riak_kv_wm_keylist": "/buckets",
    "riak_kv_wm_object": "/buckets",
    "riak_kv_wm_ping": "/ping",
    "riak_kv_wm_preflist": "/buckets",
    "riak_kv_wm_props": "/buckets",
    "riak_kv_wm_stats": "/stats",
}


def runner_options() -> dict[str, Any]:
    """Options for the AppRunner (or aiohttp's TestServer) serving `make_app`'s application."""
    # A stored object's Content-Encoding describes its bytes: they are stored as sent, never
    # decompressed on the way in.
    return {"auto_decompress": False}


# --- discovery, health, stats -------------------------------------------------------------------


def _link_header() -> str:
    return ", ".join(f'<{prefix}>; rel="{name}"' for name, prefix in RESOURCES.items())


async def resources(request: web.Request) -> web.Response:
    headers = {"Link": _link_header(), "Vary": "Accept"}
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(RESOURCES, headers=headers)
    items = "".join(f'<li><a href="{html.escape(prefix)}">{html.escape(name)}</a></li>'
                    for name, prefix in RESOURCES.items())
    return web.Response(text=f"<html><body><ul>{items}</ul></body></html>",
                        content_type="text/html", headers=headers)


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", content_type="text/plain")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(stats_body(request.app[NODE], request.app[STATS]))


def _add_base_routes(app: web.Application) -> None:
    app.router.add_get("/", guarded(resources))
    app.router.add_get("/ping", guarded(ping))
    app.router.add_get("/stats", guarded(stats))


def make_app(node: Node, *, admin_from_anywhere: bool = False) -> web.Application:
    """The Riak-compatible HTTP API of `node`, plus its admin routes.

    Admin routes answer loopback clients only, unless `admin_from_anywhere`.
    """
    app = web.Application(client_max_size=MAX_OBJECT_BYTES, )
    app[NODE] = node
    app[STATS] = HttpStats()
    app[ADMIN_FROM_ANYWHERE] = admin_from_anywhere
    _add_base_routes(app)
    objects.add_routes(app)
    buckets.add_routes(app)
    index.add_routes(app)
    datatypes.add_routes(app)
    admin.add_routes(app)
    cluster.add_routes(app)
    ensembles.add_routes(app)
    return app
