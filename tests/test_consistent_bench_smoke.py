"""The cluster benchmarks' helpers (bench/consistent_bench.py, cluster_bench.py, etcd.py and the
harness.py every benchmark shares), without starting any server."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import cluster_bench  # noqa: E402
import consistent_bench  # noqa: E402
import etcd  # noqa: E402
import harness  # noqa: E402
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
    verdicts = consistent_bench.compare(etcd_result, sapwood, consistent_bench.TARGET_RATIO)
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


def parse(argv: list[str], **checks: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    harness.add_load_arguments(parser, connections=8, threads=2, keys=100)
    args = parser.parse_args(argv)
    harness.check_load_arguments(parser, args, **checks)
    return args


def test_the_load_options_have_the_given_defaults() -> None:
    args = parse([])
    assert (args.duration, args.connections, args.threads, args.keys) == (10, 8, 2, 100)
    assert not args.no_install


@pytest.mark.parametrize(
    ("argv", "checks"),
    [
        (["--threads", "3"], {"wrk_processes": 3}),  # 9 connections needed, 8 given
        (["--keys", "0"], {}),
        (["--keys", "50"], {"min_keys": 64}),
        (["--value-size", "8"], {"min_value_size": 16}),
        (["--duration", "0"], {}),
    ],
)
def test_out_of_range_load_options_are_usage_errors(
        argv: list[str], checks: dict[str, int]) -> None:
    with pytest.raises(SystemExit):
        parse(argv, **checks)


def test_log_tails_name_each_non_empty_log(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("boom\n")
    (tmp_path / "b.log").write_text("")
    tails = harness.log_tails([tmp_path / "a.log", tmp_path / "b.log", tmp_path / "missing.log"])
    assert tails == "\n--- last lines of a.log ---\nboom\n"


def test_the_report_prints_non_empty_sections_and_failures_on_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    failed = cluster_bench.SystemResult(name="etcd", error="no etcd")
    harness.print_report("header", ["table", ""], [failed, cluster_bench.SystemResult("sapwood")])
    out, err = capsys.readouterr()
    assert out == "\nheader\ntable\n"
    assert err == "\n[etcd] could not be measured: no etcd\n"
    assert harness.unmeasured_status([failed]) == harness.EXIT_UNMEASURED


def test_both_cluster_benchmarks_label_the_same_table_their_own_way() -> None:
    etcd = cluster_bench.SystemResult(name="etcd", operations={"PUT": run(1000, 10)},
                                      cpu_ms_per_request={"PUT": 0.5})
    sapwood = cluster_bench.SystemResult(name="sapwood", ran=False)
    config = cluster_bench.ClusterConfig(10, 64, 1, 100, 256, w=2, r=1, startup_timeout_s=1.0)
    quorum = cluster_bench.format_table(
        etcd, sapwood, partial(cluster_bench.operation_label, config=config))
    assert "PUT (put)" in quorum and "PUT (w=2)" in quorum and "GET (r=1)" in quorum
    assert "not run" in quorum and "failed" in quorum  # etcd has no GET: it failed
    consistent = cluster_bench.format_table(etcd, sapwood, consistent_bench.operation_label, 15)
    assert "PUT (CAS)" in consistent and "GET (linear.)" in consistent


def test_a_verdict_notes_errors_on_either_side() -> None:
    etcd = cluster_bench.SystemResult(name="etcd", operations={"PUT": run(1000, 10, non_2xx=3)})
    sapwood = cluster_bench.SystemResult(name="sapwood", operations={"PUT": run(1500, 5)})
    verdicts = cluster_bench.compare(etcd, sapwood, cluster_bench.TARGET_RATIO)
    assert verdicts["PUT"]["pass"] and not verdicts["PUT"]["etcd_clean"]
    text = cluster_bench.format_verdicts(verdicts)
    assert "1.50x req/s" in text and "p99 0.50x etcd's" in text and "etcd answered errors" in text
