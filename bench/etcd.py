"""etcd as a benchmark baseline: find (or install) it, run a member cluster on loopback, fill it.

Shared by bench/cluster_bench.py (beside available buckets) and bench/consistent_bench.py
(beside consistent buckets). The load itself comes from wrk with bench/wrk/etcd_put.lua
(POST {gateway}/kv/put) and bench/wrk/etcd_range.lua (POST {gateway}/kv/range, linearizable:
etcd's default, no "serializable" field), one wrk per member.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    BenchError,
    find_or_install,
    free_port,
    log_tails,
    start_server,
    stop_process,
)

ETCD_PACKAGE = "etcd-server"
# The JSON gateway's path prefix moved from /v3alpha (3.2) to /v3beta (3.3) to /v3 (3.4+).
ETCD_GATEWAYS = ("/v3", "/v3beta", "/v3alpha")
ETCD_OPERATION = {"PUT": "put", "GET": "range"}
ETCD_SCRIPTS = {"PUT": "etcd_put.lua", "GET": "etcd_range.lua"}
DEFAULT_MEMBERS = 3
POLL_INTERVAL_S = 0.1
HTTP_TIMEOUT_S = 5.0
FILL_CONCURRENCY = 32
FILL_TIMEOUT_S = 300.0


def find_etcd(allow_install: bool = True) -> str:
    """Path of `etcd`; installs Debian's etcd-server as root when it is missing."""
    path = find_or_install("etcd", ETCD_PACKAGE, allow_install)
    if path is None:
        raise BenchError(f"etcd is not installed (Debian/Ubuntu: apt-get install {ETCD_PACKAGE})")
    return path


def etcd_version(path: str) -> str:
    """`etcd --version`'s first line, e.g. "etcd Version: 3.4.23"."""
    reply = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    lines = (reply.stdout or reply.stderr).strip().splitlines()
    return lines[0] if lines else "etcd (unknown version)"


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self, etcd: str, initial_cluster: str, token: str) -> list[str]:
        return [
            etcd, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token, "--logger", "zap", "--log-level", "warn",
        ]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET (no body) or POST a JSON body; the decoded JSON reply. Raises OSError on failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
        return json.loads(reply.read() or b"{}")


def wait_etcd_healthy(
    member: EtcdMember, proc: subprocess.Popen[bytes], deadline: float
) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"etcd {member.name} exited with {proc.returncode}")
        try:
            if http_json(f"{member.client_url}/health").get("health") == "true":
                return
        except (OSError, ValueError):
            pass
        time.sleep(POLL_INTERVAL_S)
    raise BenchError(f"etcd {member.name} was not healthy in time")


def find_gateway(url: str) -> str:
    """The JSON gateway's path prefix this etcd serves (/v3 for 3.4)."""
    for prefix in ETCD_GATEWAYS:
        try:
            http_json(f"{url}{prefix}/kv/range", {"key": b64("probe")})
        except urllib.error.HTTPError as error:
            if error.code == 404:
                continue
            raise BenchError(f"etcd gateway {prefix}/kv/range answered {error.code}") from error
        except OSError as error:
            raise BenchError(f"etcd gateway probe failed: {error}") from error
        return prefix
    raise BenchError(f"etcd serves none of the gateway prefixes {', '.join(ETCD_GATEWAYS)}")


def etcd_key_count(url: str, gateway: str, prefix: str) -> int:
    """How many keys under `prefix/` exist (a count-only range)."""
    start = f"{prefix}/"
    end = start[:-1] + chr(ord(start[-1]) + 1)
    body = {"key": b64(start), "range_end": b64(end), "count_only": True}
    # int64 fields come back as JSON strings, and zero values are left out.
    return int(http_json(f"{url}{gateway}/kv/range", body).get("count", 0))


async def _fill_etcd(url: str, gateway: str, prefix: str, keys: int, value_size: int) -> int:
    from aiohttp import ClientSession, TCPConnector

    value = base64.b64encode(b"v" * value_size).decode()
    pending = iter(range(keys))
    failures = 0

    async def writer(session: ClientSession) -> None:
        nonlocal failures
        for index in pending:
            body = {"key": b64(f"{prefix}/k{index}"), "value": value}
            async with session.post(f"{url}{gateway}/kv/put", json=body) as reply:
                await reply.read()
                failures += reply.status >= 300

    async with ClientSession(connector=TCPConnector(limit=FILL_CONCURRENCY)) as session:
        writers = [writer(session) for _ in range(FILL_CONCURRENCY)]
        await asyncio.wait_for(asyncio.gather(*writers), FILL_TIMEOUT_S)
    return failures


def prepare_etcd_get(
    url: str, gateway: str, prefix: str, keys: int, value_size: int, covered: bool
) -> None:
    """Make sure keys `prefix/k0..` all exist before the range run (writing them if the timed
    put run may have missed some)."""
    if not covered:
        print("[etcd] timed PUT run may have missed some keys: writing them all once")
        failures = asyncio.run(_fill_etcd(url, gateway, prefix, keys, value_size))
        if failures:
            raise BenchError(f"{failures} of {keys} etcd puts failed while filling")
    # A range for a missing key is a 200 with no kvs: check they all exist instead.
    found = etcd_key_count(url, gateway, prefix)
    if found != keys:
        raise BenchError(f"etcd holds {found} of the {keys} keys before the range run")


class EtcdCluster:
    """A fresh etcd cluster of `size` members on loopback, data under `tmp_dir`.

    `start()` launches every member, waits until each is healthy and finds the JSON gateway;
    `stop()` stops them by PID (call it in a `finally`, also after a failed start).
    """

    def __init__(self, etcd: str, tmp_dir: Path, size: int = DEFAULT_MEMBERS) -> None:
        self.etcd = etcd
        self.members = [
            EtcdMember(f"m{i}", free_port(), free_port(), tmp_dir / f"etcd-m{i}")
            for i in range(1, size + 1)
        ]
        self.logs = [tmp_dir / f"etcd-{m.name}.log" for m in self.members]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gateway = ""
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"sapwood-bench-{os.getpid()}"
        self.commands = [m.command(etcd, initial, token) for m in self.members]

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(m.client_url for m in self.members)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(proc.pid for proc in self.procs)

    def start(self, startup_timeout_s: float) -> None:
        for command, log in zip(self.commands, self.logs, strict=True):
            print(f"[etcd] starting: {shlex.join(command)}", flush=True)
            self.procs.append(start_server(command, log))
        deadline = time.monotonic() + startup_timeout_s
        for member, proc in zip(self.members, self.procs, strict=True):
            wait_etcd_healthy(member, proc, deadline)
        self.gateway = find_gateway(self.members[0].client_url)
        print(f"[etcd] {len(self.members)} members healthy; JSON gateway at "
              f"{self.gateway}/kv/put and {self.gateway}/kv/range (linearizable range)",
              flush=True)

    def prepare_get(self, prefix: str, keys: int, value_size: int, covered: bool) -> None:
        prepare_etcd_get(self.members[0].client_url, self.gateway, prefix, keys, value_size,
                         covered)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)

    def log_tails(self) -> str:
        return log_tails(self.logs)
