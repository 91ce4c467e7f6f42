"""3-node benchmark: a Sapwood devrel (n_val=3, w=2 / r=2) beside a 3-member etcd cluster.

Run from the repository root:

    python bench/cluster_bench.py [--duration 10] [--connections 64] [--keys 10000]
                                  [--value-size 256] [--w 2] [--r 2]

Both clusters run on loopback, one after the other, and take the same load from the same tool:
one wrk per member at the same time, the connections split evenly between them, PUT then GET
(Sapwood: PUT/GET /buckets/bench/keys/kI?w=2 / ?r=2; etcd: its v3 JSON gateway's POST
/v3/kv/put and linearizable POST /v3/kv/range). The wrk processes' req/s are summed and their
latency histograms merged into exact percentiles. Sapwood's req/s is printed as a multiple of
etcd's, against the cluster issue's target (>= 1.0x). See bench/README.md.

etcd is found on the PATH or, as root on Debian, installed with `apt-get install etcd-server`
(bench/etcd.py runs and fills the etcd cluster). The single-node harness (bench/http_bench.py)
provides wrk handling, the report parser and the process helpers, bench/harness.py the options,
the report's tail and the results file; the Sapwood cluster is formed with the devrel code
(sapwood.cli.devrel). bench/consistent_bench.py reuses this module's etcd and cluster code.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from etcd import ETCD_OPERATION, ETCD_SCRIPTS, EtcdCluster, etcd_version, find_etcd, http_json
from harness import (
    BenchError,
    add_load_arguments,
    check_load_arguments,
    format_ms,
    free_port,
    log_tails,
    print_report,
    run_main,
    start_server,
    stop_process,
    unmeasured_status,
    write_results,
)
from http_bench import (
    BUCKET,
    OPERATIONS,
    WRK_OVERRUN_S,
    WRK_SCRIPTS,
    WrkResult,
    _notes,
    fill_keys,
    find_wrk,
    parse_wrk_output,
    wrk_version,
)

MEMBERS = 3
# The cluster issue's targets: Sapwood's req/s as a multiple of etcd's (put and range).
TARGET_RATIO = {"PUT": 1.0, "GET": 1.0}
HANDOFF_TIMEOUT_S = 300.0
PERCENTILES = ("50", "75", "90", "99")
HISTOGRAM_LINE = "hist "


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    duration_s: int
    connections: int
    threads: int
    keys: int
    value_size: int
    w: int
    r: int
    startup_timeout_s: float


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How wrk loads one system: a URL per member, a script and its 5th argument per operation."""

    urls: tuple[str, ...]
    scripts: dict[str, str]
    extra_arg: dict[str, str]
    pids: tuple[int, ...]


@dataclass(slots=True)
class SystemResult:
    """One cluster's merged figures per operation (and each wrk's), or why it failed."""

    name: str
    version: str = ""
    commands: list[list[str]] = field(default_factory=list)
    operations: dict[str, WrkResult] = field(default_factory=dict)
    per_member: dict[str, list[WrkResult]] = field(default_factory=dict)
    # CPU time (user + system, all threads, all members) per request: unlike req/s it hardly
    # depends on what else shares the cores, so it compares the systems' efficiency directly.
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    ran: bool = True


# ---------------------------------------------------------------------------- spread load


def split_connections(total: int, parts: int) -> list[int]:
    """`total` connections over `parts` wrk processes, as evenly as possible (64/3: 22, 21, 21)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def parse_histogram(text: str) -> Counter[int]:
    """The `hist <us> <count>` lines the cluster wrk scripts print from done()."""
    histogram: Counter[int] = Counter()
    for line in text.splitlines():
        if line.startswith(HISTOGRAM_LINE):
            _, micros, count = line.split()
            histogram[int(micros)] += int(count)
    return histogram


def histogram_percentile_ms(histogram: Counter[int], percentile: float) -> float:
    """The percentile as wrk computes it (rank = C round(p * count + 0.5)), in milliseconds."""
    total = sum(histogram.values())
    if total == 0:
        raise BenchError("wrk recorded no latencies (no request completed)")
    # C's round() goes half away from zero, Python's to even: floor(x + 0.5) is C's for x >= 0.
    rank = math.floor(percentile / 100.0 * total + 0.5 + 0.5)
    seen = 0
    for micros in sorted(histogram):
        seen += histogram[micros]
        if seen >= rank:
            return micros / 1000.0
    return max(histogram) / 1000.0


def merge_runs(runs: list[WrkResult], histograms: list[Counter[int]]) -> WrkResult:
    """Concurrent wrk runs as one: summed rates and counts, percentiles of the merged histogram."""
    merged: Counter[int] = Counter()
    for histogram in histograms:
        merged.update(histogram)
    return WrkResult(
        requests_per_s=sum(run.requests_per_s for run in runs),
        requests=sum(run.requests for run in runs),
        duration_s=max(run.duration_s for run in runs),
        latency_ms={pct: histogram_percentile_ms(merged, float(pct)) for pct in PERCENTILES},
        non_2xx=sum(run.non_2xx for run in runs),
        socket_errors=sum(run.socket_errors for run in runs),
    )


def spread_commands(
    wrk: str, plan: LoadPlan, operation: str, config: ClusterConfig, namespace: str
) -> list[list[str]]:
    script = WRK_SCRIPTS / plan.scripts[operation]
    parts = len(plan.urls)
    commands = []
    for part, (url, connections) in enumerate(
        zip(plan.urls, split_connections(config.connections, parts), strict=True)
    ):
        commands.append([
            wrk, f"--threads={config.threads}", f"--connections={connections}",
            f"--duration={config.duration_s}s", "--latency", f"--script={script}", url, "--",
            str(config.keys), str(config.value_size), str(config.threads), namespace,
            plan.extra_arg[operation], str(part), str(parts),
        ])
    return commands


def run_spread(
    wrk: str, plan: LoadPlan, operation: str, config: ClusterConfig, namespace: str,
    out_dir: Path,
) -> tuple[WrkResult, list[WrkResult]]:
    """One wrk per member at the same time; returns the merged result and each wrk's."""
    commands = spread_commands(wrk, plan, operation, config, namespace)
    out_paths = [out_dir / f"wrk-{operation.lower()}-{part}.txt" for part in range(len(commands))]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command, out_path in zip(commands, out_paths, strict=True):
            # Files, not pipes: a wrk whose histogram fills a pipe would wait on the reader.
            with out_path.open("wb") as out:
                procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + config.duration_s + WRK_OVERRUN_S
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk did not finish within {WRK_OVERRUN_S:.0f} s of --duration") from error
    finally:
        for proc in procs:
            stop_process(proc)
    runs, histograms = [], []
    for proc, out_path in zip(procs, out_paths, strict=True):
        output = out_path.read_text(errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"wrk exited with {proc.returncode}:\n{output}")
        runs.append(parse_wrk_output(output))
        histograms.append(parse_histogram(output))
    return merge_runs(runs, histograms), runs


def process_cpu_s(pids: tuple[int, ...]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def put_covered_keys(per_member: list[WrkResult], config: ClusterConfig) -> bool:
    # Each wrk walks the keys from its own offset; twice its share means it covered its stretch
    # unless its threads' rates differed by more than 2x (as in http_bench).
    share = 2 * config.keys / len(per_member)
    return all(run.non_2xx == 0 and run.requests >= share for run in per_member)


def measure_operations(
    system: SystemResult, wrk: str, plan: LoadPlan, config: ClusterConfig, namespace: str,
    prepare_get: Callable[[bool], None], out_dir: Path,
) -> None:
    """PUT then GET; prepare_get(covered) makes sure every key exists before GET."""
    for operation in OPERATIONS:
        if operation == "GET":
            prepare_get(put_covered_keys(system.per_member["PUT"], config))
        print(f"[{system.name}] {operation} for {config.duration_s} s on "
              f"{len(plan.urls)} members ...", flush=True)
        cpu_before = process_cpu_s(plan.pids)
        merged, runs = run_spread(wrk, plan, operation, config, namespace, out_dir)
        cpu_s = process_cpu_s(plan.pids) - cpu_before
        system.cpu_ms_per_request[operation] = 1000.0 * cpu_s / max(merged.requests, 1)
        system.operations[operation] = merged
        system.per_member[operation] = runs


# ---------------------------------------------------------------------------- etcd


def measure_etcd(
    etcd: str, wrk: str, config: ClusterConfig, tmp_dir: Path, *, prefill: bool = False
) -> SystemResult:
    """Start an etcd cluster, measure put then range, stop it; `prefill` writes every key before
    the timed puts (the starting point of a system that creates its keys first)."""
    system = SystemResult(name="etcd", version=etcd_version(etcd))
    cluster = EtcdCluster(etcd, tmp_dir, MEMBERS)
    system.commands.extend(cluster.commands)
    out_dir = tmp_dir / "etcd-wrk"
    out_dir.mkdir()
    try:
        cluster.start(config.startup_timeout_s)
        if prefill:
            cluster.prepare_get(BUCKET, config.keys, config.value_size, covered=False)
        plan = LoadPlan(
            urls=cluster.urls,
            scripts=dict(ETCD_SCRIPTS),
            extra_arg={"PUT": cluster.gateway, "GET": cluster.gateway},
            pids=cluster.pids,
        )
        measure_operations(
            system, wrk, plan, config, BUCKET,
            lambda covered: cluster.prepare_get(
                BUCKET, config.keys, config.value_size, covered or prefill
            ),
            out_dir,
        )
    except BenchError as error:
        system.error = str(error) + cluster.log_tails()
    finally:
        cluster.stop()
    return system


# ---------------------------------------------------------------------------- Sapwood


def sapwood_nodes(tmp_dir: Path) -> list[Any]:
    """Devrel nodes dev1..dev3 on free ports (devrel's own ports are fixed), one secret."""
    from sapwood.cli.devrel import DevNode, ensure_secret

    class BenchNode(DevNode):
        def __init__(self, index: int, data_root: Path, secret_file: Path) -> None:
            super().__init__(index, data_root, secret_file)
            self._ports = (free_port(), free_port())

        @property
        def http_port(self) -> int:
            return self._ports[0]

        @property
        def cluster_port(self) -> int:
            return self._ports[1]

    secret = tmp_dir / "cluster.secret"
    ensure_secret(secret)
    return [BenchNode(i, tmp_dir / "sapwood", secret) for i in range(1, MEMBERS + 1)]


def form_sapwood_cluster(nodes: list[Any], config: ClusterConfig) -> None:
    """Wait for each node, join them, commit the plan and wait for ownership handoff."""
    import click
    import httpx

    from sapwood.cli import devrel

    try:
        deadline = time.monotonic() + config.startup_timeout_s
        for node in nodes:
            devrel.wait_ready(node, deadline)
        devrel.form_cluster(nodes)
        devrel.wait_for_handoff(nodes, time.monotonic() + HANDOFF_TIMEOUT_S)
    except click.ClickException as error:
        raise BenchError(error.message) from error
    except httpx.HTTPError as error:
        raise BenchError(f"cluster admin request failed: {error}") from error


def bucket_n_val(url: str) -> int:
    props = http_json(f"{url}/buckets/{BUCKET}/props").get("props", {})
    return int(props.get("n_val", 0))


def prepare_sapwood_get(url: str, config: ClusterConfig, covered: bool) -> None:
    # Misses show up as 404s in the GET run's notes, so only fill when PUT may have missed some.
    if not covered:
        print("[sapwood] timed PUT run may have missed some keys: writing them all once")
        fill_keys(url, config.keys, config.value_size)


def sapwood_system() -> SystemResult:
    from sapwood import __version__

    return SystemResult(name="sapwood", version=f"sapwood {__version__}")


def with_sapwood_cluster(
    system: SystemResult, config: ClusterConfig, tmp_dir: Path, extra_args: list[str],
    measure: Callable[[list[Any]], None],
) -> None:
    """Start MEMBERS devrel nodes (with `extra_args`), form the cluster, run measure(nodes) and
    stop every node; a failure lands in system.error with the nodes' log tails."""
    nodes = sapwood_nodes(tmp_dir)
    logs = [node.data_dir / "node.log" for node in nodes]
    try:
        for node, log in zip(nodes, logs, strict=True):
            node.data_dir.mkdir(parents=True, exist_ok=True)
            command = [*node.command(), *extra_args]
            system.commands.append(command)
            print(f"[sapwood] starting: {shlex.join(command)}", flush=True)
            node.process = start_server(command, log)
        form_sapwood_cluster(nodes, config)
        measure(nodes)
    except (BenchError, OSError, ValueError) as error:
        system.error = str(error) + log_tails(logs)
    finally:
        for node in nodes:
            if node.process is not None:
                stop_process(node.process)


def measure_sapwood(
    wrk: str, config: ClusterConfig, tmp_dir: Path, extra_args: list[str]
) -> SystemResult:
    system = sapwood_system()

    def measure(nodes: list[Any]) -> None:
        n_val = bucket_n_val(nodes[0].url)
        if n_val != MEMBERS:
            raise BenchError(f"bucket {BUCKET} has n_val={n_val}, expected {MEMBERS}")
        print(f"[sapwood] {MEMBERS} nodes joined, handoff done; bucket {BUCKET} n_val={n_val}",
              flush=True)
        plan = LoadPlan(
            urls=tuple(node.url for node in nodes),
            scripts={"PUT": "cluster_put.lua", "GET": "cluster_get.lua"},
            extra_arg={"PUT": f"w={config.w}", "GET": f"r={config.r}"},
            pids=tuple(node.process.pid for node in nodes),
        )
        measure_operations(
            system, wrk, plan, config, BUCKET,
            lambda covered: prepare_sapwood_get(nodes[0].url, config, covered),
            tmp_dir,
        )

    with_sapwood_cluster(system, config, tmp_dir, extra_args, measure)
    return system


# ---------------------------------------------------------------------------- report


def operation_label(system: str, operation: str, config: ClusterConfig) -> str:
    if system == "etcd":
        return f"{operation} ({ETCD_OPERATION[operation]})"
    quorum = f"w={config.w}" if operation == "PUT" else f"r={config.r}"
    return f"{operation} ({quorum})"


def format_table(
    etcd: SystemResult, sapwood: SystemResult, label: Callable[[str, str], str],
    label_width: int = 13,
) -> str:
    """A row per operation and system; label(system name, operation) names the operation."""
    w = label_width
    lines = [f"{'system':<9}{'operation':<{w}}{'req/s':>9}{'p50':>10}{'p99':>10}{'CPU/req':>10}"
             "  notes"]
    for operation in OPERATIONS:
        for system in (etcd, sapwood):
            name = label(system.name, operation)
            run = system.operations.get(operation)
            if run is None:
                why = "failed" if system.ran else "not run"
                lines.append(f"{system.name:<9}{name:<{w}}{'-':>9}{'-':>10}{'-':>10}{'-':>10}"
                             f"  {why}")
                continue
            cpu = system.cpu_ms_per_request[operation]
            lines.append(
                f"{system.name:<9}{name:<{w}}{run.requests_per_s:>9.0f}"
                f"{format_ms(run.p50_ms):>10}{format_ms(run.p99_ms):>10}{format_ms(cpu):>10}"
                f"  {_notes(run, operation)}".rstrip()
            )
    return "\n".join(lines)


def _clean(run: WrkResult) -> bool:
    return run.non_2xx == 0 and run.socket_errors == 0


def compare(
    etcd: SystemResult, sapwood: SystemResult, targets: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Sapwood's req/s over etcd's per operation, against `targets`; errors make it a MISS."""
    verdicts: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        base, ours = etcd.operations.get(operation), sapwood.operations.get(operation)
        if base is None or ours is None or base.requests_per_s <= 0:
            continue
        ratio = ours.requests_per_s / base.requests_per_s
        verdicts[operation] = {
            "ratio": ratio,
            "target": targets[operation],
            "pass": ratio >= targets[operation] and _clean(ours),
            "clean": _clean(ours),
            "etcd_clean": _clean(base),
            "p99_ratio": ours.p99_ms / base.p99_ms if base.p99_ms > 0 else None,
        }
    return verdicts


def format_verdicts(verdicts: dict[str, dict[str, Any]]) -> str:
    lines = []
    for operation, verdict in verdicts.items():
        status = "PASS" if verdict["pass"] else "MISS"
        caveat = "" if verdict["clean"] else "  (Sapwood answered errors: see notes)"
        if not verdict["etcd_clean"]:
            caveat += "  (etcd answered errors: see notes)"
        versus = f"Sapwood {operation} / etcd {ETCD_OPERATION[operation]}:"
        p99 = verdict["p99_ratio"]
        p99_text = f", p99 {p99:.2f}x etcd's" if p99 is not None else ""
        lines.append(f"{versus:<26}{verdict['ratio']:5.2f}x req/s (target >= "
                     f"{verdict['target']:.2f}x){p99_text}  {status}{caveat}")
    return "\n".join(lines)


def system_json(system: SystemResult) -> dict[str, Any]:
    return {
        "ran": system.ran,
        "version": system.version,
        "commands": system.commands,
        "error": system.error,
        "operations": {op: asdict(run) for op, run in system.operations.items()},
        "cpu_ms_per_request": system.cpu_ms_per_request,
        "per_member": {
            op: [asdict(run) for run in runs] for op, runs in system.per_member.items()
        },
    }


# ---------------------------------------------------------------------------- main


def add_cluster_arguments(parser: argparse.ArgumentParser, *, keys: int) -> None:
    """The load options (one wrk per member), --sapwood-arg and --only."""
    add_load_arguments(parser, connections=64, threads=1, keys=keys, per_member=True)
    parser.add_argument(
        "--sapwood-arg", action="append", default=[], metavar="ARG",
        help="extra `sapwood start` argument for every node, repeatable "
        "(e.g. --sapwood-arg=--sync=fsync to fsync like etcd does)",
    )
    parser.add_argument("--only", choices=("etcd", "sapwood"), help="measure one system only")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="3-node Sapwood (n_val=3) PUT/GET throughput and latency beside 3-member etcd."
    )
    add_cluster_arguments(parser, keys=10_000)
    parser.add_argument("--w", type=int, default=2, help="Sapwood PUT write quorum")
    parser.add_argument("--r", type=int, default=2, help="Sapwood GET read quorum")
    args = parser.parse_args(argv)
    check_load_arguments(parser, args, wrk_processes=MEMBERS)
    if not (1 <= args.w <= MEMBERS and 1 <= args.r <= MEMBERS):
        parser.error(f"--w and --r must be between 1 and {MEMBERS}")
    return args


def cluster_config(args: argparse.Namespace, w: int = 0, r: int = 0) -> ClusterConfig:
    return ClusterConfig(
        duration_s=args.duration, connections=args.connections, threads=args.threads,
        keys=args.keys, value_size=args.value_size, w=w, r=r,
        startup_timeout_s=args.startup_timeout,
    )


def find_tools(args: argparse.Namespace) -> tuple[str, str | None]:
    """wrk's path, and etcd's unless only Sapwood is measured."""
    wrk = find_wrk(allow_install=not args.no_install)
    etcd = None if args.only == "sapwood" else find_etcd(allow_install=not args.no_install)
    return wrk, etcd


def describe(
    config: ClusterConfig, wrk: str, etcd: str | None, sapwood_args: list[str], load_before: float
) -> str:
    split = "/".join(str(n) for n in split_connections(config.connections, MEMBERS))
    lines = [
        f"{MEMBERS}-member clusters on loopback; {config.connections} connections "
        f"({split}: one wrk per member, {config.threads} thread each, run together), "
        f"{config.value_size}-byte values, {config.keys} keys, {config.duration_s} s per run",
        f"load: {wrk_version(wrk)}; Sapwood PUT ?w={config.w} / GET ?r={config.r}, n_val=3",
        f"Sapwood node options: {shlex.join(sapwood_args) or 'devrel defaults'} "
        f"(etcd fsyncs its WAL before every commit; see `sapwood start --help` for --sync)",
    ]
    if etcd is not None:
        lines.append(f"etcd: {etcd} ({etcd_version(etcd)}), JSON gateway kv/put and kv/range "
                     f"(linearizable, the default)")
    lines.append(f"{os.cpu_count() or 1} CPU cores shared by every wrk and every member "
                 f"(no pinning); data directories on {tempfile.gettempdir()}")
    # Other work on a 2-core machine skews whichever system runs beside it.
    lines.append(f"1-minute load average before the run: {load_before:.1f} "
                 f"(well above 0: other work shares the cores and skews the figures)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = cluster_config(args, w=args.w, r=args.r)
    wrk, etcd = find_tools(args)
    load_before = os.getloadavg()[0]
    header = describe(config, wrk, etcd, args.sapwood_arg, load_before)
    print(header, flush=True)
    etcd_result = SystemResult(name="etcd", ran=False)
    sapwood_result = SystemResult(name="sapwood", ran=False)
    with tempfile.TemporaryDirectory(prefix="sapwood-cluster-bench-") as tmp:
        tmp_dir = Path(tmp)
        if etcd is not None:
            etcd_result = measure_etcd(etcd, wrk, config, tmp_dir)
        if args.only != "etcd":
            sapwood_result = measure_sapwood(wrk, config, tmp_dir, args.sapwood_arg)
    verdicts = compare(etcd_result, sapwood_result, TARGET_RATIO)
    label = partial(operation_label, config=config)
    print_report(header, [format_table(etcd_result, sapwood_result, label),
                          format_verdicts(verdicts)], [etcd_result, sapwood_result])
    write_results("cluster", {
        "config": asdict(config),
        "sapwood_args": args.sapwood_arg,
        "load_average_before": load_before,
        "wrk": wrk_version(wrk),
        "etcd": system_json(etcd_result),
        "sapwood": system_json(sapwood_result),
        "verdicts": verdicts,
    })
    return unmeasured_status([etcd_result, sapwood_result])


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
