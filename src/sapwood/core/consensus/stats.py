"""Counters a replica keeps about itself (exported by the node as metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RaftStats:
    pre_votes_started: int = 0
    elections_started: int = 0
    elections_won: int = 0
    commits: int = 0  # entries applied after being committed
    lease_reads: int = 0
    read_index_reads: int = 0
    step_downs: int = 0
    quorum_losses: int = 0
    snapshots_taken: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    proposals_refused: int = 0
