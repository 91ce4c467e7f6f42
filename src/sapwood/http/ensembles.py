"""GET /admin/ensembles: the consistent-group members this node hosts, behind
`sapwood ensemble status` (which asks every member node and joins the answers).

    {"node": name, "members": [{"group", "member", "role", "term", "leader", "members",
     "committed_members", "target_members", "commit_index", "applied_index", "last_index",
     "voter", "lease"}, ...], "stats": {...}}
"""

from __future__ import annotations

from aiohttp import web

from sapwood.http.admin import ADMIN_PREFIX, check_admin_peer
from sapwood.http.guard import guarded
from sapwood.http.state import node_of


async def ensemble_status(request: web.Request) -> web.Response:
    check_admin_peer(request)
    node = node_of(request)
    ensembles = node.core.ensembles
    return web.json_response({"node": node.name, "members": ensembles.status(),
                              "stats": ensembles.stats()})


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", ADMIN_PREFIX + "/ensembles", guarded(ensemble_status))
