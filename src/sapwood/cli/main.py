"""`sapwood ...`: argument parsing into configs, then a call into the runtime. No logic here."""

from __future__ import annotations

from pathlib import Path

import click

from sapwood import __version__


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
@click.option("--sync", type=click.Choice(["group", "none"]), default="group", show_default=True,
              help="group: fsync (batched) before durable acks; none: survive process crashes only.")
@click.option("--log-level", default="info", show_default=True)
def start(name: str, http: str, data: Path | None, ring_size: int, sync: str, log_level: str) -> None:
    """Run a node in the foreground until Ctrl-C or SIGTERM."""
    from sapwood.node.node import NodeConfig
    from sapwood.node.server import run

    host, port = _host_port(http, 8098)
    data_dir = data if data is not None else Path("data") / name
    run(NodeConfig(data_dir=data_dir, name=name, http_host=host, http_port=port,
                   ring_size=ring_size, sync=sync), log_level=log_level)


if __name__ == "__main__":
    main()
