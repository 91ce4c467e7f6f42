"""`sapwood ...`: argument parsing into configs, then a call into the runtime. No logic here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sapwood import __version__

if TYPE_CHECKING:
    from sapwood.client.http import Client

DEFAULT_NODE_URL = "http://127.0.0.1:8098"


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    try:
        return host, int(port)
    except ValueError:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}") from None


@click.group()
@click.version_option(__version__, prog_name="sapwood")
def main() -> None:
    """Sapwood: a key-value store that grows from one process into a cluster."""


@main.command()
@click.option("--name", default="sapwood@127.0.0.1", show_default=True, help="Node name (name@host).")
@click.option("--http", "http", default="127.0.0.1:8098", show_default=True,
              help="HTTP listener (Riak HTTP API and admin routes).")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default ./data/<name>).")
@click.option("--ring-size", default=64, show_default=True, help="Partitions (power of two); "
              "only used when the data directory is new.")
@click.option("--sync", type=click.Choice(["commit", "fsync"]), default="commit", show_default=True,
              help="commit: acknowledged writes survive the process being killed; fsync: they also "
                   "survive power loss (batched fsync before durable acks).")
@click.option("--cluster", "cluster_listen", default="127.0.0.1:8099", show_default=True,
              help="Inter-node listener (HOST:PORT).")
@click.option("--cluster-name", default="sapwood", show_default=True,
              help="Nodes only talk to nodes of the same cluster name.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Shared cluster secret (default: cluster.secret in the data directory, "
                   "created on first start).")
@click.option("--log-level", default="info", show_default=True)
def start(name: str, http: str, data: Path | None, ring_size: int, sync: str,
          cluster_listen: str, cluster_name: str, secret_file: Path | None, log_level: str) -> None:
    """Run a node in the foreground until Ctrl-C or SIGTERM."""
    from sapwood.node.node import NodeConfig
    from sapwood.node.server import run

    host, port = _host_port(http, 8098)
    cluster_host, cluster_port = _host_port(cluster_listen, 8099)
    data_dir = data if data is not None else Path("data") / name
    run(NodeConfig(data_dir=data_dir, name=name, http_host=host, http_port=port,
                   ring_size=ring_size, sync=sync, cluster_host=cluster_host,
                   cluster_port=cluster_port, cluster_name=cluster_name,
                   secret_file=secret_file), log_level=log_level)


# --- admin commands: talk to a running node over HTTP --------------------------------------------


def _node_url(value: str) -> str:
    return value if "://" in value else f"http://{value}"


def node_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--node", "node_url", default=DEFAULT_NODE_URL, show_default=True,
                        help="HTTP URL of a running node.")(command)


@contextmanager
def _client(node_url: str) -> Iterator[Client]:
    """A client of the node; any Sapwood error ends the command with its message and exit 1."""
    from sapwood.client.http import Client
    from sapwood.core.errors import SapwoodError

    client = Client(_node_url(node_url))
    try:
        yield client
    except SapwoodError as exc:
        _fail(exc.message.strip())
    finally:
        client.close()


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(1)


def _props_arg(text: str) -> dict[str, Any]:
    """`'{"props": {...}}'` as Riak's tools take it (a bare `{...}` of props is accepted too)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        _fail(f"PROPS is not JSON: {exc}")
    if not isinstance(body, dict):
        _fail('PROPS must be a JSON object like {"props": {...}}')
    props = body.get("props", body)
    if not isinstance(props, dict):
        _fail('"props" must be a JSON object')
    return props


def _echo_props(props: dict[str, Any]) -> None:
    for name, value in sorted(props.items()):
        click.echo(f"{name}: {json.dumps(value)}")


@main.group("bucket-type")
def bucket_type() -> None:
    """Create, activate, update and inspect bucket types on a running node."""


@bucket_type.command("create")
@click.argument("name")
@click.argument("props", required=False, default="{}")
@node_option
def bucket_type_create(name: str, props: str, node_url: str) -> None:
    """Create bucket type NAME with PROPS ('{"props":{...}}'); it starts inactive."""
    changes = _props_arg(props)
    with _client(node_url) as client:
        client.bucket_type(name).create(changes)
    click.echo(f"{name} created")
    click.echo(f"activate it with: sapwood bucket-type activate {name}")


@bucket_type.command("activate")
@click.argument("name")
@node_option
def bucket_type_activate(name: str, node_url: str) -> None:
    """Activate bucket type NAME so its buckets can be used."""
    with _client(node_url) as client:
        client.bucket_type(name).activate()
    click.echo(f"{name} has been activated")


@bucket_type.command("update")
@click.argument("name")
@click.argument("props")
@node_option
def bucket_type_update(name: str, props: str, node_url: str) -> None:
    """Change properties of bucket type NAME ('{"props":{...}}')."""
    changes = _props_arg(props)
    with _client(node_url) as client:
        client.bucket_type(name).update(changes)
    click.echo(f"{name} updated")


@bucket_type.command("list")
@node_option
def bucket_type_list(node_url: str) -> None:
    """List bucket types and whether each is active."""
    with _client(node_url) as client:
        types = client.bucket_types()
    for info in types:
        click.echo(f"{info.name} ({'active' if info.active else 'not active'})")


@bucket_type.command("status")
@click.argument("name")
@node_option
def bucket_type_status(name: str, node_url: str) -> None:
    """Show whether bucket type NAME exists and is active, and its properties."""
    from sapwood.core.errors import NotFound

    with _client(node_url) as client:
        try:
            props = client.bucket_type(name).get_props()
        except NotFound:
            _fail(f"{name} is not an existing bucket type")
    active = bool(props.pop("active", False))
    click.echo(f"{name} is active" if active
               else f"{name} has been created and may be activated")
    click.echo("")
    _echo_props(props)


@main.command()
@node_option
def ping(node_url: str) -> None:
    """Check that a node answers; prints pong."""
    url = _node_url(node_url)
    with _client(url) as client:
        alive = client.ping()
    if not alive:
        _fail(f"node {url} is not responding to pings")
    click.echo("pong")


def _register_groups() -> None:
    from sapwood.cli.cluster import cluster
    from sapwood.cli.devrel import devrel
    from sapwood.cli.ensemble import ensemble
    from sapwood.cli.sim import sim

    main.add_command(cluster)
    main.add_command(devrel)
    main.add_command(ensemble)
    main.add_command(sim)


_register_groups()

if __name__ == "__main__":
    main()
