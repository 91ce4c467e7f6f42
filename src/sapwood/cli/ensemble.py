"""`sapwood ensemble status`: every consistent group of the cluster, its leader, its members and
how far each member's log is behind the leader's.

The node given with --node names the cluster's members; each member's /admin/ensembles says
which group members it hosts, and the answers are joined here.
"""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

DEFAULT_NODE_URL = "http://127.0.0.1:8098"
ADMIN_TIMEOUT_S = 10.0

node_option = click.option("--node", "node_url", default=DEFAULT_NODE_URL, show_default=True,
                           help="HTTP URL of a node of the cluster.")


def _url(value: str) -> str:
    return (value if "://" in value else f"http://{value}").rstrip("/")


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=ADMIN_TIMEOUT_S)
    if response.status_code >= 400:
        raise click.ClickException(f"{url}: {response.status_code}: {response.text.strip()}")
    return response.json()


def member_urls(node_url: str) -> dict[str, str]:
    """name -> HTTP URL of every member of the cluster `node_url` belongs to."""
    try:
        status = _get(node_url + "/admin/cluster/status")
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {node_url}: {exc}") from None
    urls = {}
    for member in status["members"]:
        if member["status"] != "removed":
            urls[member["name"]] = _url(member["http"]) if member.get("http") else ""
    return urls


def fetch_views(urls: dict[str, str], node_url: str) -> dict[str, dict[str, Any] | None]:
    """Each member's /admin/ensembles answer (None when it did not answer)."""
    views: dict[str, dict[str, Any] | None] = {}
    for name, url in sorted(urls.items()):
        try:
            views[name] = _get((url or node_url) + "/admin/ensembles")
        except (httpx.HTTPError, click.ClickException):
            views[name] = None
    return views


def merge_views(views: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One row per group: the leader of the highest term, its voters, each voter's lag."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for view in views.values():
        for row in (view or {}).get("members", []):
            by_group.setdefault(row["group"], []).append(row)
    out = []
    for group, rows in sorted(by_group.items(), key=lambda item: _group_order(item[0])):
        leaders = [r for r in rows if r["role"] == "leader"]
        leader = max(leaders, key=lambda r: r["term"]) if leaders else None
        reported = {r["member"]: r for r in rows}
        voters = leader["members"] if leader else sorted({m for r in rows for m in r["members"]})
        lag = {}
        for member in voters:
            row = reported.get(member)
            lag[member] = (None if row is None or leader is None
                           else max(0, leader["last_index"] - row["last_index"]))
        out.append({
            "group": group, "leader": leader["member"] if leader else None,
            "term": leader["term"] if leader else None,
            "commit_index": leader["commit_index"] if leader else None,
            "members": voters, "lag": lag,
            "target_members": rows[0]["target_members"],
        })
    return out


def _group_order(group: str) -> tuple[int, int]:
    first, _, n_val = group[1:].partition("/")
    return (int(n_val), int(first)) if first.isdigit() and n_val.isdigit() else (0, 0)


def _lag_text(lag: int | None) -> str:
    return "?" if lag is None else str(lag)


@click.group()
def ensemble() -> None:
    """Inspect the consistent groups (ensembles) of a running cluster."""


@ensemble.command()
@node_option
@click.option("--json", "as_json", is_flag=True, help="Print the joined view as JSON.")
def status(node_url: str, as_json: bool) -> None:
    """Groups, their leaders, members, commit index and each member's lag (in log entries)."""
    node_url = _url(node_url)
    views = fetch_views(member_urls(node_url), node_url)
    groups = merge_views(views)
    if as_json:
        click.echo(json.dumps({"groups": groups, "unreachable": sorted(
            name for name, view in views.items() if view is None)}, indent=2))
        return
    for name in sorted(n for n, view in views.items() if view is None):
        click.echo(f"warning: {name} did not answer; its members' lag is shown as ?", err=True)
    if not groups:
        click.echo("no consistent groups are active (they start with the first operation on a "
                   "consistent bucket type)")
        return
    click.echo(f"{'group':<10} {'leader':<28} {'term':>5} {'commit':>7}  members (lag)")
    for row in groups:
        members = ", ".join(f"{m} ({_lag_text(row['lag'][m])})" for m in row["members"])
        moving = "" if set(row["members"]) == set(row["target_members"]) else "  [changing]"
        click.echo(f"{row['group']:<10} {row['leader'] or '(none)':<28} "
                   f"{row['term'] if row['term'] is not None else '-':>5} "
                   f"{row['commit_index'] if row['commit_index'] is not None else '-':>7}  "
                   f"{members}{moving}")
