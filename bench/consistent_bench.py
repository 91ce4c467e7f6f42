"""3-node benchmark of consistent buckets: a Sapwood devrel with a {"consistent": true} bucket
type (n_val 3) beside a 3-member etcd cluster.

Run from the repository root:

    python bench/consistent_bench.py [--duration 10] [--connections 64] [--keys 1000]
                                     [--value-size 256]

Both clusters run on loopback, one after the other, and take the same load from the same tool
(one wrk per member at the same time, the connections split evenly; see bench/cluster_bench.py):

- Sapwood PUT: compare-and-set writes. Every key is first created (create-if-absent, unmeasured)
  and its context kept; the measured run's writes each carry their key's current context
  (X-Riak-Vclock) and ask for the body back (?returnbody=true), whose context the next write of
  that key carries (bench/wrk/consistent_put.lua). A wrk thread owns its keys, so a context only
  goes stale by a write that was not answered; such a key is read again first (counted apart).
- Sapwood GET: linearizable reads (bench/wrk/consistent_get.lua).
- etcd: its v3 JSON gateway's POST /v3/kv/put (unconditional) and POST /v3/kv/range
  (linearizable, the default), after the same fill.

Targets (issue #6): Sapwood PUT >= 0.75x etcd put, GET >= 1.0x etcd range (req/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cluster_bench import (
    MEMBERS,
    ClusterConfig,
    LoadPlan,
    SystemResult,
    add_cluster_arguments,
    cluster_config,
    compare,
    find_tools,
    format_table,
    format_verdicts,
    measure_etcd,
    measure_operations,
    sapwood_system,
    split_connections,
    system_json,
    with_sapwood_cluster,
)
from etcd import ETCD_OPERATION, etcd_version, http_json
from harness import (
    BenchError,
    check_load_arguments,
    print_report,
    run_main,
    unmeasured_status,
    write_results,
)
from http_bench import BUCKET, wrk_version

TARGET_RATIO = {"PUT": 0.75, "GET": 1.0}
BUCKET_TYPE = "strong"
BUCKET_PATH = f"/types/{BUCKET_TYPE}/buckets/{BUCKET}"
SAPWOOD_SCRIPTS = {"PUT": "consistent_put.lua", "GET": "consistent_get.lua"}
VCLOCK = "X-Riak-Vclock"
TYPE_TIMEOUT_S = 30.0
FILL_CONCURRENCY = 32
FILL_TIMEOUT_S = 300.0
FILL_RETRY_PAUSE_S = 0.2
MAX_FILL_ATTEMPTS = 50  # per key: the first writes to a group wait for its election
# The value starts with "kI|" naming its key (see key_body): room for it and a few bytes more.
MIN_VALUE_SIZE = 16
OPS_LINE = "ops "


def key_body(index: int, value_size: int) -> bytes:
    """The value the wrk script writes too: "kI|" names the key in a returned body."""
    head = f"k{index}|".encode()
    return head + b"v" * max(value_size - len(head), 0)


# ---------------------------------------------------------------------------- Sapwood setup


def create_consistent_type(urls: tuple[str, ...]) -> None:
    """Create and activate the consistent bucket type; wait until every node has it active."""
    import httpx

    base = f"{urls[0]}/admin/bucket-types/{BUCKET_TYPE}"
    created = httpx.post(base, json={"props": {"consistent": True, "n_val": MEMBERS}}, timeout=30)
    if created.status_code != 201:
        raise BenchError(f"creating bucket type: {created.status_code} {created.text.strip()}")
    activated = httpx.post(base + "/activate", timeout=30)
    if activated.status_code != 200:
        raise BenchError(f"activating bucket type: {activated.status_code} {activated.text}")
    deadline = time.monotonic() + TYPE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answers = [http_json(f"{url}/admin/bucket-types/{BUCKET_TYPE}") for url in urls]
        except (OSError, ValueError):  # not there yet (404) or the node is busy
            answers = []
        if answers and all(a.get("status") == "active" and a["props"].get("consistent")
                           for a in answers):
            return
        time.sleep(0.2)
    raise BenchError(f"bucket type {BUCKET_TYPE} was not active on every node in time")


async def _create_keys(urls: tuple[str, ...], keys: int, value_size: int) -> dict[int, str]:
    """Create every key (no context: create-if-absent); each key's context after it."""
    from aiohttp import ClientSession, ClientTimeout, TCPConnector

    contexts: dict[int, str] = {}
    pending = iter(range(keys))

    async def create(session: ClientSession, index: int) -> None:
        url = f"{urls[index % len(urls)]}{BUCKET_PATH}/keys/k{index}"
        problem = ""
        for _ in range(MAX_FILL_ATTEMPTS):
            async with session.put(url, params={"returnbody": "true"},
                                   data=key_body(index, value_size),
                                   headers={"Content-Type": "application/octet-stream"}) as reply:
                await reply.read()
                if reply.status == 200 and VCLOCK in reply.headers:
                    contexts[index] = reply.headers[VCLOCK]
                    return
                problem = f"{reply.status} {(await reply.text())[:200]}"
                if reply.status == 412:  # exists already: read its context
                    async with session.get(url) as got:
                        await got.read()
                        if got.status == 200:
                            contexts[index] = got.headers[VCLOCK]
                            return
            await asyncio.sleep(FILL_RETRY_PAUSE_S)
        raise BenchError(f"could not create k{index}: {problem}")

    async def writer(session: ClientSession) -> None:
        for index in pending:
            await create(session, index)

    timeout = ClientTimeout(total=60)
    async with ClientSession(connector=TCPConnector(limit=FILL_CONCURRENCY),
                             timeout=timeout) as session:
        writers = [writer(session) for _ in range(FILL_CONCURRENCY)]
        await asyncio.wait_for(asyncio.gather(*writers), FILL_TIMEOUT_S)
    return contexts


def fill_sapwood(urls: tuple[str, ...], config: ClusterConfig, path: Path) -> float:
    """Create every key and write their contexts for the PUT script; returns seconds taken."""
    started = time.monotonic()
    contexts = asyncio.run(_create_keys(urls, config.keys, config.value_size))
    path.write_text("".join(f"{i} {c}\n" for i, c in sorted(contexts.items())))
    return time.monotonic() - started


def count_ops(out_dir: Path) -> dict[str, int]:
    """The PUT script's own counts (cas, create, read) over every wrk."""
    totals: Counter[str] = Counter()
    for path in out_dir.glob("wrk-put-*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(OPS_LINE):
                _, name, count = line.split()
                totals[name] += int(count)
    return dict(totals)


def measure_sapwood(wrk: str, config: ClusterConfig, tmp_dir: Path, extra_args: list[str]
                    ) -> tuple[SystemResult, dict[str, Any]]:
    system = sapwood_system()
    detail: dict[str, Any] = {}
    out_dir = tmp_dir / "sapwood-wrk"
    out_dir.mkdir()

    def measure(nodes: list[Any]) -> None:
        urls = tuple(node.url for node in nodes)
        create_consistent_type(urls)
        contexts = tmp_dir / "contexts.txt"
        print(f"[sapwood] {MEMBERS} nodes joined; type {BUCKET_TYPE} consistent, n_val "
              f"{MEMBERS}; creating {config.keys} keys ...", flush=True)
        detail["fill_s"] = fill_sapwood(urls, config, contexts)
        plan = LoadPlan(urls=urls, scripts=dict(SAPWOOD_SCRIPTS),
                        extra_arg={"PUT": str(contexts), "GET": "-"},
                        pids=tuple(node.process.pid for node in nodes))
        measure_operations(system, wrk, plan, config, BUCKET_PATH, lambda covered: None,
                           out_dir)
        detail["put_ops"] = count_ops(out_dir)
        detail["ensembles"] = ensemble_counters(urls)

    with_sapwood_cluster(system, config, tmp_dir, extra_args, measure)
    return system, detail


def ensemble_counters(urls: tuple[str, ...]) -> dict[str, int]:
    """The nodes' consistent-group counters (/stats sapwood_ensembles), summed."""
    totals: Counter[str] = Counter()
    for url in urls:
        stats = http_json(f"{url}/stats").get("sapwood_ensembles", {})
        for name in ("leading", "elections", "commits", "lease_reads", "read_index_reads",
                     "step_downs"):
            totals[name] += int(stats.get(name, 0))
    return dict(totals)


# ---------------------------------------------------------------------------- report


def operation_label(system: str, operation: str) -> str:
    if system == "etcd":
        return f"{operation} ({ETCD_OPERATION[operation]})"
    return f"{operation} ({'CAS' if operation == 'PUT' else 'linear.'})"


def format_detail(detail: dict[str, Any]) -> str:
    ops = detail.get("put_ops", {})
    if not ops:
        return ""
    return (f"Sapwood PUT run: {ops.get('cas', 0)} compare-and-set writes, "
            f"{ops.get('create', 0)} creates, {ops.get('read', 0)} re-reads of a key whose "
            f"context was lost; fill took {detail.get('fill_s', 0.0):.1f} s\n"
            f"Sapwood groups after the runs: {detail.get('ensembles', {})}")


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="3-node Sapwood consistent bucket (CAS put, linearizable get) beside "
                    "3-member etcd (put, linearizable range).")
    add_cluster_arguments(parser, keys=1000)
    args = parser.parse_args(argv)
    check_load_arguments(parser, args, wrk_processes=MEMBERS, min_value_size=MIN_VALUE_SIZE)
    if args.keys < args.connections:
        parser.error("--keys must be at least --connections (a wrk thread must own more keys "
                     "than it has requests in flight)")
    return args


def describe(config: ClusterConfig, wrk: str, etcd: str | None, load_before: float) -> str:
    split = "/".join(str(n) for n in split_connections(config.connections, MEMBERS))
    lines = [
        f"{MEMBERS}-member clusters on loopback; {config.connections} connections ({split}: one "
        f"wrk per member, {config.threads} thread each, run together), {config.value_size}-byte "
        f"values, {config.keys} keys (all created first), {config.duration_s} s per run",
        f"load: {wrk_version(wrk)}; Sapwood type {BUCKET_TYPE!r} {{consistent: true, n_val: "
        f"{MEMBERS}}}: PUT = compare-and-set with the key's current context, GET = linearizable",
    ]
    if etcd is not None:
        lines.append(f"etcd: {etcd} ({etcd_version(etcd)}), JSON gateway kv/put and kv/range "
                     "(linearizable, the default)")
    lines.append(f"{os.cpu_count() or 1} CPU cores shared by every wrk and every member; "
                 f"1-minute load average before the run: {load_before:.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = cluster_config(args)
    wrk, etcd = find_tools(args)
    header = describe(config, wrk, etcd, os.getloadavg()[0])
    print(header, flush=True)
    etcd_result = SystemResult(name="etcd", ran=False)
    sapwood_result = SystemResult(name="sapwood", ran=False)
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sapwood-consistent-bench-") as tmp:
        tmp_dir = Path(tmp)
        if etcd is not None:
            # The same starting point as Sapwood's: every key exists before the timed puts.
            etcd_result = measure_etcd(etcd, wrk, config, tmp_dir, prefill=True)
        if args.only != "etcd":
            sapwood_result, detail = measure_sapwood(wrk, config, tmp_dir, args.sapwood_arg)
    verdicts = compare(etcd_result, sapwood_result, TARGET_RATIO)
    print_report(header, [format_table(etcd_result, sapwood_result, operation_label, 15),
                          format_verdicts(verdicts), format_detail(detail)],
                 [etcd_result, sapwood_result])
    write_results("consistent", {
        "config": asdict(config), "sapwood_args": args.sapwood_arg, "wrk": wrk_version(wrk),
        "etcd": system_json(etcd_result), "sapwood": system_json(sapwood_result),
        "sapwood_detail": detail, "verdicts": verdicts,
    })
    return unmeasured_status([etcd_result, sapwood_result])


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
