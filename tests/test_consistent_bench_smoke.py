"""The consistent-bucket benchmark harness (bench/consistent_bench.py, bench/etcd.py): its
helpers, without starting any cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import consistent_bench  # noqa: E402
import etcd  # noqa: E402
from http_bench import WrkResult  # noqa: E402


def run(rate: float, p99: float, non_2xx: int = 0) -> WrkResult:
    return WrkResult(requests_per_s=rate, requests=int(rate * 10), duration_s=10.0,
                     latency_ms={"50": p99 / 2, "75": p99 / 2, "90": p99, "99": p99},
                     non_2xx=non_2xx, socket_errors=0)


def test_a_written_value_names_its_key_and_has_the_asked_size() -> None:
    body = consistent_bench.key_body(42, 256)
    assert body.startswith(b"k42|") and len(body) == 256


def test_the_put_scripts_counts_are_summed_over_every_wrk(tmp_path: Path) -> None:
    (tmp_path / "wrk-put-0.txt").write_text("hist 100 3\nops cas 10\nops read 1\n")
    (tmp_path / "wrk-put-1.txt").write_text("ops cas 5\nops create 2\n")
    assert consistent_bench.count_ops(tmp_path) == {"cas": 15, "read": 1, "create": 2}


def test_verdicts_compare_against_the_issue_targets() -> None:
    etcd_result = consistent_bench.SystemResult(name="etcd")
    sapwood = consistent_bench.SystemResult(name="sapwood")
    etcd_result.operations = {"PUT": run(1000, 10), "GET": run(1000, 10)}
    sapwood.operations = {"PUT": run(800, 20), "GET": run(900, 5, non_2xx=0)}
    verdicts = consistent_bench.compare(etcd_result, sapwood)
    assert verdicts["PUT"]["pass"] and verdicts["PUT"]["ratio"] == pytest.approx(0.8)
    assert not verdicts["GET"]["pass"] and verdicts["GET"]["p99_ratio"] == pytest.approx(0.5)
    assert "MISS" in consistent_bench.format_verdicts(verdicts)


def test_arguments_are_checked() -> None:
    with pytest.raises(SystemExit):
        consistent_bench.parse_args(["--keys", "10", "--connections", "64"])
    args = consistent_bench.parse_args([])
    assert args.keys >= args.connections


def test_an_etcd_cluster_is_described_without_starting_it(tmp_path: Path) -> None:
    cluster = etcd.EtcdCluster("/usr/bin/etcd", tmp_path, size=3)
    assert len(cluster.commands) == 3 and len(set(cluster.urls)) == 3
    initial = cluster.commands[0][cluster.commands[0].index("--initial-cluster") + 1]
    assert initial.count("=http://127.0.0.1:") == 3
    assert cluster.pids == () and cluster.log_tails() == ""
    assert etcd.b64("bench/k1") == "YmVuY2gvazE="
