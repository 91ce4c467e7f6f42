"""`sapwood bucket-type ...` and `sapwood ping` against a real node process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sapwood
from sapwood.cli.main import main

pytestmark = pytest.mark.integration

SRC = Path(sapwood.__file__).resolve().parent.parent
CLI_WAIT_S = 60.0  # a bound on a CLI process run, not a performance assertion


@pytest.fixture(scope="module")
def node(module_node_factory: Callable[..., Any]) -> Any:
    return module_node_factory(args=["--log-level", "warning"])


def sapwood_cli(node: Any, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--node", node.url])


def test_ping(node: Any) -> None:
    result = sapwood_cli(node, "ping")
    assert result.exit_code == 0 and result.output.strip() == "pong"


def test_ping_of_a_node_that_is_not_there_fails() -> None:
    result = CliRunner().invoke(main, ["ping", "--node", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert "not responding" in result.output


def test_bucket_type_life_cycle(node: Any) -> None:
    created = sapwood_cli(node, "bucket-type", "create", "lifecycle", '{"props":{"n_val":2}}')
    assert created.exit_code == 0, created.output
    assert "lifecycle created" in created.output

    status = sapwood_cli(node, "bucket-type", "status", "lifecycle")
    assert status.exit_code == 0
    assert "lifecycle has been created and may be activated" in status.output
    assert "n_val: 2" in status.output

    listed = sapwood_cli(node, "bucket-type", "list")
    assert "lifecycle (not active)" in listed.output and "default (active)" in listed.output

    activated = sapwood_cli(node, "bucket-type", "activate", "lifecycle")
    assert activated.exit_code == 0 and "lifecycle has been activated" in activated.output
    assert "lifecycle is active" in sapwood_cli(node, "bucket-type", "status", "lifecycle").output

    updated = sapwood_cli(node, "bucket-type", "update", "lifecycle", '{"props":{"r":1}}')
    assert updated.exit_code == 0 and "lifecycle updated" in updated.output
    with sapwood.Client(node.url) as client:
        props = client.bucket_type("lifecycle").get_props()
    assert (props["n_val"], props["r"], props["active"]) == (2, 1, True)


def test_create_without_props_uses_the_defaults(node: Any) -> None:
    assert sapwood_cli(node, "bucket-type", "create", "plain").exit_code == 0
    assert "allow_mult: true" in sapwood_cli(node, "bucket-type", "status", "plain").output


@pytest.mark.parametrize(("args", "message"), [
    (("bucket-type", "create", "dup"), "already exists"),
    (("bucket-type", "update", "dup", '{"props":{"datatype":"set"}}'), "datatype"),
    (("bucket-type", "create", "bad", '{"props":{"n_val":0}}'), "n_val"),
    (("bucket-type", "create", "bad", "{not json"), "not JSON"),
    (("bucket-type", "activate", "ghost"), "ghost"),
    (("bucket-type", "status", "ghost"), "ghost is not an existing bucket type"),
])
def test_errors_exit_1_with_the_message(node: Any, args: tuple[str, ...], message: str) -> None:
    if sapwood_cli(node, "bucket-type", "status", "dup").exit_code != 0:
        assert sapwood_cli(node, "bucket-type", "create", "dup",
                           '{"props":{"datatype":"counter"}}').exit_code == 0
    result = sapwood_cli(node, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_entry_point_runs_as_a_process(node: Any) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    ok = subprocess.run([sys.executable, "-m", "sapwood.cli.main", "ping", "--node", node.url],
                        env=env, capture_output=True, text=True, timeout=CLI_WAIT_S)
    assert (ok.returncode, ok.stdout.strip()) == (0, "pong")
    failed = subprocess.run(
        [sys.executable, "-m", "sapwood.cli.main", "bucket-type", "status", "nope",
         "--node", node.url], env=env, capture_output=True, text=True, timeout=CLI_WAIT_S)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "Error: nope is not an existing bucket type"
