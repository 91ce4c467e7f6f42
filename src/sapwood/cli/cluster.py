"""`sapwood cluster ...`: membership commands, sent to a running node's admin routes."""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

DEFAULT_NODE_URL = "http://127.0.0.1:8098"
ADMIN_TIMEOUT_S = 30.0

node_option = click.option("--node", "node_url", default=DEFAULT_NODE_URL, show_default=True,
                           help="HTTP URL of the node to ask.")


def admin_call(node_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call an admin route; print the server's message and exit 1 on an error."""
    url = node_url.rstrip("/") + "/admin/cluster/" + path
    try:
        response = httpx.request(method, url, json=body, timeout=ADMIN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {node_url}: {exc}") from None
    if response.status_code >= 400:
        raise click.ClickException(f"{response.status_code}: {response.text.strip()}")
    return response.json()


@click.group()
def cluster() -> None:
    """Join nodes into a cluster, plan and commit changes, watch handoff."""


@cluster.command()
@click.argument("target")
@node_option
def join(target: str, node_url: str) -> None:
    """Stage joining the cluster of TARGET (name@host[:port] or host:port, its cluster listener)."""
    result = admin_call(node_url, "POST", "join", {"node": target})
    click.echo(f"Join staged. Staged changes: {_staged(result)}")
    click.echo("Run `sapwood cluster plan` to review and `sapwood cluster commit` to apply.")


@cluster.command()
@node_option
def plan(node_url: str) -> None:
    """Show what committing the staged changes would do."""
    _print_plan(admin_call(node_url, "GET", "plan"))


@cluster.command()
@node_option
def commit(node_url: str) -> None:
    """Commit the staged changes; partitions then move by ownership handoff."""
    result = admin_call(node_url, "POST", "commit")
    _print_plan(result)
    click.echo("Committed. Follow the transfers with `sapwood cluster status`.")


@cluster.command()
@click.argument("node_name", required=False)
@node_option
def leave(node_name: str | None, node_url: str) -> None:
    """Stage NODE_NAME (default: the node asked) leaving the cluster."""
    result = admin_call(node_url, "POST", "leave", {"node": node_name} if node_name else {})
    click.echo(f"Leave staged. Staged changes: {_staged(result)}")


@cluster.command("force-remove")
@click.argument("node_name")
@node_option
def force_remove(node_name: str, node_url: str) -> None:
    """Stage removing NODE_NAME without a handoff (for a node that is gone for good)."""
    result = admin_call(node_url, "POST", "force-remove", {"node": node_name})
    click.echo(f"Force-remove staged. Staged changes: {_staged(result)}")


@cluster.command()
@node_option
def clear(node_url: str) -> None:
    """Drop every staged change."""
    admin_call(node_url, "POST", "clear")
    click.echo("Staged changes cleared.")


@cluster.command()
@node_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def status(node_url: str, as_json: bool) -> None:
    """Members, their up/down state, ring ownership and handoffs."""
    result = admin_call(node_url, "GET", "status")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"cluster {result['cluster_name']}  claimant {result['claimant']}  "
               f"epoch {result['epoch']}  ring {result['ring_size']}")
    click.echo(f"{'member':<28}{'status':<10}{'up':<6}{'ring %':>8}{'pending %':>11}")
    for m in result["members"]:
        click.echo(f"{m['name']:<28}{m['status']:<10}{'up' if m['up'] else 'DOWN':<6}"
                   f"{m['ownership']:>8.2f}{m['pending_ownership']:>11.2f}")
    handoffs = result["handoffs"]
    click.echo(f"transfers pending: {result['transfers_pending']}  "
               f"handoffs waiting: {len(handoffs['waiting'])}  active: {len(handoffs['active'])}")
    for t in handoffs["active"]:
        click.echo(f"  partition {t['partition']} -> {t['target']} ({t['kind']}): "
                   f"{t['objects_sent']} objects, {t['bytes_sent']} bytes sent")
    if result["staged"]:
        click.echo(f"staged: {_staged(result)}")


@cluster.command()
@node_option
def ring(node_url: str) -> None:
    """Partition owners."""
    result = admin_call(node_url, "GET", "ring")
    upcoming = result["next_owners"]
    for entry in result["owners"]:
        line = f"{entry['partition']:>5}  {entry['node']}"
        if upcoming and upcoming[entry["partition"]] != entry["node"]:
            line += f"  -> {upcoming[entry['partition']]}"
        click.echo(line)


def _staged(result: dict[str, Any]) -> str:
    staged = result.get("staged") or []
    return ", ".join(f"{action} {node}" for action, node in staged) or "none"


def _print_plan(result: dict[str, Any]) -> None:
    click.echo(f"Staged changes: {_staged(result)}")
    click.echo(f"Partitions to transfer: {result['transfers']}")
    for name, share in result["ownership_after"].items():
        click.echo(f"  {name:<28}{share:>7.2f}% of the ring")
