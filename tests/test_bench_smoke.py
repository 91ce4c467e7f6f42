"""The HTTP benchmark harness: wrk report parsing always; a ~3 s wrk run only where wrk exists."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
BENCH_SCRIPT = BENCH_DIR / "http_bench.py"


def _load_bench() -> ModuleType:
    # The bench scripts import their shared modules (harness) as top-level modules.
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("sapwood_http_bench", BENCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

WRK_REPORT = """\
Running 10s test @ http://127.0.0.1:8098
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.34ms  241.13us   7.17ms   87.01%
    Req/Sec    11.94k   599.67    13.42k    76.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.60ms
     99%    1.02s
  118793 requests in 10.00s, 11.33MB read
  Socket errors: connect 0, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  11879.20
Transfer/sec:      1.13MB
"""


def test_parse_wrk_report_reads_rate_percentiles_and_errors() -> None:
    result = bench.parse_wrk_output(WRK_REPORT)
    assert result.requests_per_s == pytest.approx(11879.20)
    assert result.requests == 118793
    assert result.duration_s == pytest.approx(10.0)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.latency_ms["75"] == pytest.approx(1.40)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.non_2xx == 17
    assert result.socket_errors == 7


def test_parse_wrk_report_without_error_lines_counts_none() -> None:
    clean = "\n".join(
        line for line in WRK_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    result = bench.parse_wrk_output(clean)
    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_parse_wrk_report_without_latency_distribution_is_an_error() -> None:
    without_latency = WRK_REPORT.split("  Latency Distribution")[0]
    with pytest.raises(bench.BenchError, match="latency distribution"):
        bench.parse_wrk_output(without_latency)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250.00us", 0.25), ("1.50ms", 1.5), ("2.00s", 2000.0), ("1.00m", 60_000.0)],
)
def test_parse_duration_converts_wrk_units_to_ms(text: str, ms: float) -> None:
    assert bench.parse_duration_ms(text) == pytest.approx(ms)


def test_parse_duration_rejects_unknown_units() -> None:
    with pytest.raises(bench.BenchError):
        bench.parse_duration_ms("3 fortnights")


def test_server_command_fills_in_the_template() -> None:
    command = bench.server_command("{python} -m x --http 127.0.0.1:{port} --data {data}", 8, Path("/d"))
    assert command == [sys.executable, "-m", "x", "--http", "127.0.0.1:8", "--data", "/d"]


def test_verdict_misses_when_the_node_answers_errors() -> None:
    fast = bench.parse_wrk_output(WRK_REPORT)
    clean = replace(fast, non_2xx=0, socket_errors=0)
    ceiling = bench.TargetResult("ceiling", [], {"PUT": clean, "GET": clean})
    sapwood = bench.TargetResult("sapwood", [], {"PUT": clean, "GET": fast})
    verdicts = bench.compare(ceiling, sapwood)
    assert verdicts["PUT"]["pass"] is True
    assert verdicts["GET"]["pass"] is False


# ---------------------------------------------------------------------------- with wrk

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def _smoke_config(keys: int) -> Any:
    return bench.BenchConfig(
        duration_s=1, connections=4, threads=2, keys=keys, value_size=256, startup_timeout_s=20.0
    )


@pytest.fixture
def ceiling_url(tmp_path: Path) -> Iterator[str]:
    port = bench.free_port()
    command = [sys.executable, str(bench.CEILING_SERVER), "--port", str(port)]
    proc = bench.start_server(command, tmp_path / "ceiling.log")
    try:
        url = f"http://127.0.0.1:{port}"
        bench.wait_ready(url, proc, 20.0)
        yield url
    finally:
        bench.stop_process(proc)
    assert proc.poll() is not None


@needs_wrk
def test_get_before_put_counts_every_request_as_a_miss(ceiling_url: str) -> None:
    wrk = bench.find_wrk(allow_install=False)
    result = bench.run_wrk(wrk, "GET", ceiling_url, _smoke_config(keys=50))
    assert result.requests > 0
    assert result.non_2xx == result.requests


@needs_wrk
def test_filled_keys_make_every_get_hit(ceiling_url: str) -> None:
    wrk = bench.find_wrk(allow_install=False)
    bench.fill_keys(ceiling_url, 200, 256)
    result = bench.run_wrk(wrk, "GET", ceiling_url, _smoke_config(keys=200))
    assert result.requests > 0
    assert (result.non_2xx, result.socket_errors) == (0, 0)


@needs_wrk
def test_measure_ceiling_put_then_get_yields_positive_figures(tmp_path: Path) -> None:
    wrk = bench.find_wrk(allow_install=False)
    port = bench.free_port()
    command = [sys.executable, str(bench.CEILING_SERVER), "--port", str(port)]
    config = _smoke_config(keys=100)
    result = bench.measure_target("ceiling", command, port, wrk, config, tmp_path / "c.log")
    assert result.error is None
    for operation in ("PUT", "GET"):
        run = result.operations[operation]
        assert run.requests_per_s > 0
        assert run.requests > 0
        assert 0 < run.p50_ms <= run.p99_ms
        assert (run.non_2xx, run.socket_errors) == (0, 0)
