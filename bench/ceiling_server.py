"""The ceiling for Sapwood's HTTP benchmark: the least work an aiohttp+uvloop server can do.

It answers the same URL shapes as Sapwood's Riak API so that the same wrk scripts hit both:

    PUT /buckets/{bucket}/keys/{key}  -> stores the body in a dict, 204
    GET /buckets/{bucket}/keys/{key}  -> 200 with the body, or 404
    GET /ping                         -> 200 "OK" (the readiness probe the harness uses)

Run: python bench/ceiling_server.py --port 8099 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop
from aiohttp import web

# The ceiling must not grow without bound if it is pointed at a long run with many keys.
MAX_STORED_KEYS = 1_000_000
OCTET_STREAM = "application/octet-stream"

STORE_KEY: web.AppKey[dict[tuple[str, str], bytes]] = web.AppKey("store", dict)


async def put_object(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    slot = (request.match_info["bucket"], request.match_info["key"])
    if slot not in store and len(store) >= MAX_STORED_KEYS:
        return web.Response(status=507, text=f"ceiling server holds at most {MAX_STORED_KEYS} keys")
    store[slot] = await request.read()
    return web.Response(status=204)


async def get_object(request: web.Request) -> web.Response:
    slot = (request.match_info["bucket"], request.match_info["key"])
    body = request.app[STORE_KEY].get(slot)
    if body is None:
        return web.Response(status=404, text="not found\n")
    return web.Response(status=200, body=body, content_type=OCTET_STREAM)


async def ping(_request: web.Request) -> web.Response:
    return web.Response(status=200, text="OK")


def build_app() -> web.Application:
    app = web.Application()
    app[STORE_KEY] = {}
    app.router.add_put("/buckets/{bucket}/keys/{key}", put_object)
    app.router.add_get("/buckets/{bucket}/keys/{key}", get_object)
    app.router.add_get("/ping", ping)
    return app


async def serve(host: str, port: int) -> None:
    # No access log: formatting a line per request would measure logging, not serving.
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
