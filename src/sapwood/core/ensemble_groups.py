"""Naming consistent groups and their members, and which members the ring wants in each.

A group serves every key whose preference list (for one n_val) starts at the same partition:
its id is "g{first}/{n}" and its members are the N primary partitions clockwise from `first`.
A member is one partition on one node, "{partition}@{node}"; when a partition changes owner the
group replaces that member (one change at a time), it never moves a member's state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sapwood.core.consensus import RaftConfig
from sapwood.core.errors import BadRequest
from sapwood.core.ring import BKey, Ring

# Every member of a group must run with the same timing (the lease argument compares one
# member's lease with another's election timeout), so it is fixed here for all nodes.
# Leader leases serve reads without a heartbeat round. They need each core's clock to be monotonic
# with bounded drift (consensus.config), which holds: a node's core clock (node.local.core_ms) is
# CLOCK_MONOTONIC, never stepped by NTP or an operator, and the simulator models exactly that
# (skew and drift while running; a stepped wall clock is seen only from the next restart, when
# the process re-anchors — and a restarted replica grants no vote for an election timeout).
ENSEMBLE_RAFT_CONFIG = RaftConfig(
    election_timeout_min_ms=1_000, election_timeout_max_ms=2_000, heartbeat_interval_ms=250,
    leases_enabled=True, lazy_followers=True)
# For a driver whose core clock may step while running: leadership confirmed by a round per read.
STEPPING_CLOCK_RAFT_CONFIG = replace(ENSEMBLE_RAFT_CONFIG, leases_enabled=False)


@dataclass(frozen=True, slots=True)
class RingView:
    """The ring as this node last heard it: owners now and, while a plan runs, afterwards."""

    owners: tuple[str, ...]
    next_owners: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.owners)

    @property
    def settled(self) -> bool:
        return self.next_owners is None or self.next_owners == self.owners

    @property
    def future(self) -> tuple[str, ...]:
        return self.next_owners if self.next_owners is not None else self.owners


def group_id(first: int, n_val: int) -> str:
    return f"g{first}/{n_val}"


def parse_group(group: str) -> tuple[int, int]:
    """(first partition, n_val) of a group id; BadRequest for anything else."""
    try:
        first, n_val = group[1:].split("/")
        parsed = int(first), int(n_val)
    except ValueError:
        raise BadRequest(f"not a consistent group id: {group!r}") from None
    if not group.startswith("g") or parsed[0] < 0 or parsed[1] < 1:
        raise BadRequest(f"not a consistent group id: {group!r}")
    return parsed


def group_of(ring: Ring, bkey: BKey, n_val: int) -> str:
    return group_id(ring.first_partition(bkey), n_val)


def member_id(partition: int, node: str) -> str:
    return f"{partition}@{node}"


def member_partition(member: str) -> int:
    return int(member.split("@", 1)[0])


def member_node(member: str) -> str:
    """The node hosting `member` (node names contain '@' themselves: split at the first)."""
    return member.split("@", 1)[1]


def group_partitions(group: str, ring_size: int) -> list[int]:
    first, n_val = parse_group(group)
    return [(first + i) % ring_size for i in range(min(n_val, ring_size))]


def members_under(group: str, owners: tuple[str, ...]) -> tuple[str, ...]:
    """The members the ring `owners` gives `group`: its primaries, in preference order."""
    return tuple(member_id(p, owners[p]) for p in group_partitions(group, len(owners)))


def majority(count: int) -> int:
    return count // 2 + 1
