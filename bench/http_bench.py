"""Single-node HTTP benchmark: Sapwood's PUT and GET beside a minimal aiohttp+uvloop ceiling.

Run from the repository root:

    python bench/http_bench.py [--duration 10] [--connections 32] [--keys 10000]
                               [--value-size 256] [--rounds 1] [--sapwood-cmd "..."]

wrk generates the load (bench/wrk/put.lua and get.lua); both servers run at once and are measured
in turn (ceiling, Sapwood, ceiling, ... for --rounds rounds per operation) with the same scripts,
and Sapwood's figures are printed as a percentage of the ceiling's.
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    BENCH_DIR,
    BenchError,
    add_load_arguments,
    check_load_arguments,
    find_or_install,
    format_ms,
    free_port,
    free_ports,
    log_tail,
    print_report,
    run_main,
    start_server,
    stop_process,
    unmeasured_status,
    write_results,
)

WRK_SCRIPTS = BENCH_DIR / "wrk"
CEILING_SERVER = BENCH_DIR / "ceiling_server.py"

BUCKET = "bench"
DEFAULT_SAPWOOD_CMD = (
    "{python} -m sapwood.cli.main start --http 127.0.0.1:{port} --data {data} "
    # Its own inter-node port: the default (8099) may be taken on a shared machine.
    "--cluster 127.0.0.1:{cluster_port}"
)
# The targets: Sapwood as a share of the ceiling's throughput.
TARGET_SHARE = {"PUT": 0.25, "GET": 0.40}
OPERATIONS = ("PUT", "GET")

# Alternating rounds (ceiling, sapwood, ceiling, ...) keep a busy machine's drift out of the ratio.
MAX_ROUNDS = 20
PING_INTERVAL_S = 0.1
# wrk exits on its own after --duration; anything far past that is a hung run.
WRK_OVERRUN_S = 30.0
# Writing the keys before GET when the timed PUT run did not reach them all.
FILL_CONCURRENCY = 32
FILL_TIMEOUT_S = 300.0

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^([0-9.]+)(us|ms|s|m|h)$")
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+(\S+)\s*$", re.MULTILINE)
_REQUESTS_PER_S = re.compile(r"^Requests/sec:\s+([0-9.]+)\s*$", re.MULTILINE)
_REQUEST_COUNT = re.compile(r"^\s*(\d+) requests in ([0-9.]+\w+),", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run reported; latencies in milliseconds."""

    requests_per_s: float
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    non_2xx: int
    socket_errors: int

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["50"]

    @property
    def p99_ms(self) -> float:
        return self.latency_ms["99"]


@dataclass(slots=True)
class TargetResult:
    """One server's figures per operation, or why it could not be measured."""

    name: str
    command: list[str]
    operations: dict[str, WrkResult] = field(default_factory=dict)
    error: str | None = None
    # Every round's run per operation (alternating runs); `operations` holds the median one.
    rounds: dict[str, list[WrkResult]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    duration_s: int
    connections: int
    threads: int
    keys: int
    value_size: int
    startup_timeout_s: float


# ---------------------------------------------------------------------------- wrk output


def parse_duration_ms(text: str) -> float:
    """Convert one of wrk's durations ("812.00us", "1.20ms", "2.00s", "1.00m") to ms."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise BenchError(f"unrecognised wrk duration {text!r}")
    return float(match.group(1)) * _TIME_UNITS_MS[match.group(2)]


def parse_wrk_output(text: str) -> WrkResult:
    """Read req/s, the --latency percentiles and error counts from wrk's report."""
    latency = {pct: parse_duration_ms(value) for pct, value in _PERCENTILE.findall(text)}
    rate = _REQUESTS_PER_S.search(text)
    count = _REQUEST_COUNT.search(text)
    if rate is None or count is None or not {"50", "99"} <= latency.keys():
        raise BenchError(f"wrk's report lacks req/s or the latency distribution:\n{text}")
    non_2xx = _NON_2XX.search(text)
    socket_errors = _SOCKET_ERRORS.search(text)
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        requests=int(count.group(1)),
        duration_s=parse_duration_ms(count.group(2)) / 1000.0,
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


# ---------------------------------------------------------------------------- wrk itself


def find_wrk(allow_install: bool = True) -> str:
    """Path of a wrk that supports --latency; installs Debian's package as root if missing."""
    path = find_or_install("wrk", "wrk", allow_install)
    if path is None:
        raise BenchError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    _check_wrk_latency_support(path)
    return path


def _check_wrk_latency_support(path: str) -> None:
    # wrk prints its usage (to stdout, exit status 1) for an unknown option such as --help.
    usage = subprocess.run([path, "--help"], capture_output=True, text=True, check=False)
    if "--latency" not in usage.stdout + usage.stderr:
        raise BenchError(f"{path} does not support --latency (percentiles); wrk 4.x is needed")


def wrk_version(path: str) -> str:
    usage = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    lines = (usage.stdout or usage.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else "wrk (unknown version)"


def wrk_command(
    wrk: str, operation: str, base_url: str, config: BenchConfig, duration_s: int
) -> list[str]:
    script = WRK_SCRIPTS / f"{operation.lower()}.lua"
    return [
        wrk,
        f"--threads={config.threads}",
        f"--connections={config.connections}",
        f"--duration={duration_s}s",
        "--latency",
        f"--script={script}",
        base_url,
        "--",
        str(config.keys),
        str(config.value_size),
        str(config.threads),
        BUCKET,
    ]


def run_wrk(
    wrk: str, operation: str, base_url: str, config: BenchConfig, duration_s: int | None = None
) -> WrkResult:
    """Run one timed wrk load of `operation` (PUT or GET) against base_url and parse it."""
    seconds = config.duration_s if duration_s is None else duration_s
    command = wrk_command(wrk, operation, base_url, config, seconds)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=seconds + WRK_OVERRUN_S)
    finally:
        stop_process(proc)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with {proc.returncode}:\n{output}")
    return parse_wrk_output(output)


# ---------------------------------------------------------------------------- servers


def server_command(
    template: str, port: int, data_dir: Path, cluster_port: int | None = None
) -> list[str]:
    """Split a command template and fill in {python}, {port}, {data}, {bench}, {cluster_port}."""
    values = {
        "python": sys.executable,
        "port": str(port),
        "data": str(data_dir),
        "bench": str(BENCH_DIR),
        "cluster_port": str(cluster_port if cluster_port is not None else free_port()),
    }
    return [token.format(**values) for token in shlex.split(template)]


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll GET /ping until it answers 200 "OK"; fail early if the server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before answering /ping")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base_url}/ping", timeout=1.0) as reply,
        ):
            if reply.status == 200 and reply.read().strip() == b"OK":
                return
        time.sleep(PING_INTERVAL_S)
    raise BenchError(f"server did not answer GET /ping within {timeout_s:.0f} s")


# ---------------------------------------------------------------------------- filling keys


async def _fill_keys(base_url: str, keys: int, value_size: int) -> int:
    """PUT every key once (unmeasured) so GETs hit; returns how many PUTs failed."""
    from aiohttp import ClientSession, TCPConnector

    body = b"v" * value_size
    headers = {"Content-Type": "application/octet-stream"}
    pending = iter(range(keys))
    failures = 0

    async def writer(session: ClientSession) -> None:
        nonlocal failures
        for index in pending:
            url = f"{base_url}/buckets/{BUCKET}/keys/k{index}"
            async with session.put(url, data=body, headers=headers) as reply:
                await reply.read()
                failures += reply.status >= 300

    connector = TCPConnector(limit=FILL_CONCURRENCY)
    async with ClientSession(connector=connector) as session:
        writers = [writer(session) for _ in range(FILL_CONCURRENCY)]
        await asyncio.wait_for(asyncio.gather(*writers), FILL_TIMEOUT_S)
    return failures


def fill_keys(base_url: str, keys: int, value_size: int) -> None:
    failures = asyncio.run(_fill_keys(base_url, keys, value_size))
    if failures:
        raise BenchError(f"{failures} of {keys} PUTs failed while writing the keys for GET")


# ---------------------------------------------------------------------------- one target


def _put_covered_keys(put: WrkResult, config: BenchConfig) -> bool:
    # Each wrk thread walks the keys from its own offset; twice the key count in total means
    # every thread covered its share unless the threads' rates differed by more than 2x.
    return put.non_2xx == 0 and put.requests >= 2 * config.keys


def measure_target(
    name: str, command: list[str], port: int, wrk: str, config: BenchConfig, log_path: Path
) -> TargetResult:
    """Start a server, measure PUT then GET with wrk, stop it; errors land in .error."""
    return measure_alternating([(name, command, port, log_path)], wrk, config, rounds=1)[0]


# ---------------------------------------------------------------------------- both targets


@dataclass(slots=True)
class _Server:
    result: TargetResult
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def live(self) -> bool:
        return self.proc is not None and self.result.error is None

    def fail(self, error: BenchError) -> None:
        self.result.error = str(error)
        tail = log_tail(self.log_path)
        if tail:
            self.result.error += f"\n--- last lines of the server's output ---\n{tail}"


def _median_index(values: list[float]) -> int:
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(order) - 1) // 2]


def _pick_median_rounds(servers: list[_Server]) -> None:
    """Per operation, show the round whose Sapwood/ceiling ratio is the median of the rounds
    (or, with one server measured, its median req/s)."""
    for operation in OPERATIONS:
        runs = [server.result.rounds.get(operation, []) for server in servers]
        count = min(len(r) for r in runs)
        if count == 0:
            for server, own in zip(servers, runs, strict=True):
                if own:
                    index = _median_index([run.requests_per_s for run in own])
                    server.result.operations[operation] = own[index]
            continue
        if len(runs) == 2:
            shares = [runs[1][i].requests_per_s / max(runs[0][i].requests_per_s, 1e-9)
                      for i in range(count)]
        else:
            shares = [runs[0][i].requests_per_s for i in range(count)]
        index = _median_index(shares)
        for server, own in zip(servers, runs, strict=True):
            server.result.operations[operation] = own[index]


def measure_alternating(
    targets: list[tuple[str, list[str], int, Path]], wrk: str, config: BenchConfig, rounds: int
) -> list[TargetResult]:
    """Start every server, then per operation run wrk against each in turn, `rounds` times.

    Both servers measured minutes apart on a shared machine see different loads; alternating
    short runs while both are up makes each round's ratio a fair comparison. Errors land in
    each result's .error; every server is stopped in the end.
    """
    servers = [_Server(TargetResult(name=name, command=command), port, log_path)
               for name, command, port, log_path in targets]
    try:
        for server in servers:
            result = server.result
            print(f"[{result.name}] starting: {shlex.join(result.command)}", flush=True)
            server.proc = start_server(result.command, server.log_path)
        for server in servers:
            assert server.proc is not None
            try:
                wait_ready(server.base_url, server.proc, config.startup_timeout_s)
            except BenchError as error:
                server.fail(error)
        for operation in OPERATIONS:
            for round_index in range(rounds):
                for server in servers:
                    _measure_round(server, wrk, operation, config, round_index, rounds)
    finally:
        for server in servers:
            if server.proc is not None:
                stop_process(server.proc)
    _pick_median_rounds(servers)
    return [server.result for server in servers]


def _measure_round(server: _Server, wrk: str, operation: str, config: BenchConfig,
                   round_index: int, rounds: int) -> None:
    if not server.live:
        return
    result = server.result
    try:
        if operation == "GET" and round_index == 0 and not any(
            _put_covered_keys(run, config) for run in result.rounds.get("PUT", [])
        ):
            print(f"[{result.name}] timed PUT runs may have missed some keys: "
                  "writing them all once")
            fill_keys(server.base_url, config.keys, config.value_size)
        label = f" (round {round_index + 1}/{rounds})" if rounds > 1 else ""
        print(f"[{result.name}] {operation} for {config.duration_s} s{label} ...", flush=True)
        run = run_wrk(wrk, operation, server.base_url, config)
        result.rounds.setdefault(operation, []).append(run)
    except BenchError as error:
        server.fail(error)


# ---------------------------------------------------------------------------- report


def _notes(run: WrkResult, operation: str) -> str:
    notes = []
    if run.non_2xx:
        label = "misses (404)" if operation == "GET" else "non-2xx"
        notes.append(f"{run.non_2xx} {label}")
    if run.socket_errors:
        notes.append(f"{run.socket_errors} socket errors")
    return ", ".join(notes)


def format_table(ceiling: TargetResult, sapwood: TargetResult) -> str:
    lines = [
        f"{'operation':<10}{'server':<9}{'req/s':>10}{'p50':>10}{'p99':>10}  notes",
    ]
    for operation in OPERATIONS:
        for target in (ceiling, sapwood):
            run = target.operations.get(operation)
            if run is None:
                lines.append(f"{operation:<10}{target.name:<9}{'-':>10}{'-':>10}{'-':>10}  failed")
                continue
            lines.append(
                f"{operation:<10}{target.name:<9}{run.requests_per_s:>10.0f}"
                f"{format_ms(run.p50_ms):>10}{format_ms(run.p99_ms):>10}"
                f"  {_notes(run, operation)}".rstrip()
            )
    return "\n".join(lines)


def compare(ceiling: TargetResult, sapwood: TargetResult) -> dict[str, dict[str, object]]:
    """Sapwood's req/s as a share of the ceiling's, per operation, against the target."""
    verdicts: dict[str, dict[str, object]] = {}
    for operation in OPERATIONS:
        base = ceiling.operations.get(operation)
        ours = sapwood.operations.get(operation)
        if base is None or ours is None or base.requests_per_s <= 0:
            continue
        share = ours.requests_per_s / base.requests_per_s
        clean = ours.non_2xx == 0 and ours.socket_errors == 0
        verdicts[operation] = {
            "share": share,
            "target": TARGET_SHARE[operation],
            "pass": share >= TARGET_SHARE[operation] and clean,
            "clean": clean,
        }
    return verdicts


def format_verdicts(verdicts: dict[str, dict[str, object]]) -> str:
    lines = []
    for operation, verdict in verdicts.items():
        share = float(str(verdict["share"]))
        target = float(str(verdict["target"]))
        status = "PASS" if verdict["pass"] else "MISS"
        caveat = "" if verdict["clean"] else "  (Sapwood answered errors: see notes)"
        lines.append(
            f"Sapwood {operation}: {share:6.1%} of ceiling (target >= {target:.0%})  "
            f"{status}{caveat}"
        )
    return "\n".join(lines)


def _target_json(target: TargetResult) -> dict[str, object]:
    return {
        "command": target.command,
        "error": target.error,
        "operations": {op: asdict(run) for op, run in target.operations.items()},
        "rounds_requests_per_s": {
            op: [run.requests_per_s for run in runs] for op, runs in target.rounds.items()
        },
    }


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sapwood single-node PUT/GET throughput and latency beside a ceiling server."
    )
    add_load_arguments(parser, connections=32, threads=2, keys=10_000)
    parser.add_argument(
        "--sapwood-cmd",
        default=DEFAULT_SAPWOOD_CMD,
        help="command starting the node; {python}, {port}, {data}, {bench} are filled in "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="alternating wrk runs per operation and server (the median ratio is reported); "
        "several short rounds give steadier ratios on a busy machine",
    )
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be between 1 and {MAX_ROUNDS}")
    return args


def run(args: argparse.Namespace) -> int:
    config = BenchConfig(
        duration_s=args.duration,
        connections=args.connections,
        threads=args.threads,
        keys=args.keys,
        value_size=args.value_size,
        startup_timeout_s=args.startup_timeout,
    )
    wrk = find_wrk(allow_install=not args.no_install)
    cores = os.cpu_count() or 1
    header = (
        f"{config.connections} connections, {config.value_size}-byte values, "
        f"{config.keys} keys, {config.duration_s} s per run; {wrk_version(wrk)}, "
        f"{config.threads} threads\n"
        f"{cores} CPU cores shared by wrk and the server under test (no pinning)"
    )
    if args.rounds > 1:
        header += f"\n{args.rounds} alternating rounds per operation; the median ratio's is shown"
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="sapwood-bench-") as tmp:
        tmp_dir = Path(tmp)
        # Both servers run at once: their ports must differ.
        ceiling_port, sapwood_port, cluster_port = free_ports(3)
        ceiling_cmd = [sys.executable, str(CEILING_SERVER), "--port", str(ceiling_port)]
        data_dir = tmp_dir / "data"
        data_dir.mkdir()
        sapwood_cmd = server_command(args.sapwood_cmd, sapwood_port, data_dir, cluster_port)
        ceiling, sapwood = measure_alternating(
            [("ceiling", ceiling_cmd, ceiling_port, tmp_dir / "ceiling.log"),
             ("sapwood", sapwood_cmd, sapwood_port, tmp_dir / "sapwood.log")],
            wrk, config, args.rounds,
        )
    verdicts = compare(ceiling, sapwood)
    print_report(header, [format_table(ceiling, sapwood), format_verdicts(verdicts)],
                 [ceiling, sapwood])
    write_results(
        "http",
        {
            "config": asdict(config),
            "wrk": wrk_version(wrk),
            "ceiling": _target_json(ceiling),
            "sapwood": _target_json(sapwood),
            "verdicts": verdicts,
        }
    )
    return unmeasured_status([ceiling, sapwood])


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
