"""HTTP API tests: an aiohttp test client against a real Node on a temporary directory.

Tests here may be `async def`: this directory runs them with asyncio.run (no plugin needed).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sapwood.http.app import make_app, runner_options
from sapwood.node.node import Node, NodeConfig


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@asynccontextmanager
async def serve_node(data_dir: Path, *, app_hook: Any = None, **app_options: Any
                ) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A client for a fresh node on `data_dir` (these tests never crash it)."""
    node = Node(NodeConfig(data_dir=data_dir, ring_size=8))
    app = make_app(node, **app_options)
    if app_hook is not None:
        app_hook(app)
    try:
        server = TestServer(app)
        # TestServer ignores options given to its constructor: start it with ours first.
        await server.start_server(**runner_options())
        async with TestClient(server) as client:
            yield client
    finally:
        node.close()


@pytest.fixture
def serve(tmp_path: Path) -> Any:
    """`async with serve() as client:` a fresh node under this test's tmp_path."""
    return lambda **options: serve_node(tmp_path / "data", **options)
