"""Real node processes on loopback for integration tests.

    node = node_factory()                       # `sapwood start` in a child process, serving
    httpx.get(node.url + "/ping")
    node.kill9(); node.restart()                # crash it, start it again on the same data and port
    node.stop()                                 # SIGTERM, wait; SIGKILL if it does not stop

Tests get nodes from the `node_factory` (per test) or `module_node_factory` (per module)
fixtures, which stop every node they started, by PID, at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

REPO_SRC = Path(__file__).resolve().parents[2] / "src"
DEFAULT_NAME = "sapwood@127.0.0.1"
READY_DEADLINE_S = 30.0  # a node that is not serving by then failed to start
STOP_DEADLINE_S = 15.0  # SIGTERM, then SIGKILL after this long
PORT_ATTEMPTS = 5  # fresh ports to try when another process grabbed the one we picked
_POLL_S = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_SRC), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """One `sapwood start` child process serving HTTP on 127.0.0.1:port."""

    def __init__(self, data_dir: Path, port: int, name: str = DEFAULT_NAME,
                 args: Sequence[str] = (), log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.cluster_port = free_port()
        self.name = name
        self.args = list(args)
        self.log_path = log_path or data_dir.parent / f"{_slug(name)}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("node is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def cluster_address(self) -> str:
        """The inter-node listener, as `sapwood cluster join` takes it."""
        return f"{self.name.split('@')[0]}@127.0.0.1:{self.cluster_port}"

    def command(self) -> list[str]:
        cluster = [] if "--cluster" in self.args else [
            "--cluster", f"127.0.0.1:{self.cluster_port}"]
        return [sys.executable, "-m", "sapwood.cli.main", "start", "--name", self.name,
                "--http", f"127.0.0.1:{self.port}", "--data", str(self.data_dir), *cluster,
                *self.args]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> NodeProcess:
        if self.running:
            raise RuntimeError(f"node {self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=_env(), start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # Check the pid: another process may be answering on this port.
                stats = httpx.get(self.url + "/stats", timeout=1.0)
                if stats.status_code == 200 and stats.json().get("sapwood_pid") == self.proc.pid:
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(_POLL_S)
        self.kill9()
        raise RuntimeError(f"node did not answer within {READY_DEADLINE_S} s:\n{self.log()}")

    def stop(self, timeout: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._close_log()
        return self.proc.returncode

    def kill9(self) -> None:
        """Crash the node: SIGKILL, no chance to sync or clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self) -> NodeProcess:
        """Stop it if it runs, then start it again on the same data directory and port."""
        self.stop()
        return self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_quietly(node: NodeProcess) -> None:
    try:
        node.stop()
    finally:
        node.kill9()


def start_node(base: Path, *, name: str = DEFAULT_NAME, port: int | None = None,
               data_dir: Path | None = None, args: Sequence[str] = ()) -> NodeProcess:
    """Start a node whose data lives under `base` (or `data_dir`); it serves HTTP on return."""
    data = data_dir or base / f"data-{_slug(name)}"
    attempts = 1 if port is not None else PORT_ATTEMPTS
    for attempt in range(attempts):
        node = NodeProcess(data, port or free_port(), name, args, base / f"{_slug(name)}.log")
        try:
            return node.start()
        except RuntimeError:
            stop_quietly(node)
            if attempt + 1 == attempts or "cannot listen" not in node.log():
                raise
    raise AssertionError("unreachable")


def _factory(base: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def factory(**options: Any) -> NodeProcess:
        node = start_node(options.pop("base", base), **options)
        started.append(node)
        return node

    try:
        yield factory
    finally:
        for node in started:
            stop_quietly(node)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """`node_factory(**start_node options)` -> a running NodeProcess; all stopped at teardown."""
    yield from _factory(tmp_path)


@pytest.fixture(scope="module")
def module_node_factory(tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[Callable[..., NodeProcess]]:
    """Like node_factory, for nodes shared by a whole test module."""
    yield from _factory(tmp_path_factory.mktemp("nodes"))
