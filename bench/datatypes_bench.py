"""Data type update cost against size: set adds and map field updates at 10, 1,000 and 10,000.

Run from the repository root:

    python bench/datatypes_bench.py [--ops 300] [--sizes 10,1000,10000] [--n-val 3]
                                    [--no-embedded] [--no-http] [--json results.json]

For each size, keys are filled (sets with that many elements, a map with that many register
fields), then `--ops` single-element updates are timed one by one:
- set add: add a new element. The adds go round-robin over enough sets of the size that none
  grows by more than GROWTH_LIMIT (10%) during the run (300 sets of 10, 3 of 1,000, 1 of 10,000);
- map field update: assign a new value to an existing register field, picked at random.
Bytes per element is the stored state (the object's sibling value, read through /keys/) divided
by the number of elements, measured after the fill.

Two setups, each on a fresh data directory: the embedded store (`sapwood.open`, sync="commit")
and a node process over HTTP (`sapwood start`, one httpx keep-alive connection). Both use bucket
types with `--n-val` replicas (default 3, the type default: on one node, three local vnodes).

Besides wall time per op (mean and median), the CPU time per op of the process doing the work is
given (the embedding process; the node process over HTTP, from /proc): a busy machine disturbs
it far less than wall time, so the ratios are computed from it when it is known.

The issue's target: an add to a 10,000-element set runs at >= 25% of the rate of an add to a
10-element set. The script prints the ratio for every setup and workload with PASS or MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_SRC = BENCH_DIR.parent / "src"
sys.path.insert(0, str(REPO_SRC))

import httpx  # noqa: E402

import sapwood  # noqa: E402
from sapwood.client.datatypes import Map, Set  # noqa: E402

DEFAULT_SIZES = (10, 1_000, 10_000)
DEFAULT_OPS = 300
FILL_BATCH = 1_000  # elements (or fields) per fill op, well under the op limit
TARGET_RATIO = 0.25
GROWTH_LIMIT = 0.10  # a timed run grows no set by more than this share of its size
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
SEED = 7


def element(i: int) -> str:
    return f"member-{i:09d}"  # 16 bytes, like a short id


def field_name(i: int) -> str:
    return f"f{i:06d}"


@dataclass(frozen=True, slots=True)
class Result:
    setup: str
    workload: str
    size: int
    ops: int
    mean_us: float
    median_us: float
    cpu_us: float | None  # CPU time per op of the process doing the work; None if unknown
    bytes_per_element: float

    @property
    def ops_per_s(self) -> float:
        """Throughput of the one client, from mean wall time."""
        return 1e6 / self.mean_us

    @property
    def cost_us(self) -> float:
        """What the ratios compare: CPU time when known, else mean wall time."""
        return self.cpu_us if self.cpu_us is not None else self.mean_us


CpuClock = Callable[[], float | None]


@dataclass(slots=True)
class Timer:
    """Wall time of each timed op; CPU time (of `cpu_clock`'s process) over the whole run."""

    cpu_clock: CpuClock
    wall: list[float] = field(default_factory=list)
    cpu_start: float | None = None

    def start(self) -> None:
        self.cpu_start = self.cpu_clock()

    @contextmanager
    def measure(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.wall.append(time.perf_counter() - started)

    def result(self, setup: str, workload: str, size: int, stored_bytes: int) -> Result:
        n = len(self.wall)
        cpu_end = self.cpu_clock()
        cpu = (None if self.cpu_start is None or cpu_end is None
               else (cpu_end - self.cpu_start) / n * 1e6)
        return Result(setup, workload, size, n, statistics.fmean(self.wall) * 1e6,
                      statistics.median(self.wall) * 1e6, cpu, stored_bytes / size)


def sets_for(size: int, ops: int) -> int:
    """How many sets the timed adds spread over so that none grows by more than GROWTH_LIMIT."""
    per_set = max(1, int(size * GROWTH_LIMIT))
    return -(-ops // per_set)


def map_update(rng: random.Random, size: int, n: int) -> dict[str, Any]:
    return {"update": {f"{field_name(rng.randrange(size))}_register": f"value-{n}"}}


# --- embedded -----------------------------------------------------------------------------------


def run_embedded(sizes: list[int], ops: int, n_val: int) -> list[Result]:
    results: list[Result] = []
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="sapwood-dt-bench-") as tmp, \
            sapwood.open(Path(tmp) / "db", sync="commit") as store:
        for name, datatype in (("sets", "set"), ("maps", "map")):
            bucket_type = store.bucket_type(name)
            bucket_type.create({"datatype": datatype, "n_val": n_val})
            bucket_type.activate()
        sets, maps = store.bucket("b", "sets"), store.bucket("b", "maps")
        for size in sizes:
            keys = [Set(sets, f"set-{size}-{k}") for k in range(sets_for(size, ops))]
            for s in keys:
                for start in range(0, size, FILL_BATCH):
                    for i in range(start, min(size, start + FILL_BATCH)):
                        s.add(element(i))
                    s.store(return_body=False)
            stored = len(sets.get(keys[0].key or "").value or b"")
            timer = Timer(time.process_time)
            timer.start()
            for n in range(ops):
                s = keys[n % len(keys)]
                s.add(element(size + n))
                with timer.measure():
                    s.store(return_body=False)
            results.append(timer.result("embedded", "set add", size, stored))

            m = Map(maps, f"map-{size}")
            for start in range(0, size, FILL_BATCH):
                for i in range(start, min(size, start + FILL_BATCH)):
                    m.registers[field_name(i)].assign("v")
                m.store(return_body=False)
            stored = len(maps.get(m.key or "").value or b"")
            timer = Timer(time.process_time)
            timer.start()
            for n in range(ops):
                m.registers[field_name(rng.randrange(size))].assign(f"value-{n}")
                with timer.measure():
                    m.store(return_body=False)
            results.append(timer.result("embedded", "map field update", size, stored))
    return results


# --- over HTTP ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_clock(pid: int) -> CpuClock:
    """The CPU seconds (user + system) process `pid` has used, from /proc; None elsewhere."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def clock() -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    return clock


@contextmanager
def node_process(data: Path) -> Iterator[tuple[str, int]]:
    port, cluster = _free_port(), _free_port()
    log_path = data.parent / "node.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sapwood.cli.main", "start", "--http", f"127.0.0.1:{port}",
         "--cluster", f"127.0.0.1:{cluster}", "--data", str(data), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO_SRC)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited: {log_path.read_text()}")
            try:
                if httpx.get(url + "/ping", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not answer /ping in time")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _post(http: httpx.Client, path: str, op: Any) -> None:
    answer = http.post(path, json=op)
    if answer.status_code != 204:
        raise RuntimeError(f"POST {path} answered {answer.status_code}: {answer.text}")


def _fill(http: httpx.Client, path: str, size: int, op_of: Callable[[range], Any]) -> None:
    for start in range(0, size, FILL_BATCH):
        _post(http, path, op_of(range(start, min(size, start + FILL_BATCH))))


def run_http(sizes: list[int], ops: int, n_val: int) -> list[Result]:
    results: list[Result] = []
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="sapwood-dt-bench-") as tmp, \
            node_process(Path(tmp) / "data") as (url, pid), httpx.Client(base_url=url) as http:
        server_cpu = process_cpu_clock(pid)
        for name, datatype in (("sets", "set"), ("maps", "map")):
            http.post(f"/admin/bucket-types/{name}",
                      json={"props": {"datatype": datatype, "n_val": n_val}}).raise_for_status()
            http.post(f"/admin/bucket-types/{name}/activate").raise_for_status()
        for size in sizes:
            paths = [f"/types/sets/buckets/b/datatypes/set-{size}-{k}"
                     for k in range(sets_for(size, ops))]
            for path in paths:
                _fill(http, path, size, lambda r: {"add_all": [element(i) for i in r]})
            stored = len(http.get(paths[0].replace("/datatypes/", "/keys/")).content)
            timer = Timer(server_cpu)
            timer.start()
            for n in range(ops):
                with timer.measure():
                    _post(http, paths[n % len(paths)], {"add": element(size + n)})
            results.append(timer.result("http", "set add", size, stored))

            path = f"/types/maps/buckets/b/datatypes/map-{size}"
            _fill(http, path, size,
                  lambda r: {"update": {f"{field_name(i)}_register": "v" for i in r}})
            stored = len(http.get(path.replace("/datatypes/", "/keys/")).content)
            timer = Timer(server_cpu)
            timer.start()
            for n in range(ops):
                op = map_update(rng, size, n)
                with timer.measure():
                    _post(http, path, op)
            results.append(timer.result("http", "map field update", size, stored))
    return results


# --- report -------------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    print(f"{'setup':9} {'workload':17} {'size':>7} {'mean us':>9} {'median us':>10} "
          f"{'ops/s':>8} {'cpu us':>8} {'bytes/elem':>10}")
    for r in results:
        cpu = f"{r.cpu_us:8.0f}" if r.cpu_us is not None else f"{'-':>8}"
        print(f"{r.setup:9} {r.workload:17} {r.size:7d} {r.mean_us:9.0f} {r.median_us:10.0f} "
              f"{r.ops_per_s:8.0f} {cpu} {r.bytes_per_element:10.1f}")


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """Rate at the largest size over rate at the smallest, per setup and workload (from CPU
    time per op when known, else from mean wall time)."""
    out = []
    for setup, workload in dict.fromkeys((r.setup, r.workload) for r in results):
        rows = sorted((r for r in results if (r.setup, r.workload) == (setup, workload)),
                      key=lambda r: r.size)
        small, large = rows[0], rows[-1]
        ratio = small.cost_us / large.cost_us
        out.append({"setup": setup, "workload": workload, "small": small.size,
                    "large": large.size, "ratio": ratio,
                    "measure": "cpu" if large.cpu_us is not None else "wall",
                    "ratio_wall": small.mean_us / large.mean_us,
                    "pass": ratio >= TARGET_RATIO})
    return out


def print_ratios(rows: list[dict[str, Any]]) -> None:
    print(f"\nrate at the largest size / rate at the smallest (target >= {TARGET_RATIO:.0%}):")
    for row in rows:
        verdict = "PASS" if row["pass"] else "MISS"
        print(f"  {row['setup']:9} {row['workload']:17} {row['large']}/{row['small']}: "
              f"{row['ratio']:.0%} ({row['measure']} time; wall {row['ratio_wall']:.0%})  "
              f"{verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=DEFAULT_OPS, help="timed updates per size")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--n-val", type=int, default=3)
    parser.add_argument("--no-embedded", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.ops < 1 or not sizes or sizes[0] < 1:
        parser.error("--ops and every size must be positive")
    results: list[Result] = []
    if not args.no_embedded:
        results += run_embedded(sizes, args.ops, args.n_val)
    if not args.no_http:
        results += run_http(sizes, args.ops, args.n_val)
    print_table(results)
    rows = ratios(results)
    print_ratios(rows)
    if args.json:
        args.json.write_text(json.dumps({"results": [asdict(r) for r in results],
                                         "ratios": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
