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
import json
import os
import shlex
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
    _system_json,
    form_sapwood_cluster,
    measure_operations,
    sapwood_nodes,
    split_connections,
)
from etcd import ETCD_OPERATION, ETCD_SCRIPTS, EtcdCluster, etcd_version, find_etcd, http_json
from http_bench import (
    BUCKET,
    OPERATIONS,
    REPO_ROOT,
    RESULTS_DIR,
    BenchError,
    _ms,
    _notes,
    find_wrk,
    log_tail,
    start_server,
    stop_process,
    wrk_version,
)

TARGET_RATIO = {"PUT": 0.75, "GET": 1.0}
BUCKET_TYPE = "strong"
BUCKET_PATH = f"/types/{BUCKET_TYPE}/buckets/{BUCKET}"
SAPWOOD_SCRIPTS = {"PUT": "consistent_put.lua", "GET": "consistent_get.lua"}
VCLOCK = "X-Riak-Vclock"
STARTUP_TIMEOUT_S = 30.0
TYPE_TIMEOUT_S = 30.0
FILL_CONCURRENCY = 32
FILL_TIMEOUT_S = 300.0
FILL_RETRY_PAUSE_S = 0.2
MAX_FILL_ATTEMPTS = 50  # per key: the first writes to a group wait for its election
MAX_KEYS = 1_000_000
MAX_VALUE_SIZE = 1 << 20
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
    from sapwood import __version__

    system = SystemResult(name="sapwood", version=f"sapwood {__version__}")
    detail: dict[str, Any] = {}
    nodes = sapwood_nodes(tmp_dir)
    logs = [node.data_dir / "node.log" for node in nodes]
    out_dir = tmp_dir / "sapwood-wrk"
    out_dir.mkdir()
    try:
        for node, log in zip(nodes, logs, strict=True):
            node.data_dir.mkdir(parents=True, exist_ok=True)
            command = [*node.command(), *extra_args]
            system.commands.append(command)
            print(f"[sapwood] starting: {shlex.join(command)}", flush=True)
            node.process = start_server(command, log)
        form_sapwood_cluster(nodes, config)
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
    except (BenchError, OSError, ValueError) as error:
        tails = [f"\n--- last lines of {log.name} ---\n{t}" for log in logs if (t := log_tail(log))]
        system.error = str(error) + "".join(tails)
    finally:
        for node in nodes:
            if node.process is not None:
                stop_process(node.process)
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


# ---------------------------------------------------------------------------- etcd


def measure_etcd(etcd: str, wrk: str, config: ClusterConfig, tmp_dir: Path) -> SystemResult:
    system = SystemResult(name="etcd", version=etcd_version(etcd))
    cluster = EtcdCluster(etcd, tmp_dir, MEMBERS)
    system.commands.extend(cluster.commands)
    out_dir = tmp_dir / "etcd-wrk"
    out_dir.mkdir()
    try:
        cluster.start(config.startup_timeout_s)
        # The same starting point as Sapwood's: every key exists before the timed puts.
        cluster.prepare_get(BUCKET, config.keys, config.value_size, covered=False)
        plan = LoadPlan(urls=cluster.urls, scripts=dict(ETCD_SCRIPTS),
                        extra_arg={"PUT": cluster.gateway, "GET": cluster.gateway},
                        pids=cluster.pids)
        measure_operations(
            system, wrk, plan, config, BUCKET,
            lambda covered: cluster.prepare_get(BUCKET, config.keys, config.value_size, True),
            out_dir,
        )
    except BenchError as error:
        system.error = str(error) + cluster.log_tails()
    finally:
        cluster.stop()
    return system


# ---------------------------------------------------------------------------- report


def operation_label(system: str, operation: str) -> str:
    if system == "etcd":
        return f"{operation} ({ETCD_OPERATION[operation]})"
    return f"{operation} ({'CAS' if operation == 'PUT' else 'linear.'})"


def format_table(etcd: SystemResult, sapwood: SystemResult) -> str:
    lines = [f"{'system':<9}{'operation':<15}{'req/s':>9}{'p50':>10}{'p99':>10}{'CPU/req':>10}"
             "  notes"]
    for operation in OPERATIONS:
        for system in (etcd, sapwood):
            label = operation_label(system.name, operation)
            run = system.operations.get(operation)
            if run is None:
                why = "failed" if system.ran else "not run"
                lines.append(f"{system.name:<9}{label:<15}{'-':>9}{'-':>10}{'-':>10}{'-':>10}"
                             f"  {why}")
                continue
            lines.append(
                f"{system.name:<9}{label:<15}{run.requests_per_s:>9.0f}{_ms(run.p50_ms):>10}"
                f"{_ms(run.p99_ms):>10}{_ms(system.cpu_ms_per_request[operation]):>10}"
                f"  {_notes(run, operation)}".rstrip())
    return "\n".join(lines)


def compare(etcd: SystemResult, sapwood: SystemResult) -> dict[str, dict[str, Any]]:
    verdicts: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        base, ours = etcd.operations.get(operation), sapwood.operations.get(operation)
        if base is None or ours is None or base.requests_per_s <= 0:
            continue
        ratio = ours.requests_per_s / base.requests_per_s
        clean = ours.non_2xx == 0 and ours.socket_errors == 0
        verdicts[operation] = {
            "ratio": ratio, "target": TARGET_RATIO[operation], "clean": clean,
            "pass": ratio >= TARGET_RATIO[operation] and clean,
            "p99_ratio": ours.p99_ms / base.p99_ms if base.p99_ms > 0 else None,
        }
    return verdicts


def format_verdicts(verdicts: dict[str, dict[str, Any]]) -> str:
    lines = []
    for operation, verdict in verdicts.items():
        status = "PASS" if verdict["pass"] else "MISS"
        caveat = "" if verdict["clean"] else "  (Sapwood answered errors: see notes)"
        versus = f"Sapwood {operation} / etcd {ETCD_OPERATION[operation]}:"
        p99 = verdict["p99_ratio"]
        p99_text = f", p99 {p99:.2f}x etcd's" if p99 is not None else ""
        lines.append(f"{versus:<26}{verdict['ratio']:5.2f}x req/s (target >= "
                     f"{verdict['target']:.2f}x){p99_text}  {status}{caveat}")
    return "\n".join(lines)


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
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="in total, over 3 members")
    parser.add_argument("--threads", type=int, default=1, help="threads of each member's wrk")
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys")
    parser.add_argument("--value-size", type=int, default=256, help="value size in bytes")
    parser.add_argument("--sapwood-arg", action="append", default=[], metavar="ARG",
                        help="extra `sapwood start` argument for every node, repeatable")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S)
    parser.add_argument("--only", choices=("etcd", "sapwood"), help="measure one system only")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    args = parser.parse_args(argv)
    if not MEMBERS * args.threads <= args.connections:
        parser.error(f"need {MEMBERS} x --threads <= --connections")
    if not args.connections <= args.keys <= MAX_KEYS:
        parser.error(f"--keys must be between --connections and {MAX_KEYS} (a wrk thread "
                     "must own more keys than it has requests in flight)")
    if not 16 <= args.value_size <= MAX_VALUE_SIZE:
        parser.error(f"--value-size must be between 16 and {MAX_VALUE_SIZE}")
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
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
    config = ClusterConfig(
        duration_s=args.duration, connections=args.connections, threads=args.threads,
        keys=args.keys, value_size=args.value_size, w=0, r=0,
        startup_timeout_s=args.startup_timeout,
    )
    wrk = find_wrk(allow_install=not args.no_install)
    etcd = None if args.only == "sapwood" else find_etcd(allow_install=not args.no_install)
    header = describe(config, wrk, etcd, os.getloadavg()[0])
    print(header, flush=True)
    etcd_result = SystemResult(name="etcd", ran=False)
    sapwood_result = SystemResult(name="sapwood", ran=False)
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sapwood-consistent-bench-") as tmp:
        tmp_dir = Path(tmp)
        if etcd is not None:
            etcd_result = measure_etcd(etcd, wrk, config, tmp_dir)
        if args.only != "etcd":
            sapwood_result, detail = measure_sapwood(wrk, config, tmp_dir, args.sapwood_arg)
    verdicts = compare(etcd_result, sapwood_result)
    print()
    print(header)
    print(format_table(etcd_result, sapwood_result))
    if verdicts:
        print(format_verdicts(verdicts))
    if detail:
        print(format_detail(detail))
    for system in (etcd_result, sapwood_result):
        if system.error:
            print(f"\n[{system.name}] could not be measured: {system.error}", file=sys.stderr)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"consistent-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(config),
        "sapwood_args": args.sapwood_arg, "cpu_cores": os.cpu_count(), "wrk": wrk_version(wrk),
        "etcd": _system_json(etcd_result), "sapwood": _system_json(sapwood_result),
        "sapwood_detail": detail, "verdicts": verdicts,
    }, indent=2) + "\n")
    print(f"\nresults written to {path.relative_to(REPO_ROOT)}")
    return 1 if etcd_result.error or sapwood_result.error else 0


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT / "src"))
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
