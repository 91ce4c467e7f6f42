"""`sapwood devrel`: a real N-process cluster on loopback, for development and demos.

Node i (1-based) is `devI@127.0.0.1` with HTTP on 10000+10*i+8 and the inter-node listener on
10000+10*i+9. The nodes are joined, the plan committed, and ownership handoff waited for; Ctrl-C
or SIGTERM stops them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

BASE_PORT = 10_000
MAX_DEVREL_NODES = 9
READY_TIMEOUT_S = 30.0
HANDOFF_TIMEOUT_S = 300.0
STOP_GRACE_S = 10.0


@dataclass
class DevNode:
    index: int
    data_root: Path
    secret_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"dev{self.index}@127.0.0.1"

    @property
    def http_port(self) -> int:
        return BASE_PORT + 10 * self.index + 8

    @property
    def cluster_port(self) -> int:
        return BASE_PORT + 10 * self.index + 9

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        return self.data_root / f"dev{self.index}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "sapwood.cli.main", "start", "--name", self.name,
            "--http", f"127.0.0.1:{self.http_port}", "--cluster", f"127.0.0.1:{self.cluster_port}",
            "--data", str(self.data_dir), "--secret-file", str(self.secret_file),
        ]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "node.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_secret(path: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)


def wait_ready(node: DevNode, deadline: float) -> None:
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            raise click.ClickException(
                f"{node.name} exited with {node.process.returncode}; see {node.data_dir}/node.log")
        try:
            # Check the pid: a node left over from an earlier run may hold the port.
            stats = httpx.get(node.url + "/stats", timeout=1.0)
            if stats.status_code == 200:
                pid = stats.json().get("sapwood_pid")
                if node.process is not None and pid == node.process.pid:
                    return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise click.ClickException(f"{node.name} did not answer on {node.url} in time")


def admin(node: DevNode, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.request(method, f"{node.url}/admin/cluster/{path}", json=body, timeout=30.0)
    if response.status_code >= 400:
        raise click.ClickException(f"{node.name}: {response.status_code} {response.text.strip()}")
    return response.json()


def form_cluster(nodes: list[DevNode]) -> None:
    first = nodes[0]
    members = {m["name"] for m in admin(first, "GET", "status")["members"]
               if m["status"] != "removed"}
    staged = False
    for node in nodes[1:]:
        if node.name in members:
            continue
        admin(node, "POST", "join", {"node": f"{first.name}:{first.cluster_port}"})
        click.echo(f"  {node.name} joins {first.name}")
        staged = True
    if staged:
        time.sleep(1.0)  # let the staged joins reach the claimant by gossip
        result = admin(first, "POST", "commit")
        click.echo(f"  committed: {result['transfers']} partitions to transfer")


def wait_for_handoff(nodes: list[DevNode], deadline: float) -> None:
    last = None
    while time.monotonic() < deadline:
        pending = 0
        for node in nodes:
            status = admin(node, "GET", "status")
            handoffs = status["handoffs"]
            pending += len(handoffs["waiting"]) + len(handoffs["active"])
            pending += status["transfers_pending"] if node is nodes[0] else 0
        if pending == 0:
            click.echo("  handoff complete")
            return
        if pending != last:
            click.echo(f"  waiting for handoff: {pending} transfers left")
            last = pending
        time.sleep(0.5)
    raise click.ClickException("ownership handoff did not finish in time")


@click.command()
@click.option("--nodes", "count", default=3, show_default=True,
              type=click.IntRange(1, MAX_DEVREL_NODES))
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/devrel"), show_default=True)
def devrel(count: int, data_root: Path) -> None:
    """Start COUNT node processes on loopback, join them and run until Ctrl-C."""
    secret_file = data_root / "cluster.secret"
    ensure_secret(secret_file)
    nodes = [DevNode(i, data_root, secret_file) for i in range(1, count + 1)]
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for node in nodes:
            node.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for node in nodes:
            wait_ready(node, deadline)
        click.echo(f"{count} nodes up; forming the cluster")
        if count > 1:
            form_cluster(nodes)
            wait_for_handoff(nodes, time.monotonic() + HANDOFF_TIMEOUT_S)
        click.echo("")
        for node in nodes:
            click.echo(f"{node.name}  {node.url}   (log: {node.data_dir / 'node.log'})")
            click.echo(f"    restart alone: {' '.join(node.command())}")
        click.echo("\nCluster ready. Ctrl-C stops every node.", err=False)
        while all(n.process is not None and n.process.poll() is None for n in nodes):
            time.sleep(0.5)
        dead = [n.name for n in nodes if n.process is not None and n.process.poll() is not None]
        click.echo(f"node(s) exited: {', '.join(dead)}; stopping the rest", err=True)
    except KeyboardInterrupt:
        stopping = True
        click.echo("\nstopping...")
    finally:
        for node in nodes:
            node.stop()
    if not stopping:
        sys.exit(1)
