"""The node process: one asyncio loop (uvloop when installed) serving the HTTP API until a signal.

On SIGINT or SIGTERM it stops accepting requests, lets the ones in flight finish (for a bounded
time), waits for pending fsyncs, then closes the node, which syncs the store a last time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from sapwood.core.errors import BadRequest, Unavailable
from sapwood.http.app import make_app, runner_options
from sapwood.node.node import Node, NodeConfig
from sapwood.node.transport import HandshakeRefused, Transport, TransportError, attach_transport

log = logging.getLogger("sapwood.server")

SHUTDOWN_GRACE_S = 5.0  # how long requests in flight may take to finish once asked to stop
COMMIT_DRAIN_S = 5.0  # how long to wait for a running group commit before closing the store
_DRAIN_POLL_S = 0.01
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
GC_OLDER_THRESHOLD = 10  # younger collections between older ones (CPython's default)


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise SystemExit(f"unknown log level {level!r}")
    logging.basicConfig(
        stream=sys.stderr, level=numeric,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bound_port(runner: web.AppRunner, fallback: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return fallback


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # no signal handlers on this platform: Ctrl-C raises KeyboardInterrupt


async def _drain_commits(node: Node) -> None:
    # Closing the store while an fsync runs in the executor would crash the process.
    waited = 0.0
    while node.committer.running and waited < COMMIT_DRAIN_S:
        await asyncio.sleep(_DRAIN_POLL_S)
        waited += _DRAIN_POLL_S


def _join_probe(transport: Transport) -> Callable[[str], Awaitable[str]]:
    """The transport's probe, with its failures as the errors a join request answers with."""

    async def probe(address: str) -> str:
        try:
            return await transport.probe(address)
        except HandshakeRefused as exc:
            raise BadRequest(f"{address} refused to join: {exc}") from None
        except TransportError as exc:
            raise Unavailable(f"cannot reach {address}: {exc}") from None

    return probe


async def serve(config: NodeConfig, stop: asyncio.Event | None = None) -> None:
    """Run a node until `stop` is set (or a signal arrives)."""
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    node = Node(config)
    # Until NodeConfig grows this option, admin routes answer loopback clients only.
    admin_from_anywhere = bool(getattr(config, "admin_from_anywhere", False))
    app = make_app(node, admin_from_anywhere=admin_from_anywhere)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S,
                           **runner_options())
    transport = None
    try:
        try:
            transport = await attach_transport(node, config)
        except OSError as exc:
            log.error("cannot listen for other nodes on %s: %s", config.cluster_addr, exc)
            raise SystemExit(1) from None
        node.probe_remote = _join_probe(transport)
        node.start()
        await runner.setup()
        site = web.TCPSite(runner, config.http_host, config.http_port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s: %s", _url(config.http_host, config.http_port), exc)
            raise SystemExit(1) from None
        port = _bound_port(runner, config.http_port)
        log.info("node %s serving %s", node.name, config.data_dir)
        log.info("listening on %s", _url(config.http_host, port))
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        if transport is not None:
            await transport.close()
        await _drain_commits(node)
        node.close()
        log.info("stopped")


def _tune_gc() -> None:
    # Each request leaves a few long-lived objects behind (caches, stats), so the default
    # young-generation threshold (700) ran a collection every ~40 requests and full ones that
    # walk every module object: ~5% of a loaded node's CPU. Frozen startup objects are never
    # walked again, and a larger threshold makes collections rare; cycles are still collected.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD)


def run(config: NodeConfig, log_level: str = "info") -> None:
    """`sapwood start`: serve in the foreground until SIGINT or SIGTERM."""
    _configure_logging(log_level)
    _tune_gc()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config))
    except KeyboardInterrupt:
        log.info("interrupted")
