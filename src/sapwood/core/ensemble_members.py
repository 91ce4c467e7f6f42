"""The books an ensemble host keeps: the members it hosts, the replica requests it awaits, its
counters, and the views of them that /admin/ensembles and /stats show."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sapwood.core.consensus import Entry, RaftReplica, RaftStats, Reconfigure, Role, Snapshot
from sapwood.core.ensemble_groups import RingView, members_under
from sapwood.core.ensemble_storage import MemberStorage


class CallKind(Enum):
    CLIENT_OP = "client-op"  # an operation this node coordinates
    REMOTE = "remote"  # an operation another node coordinates, run by a member here
    RECONFIG = "reconfig"  # a membership change proposed by a leader here


@dataclass(frozen=True, slots=True)
class Call:
    """What a replica's Reply with this call id answers."""

    kind: CallKind
    group: str
    member: str
    req_id: int = 0  # CLIENT_OP
    origin: str = ""  # REMOTE: the coordinating node
    origin_call: int = 0  # REMOTE: its call id
    change: str = ""  # RECONFIG: the member added or removed
    removing: bool = False
    started_ms: int = 0
    write: bool = False  # REMOTE: the command may change the register (not a read)


@dataclass(slots=True)
class Hosted:
    """One member hosted here: its replica, its storage, and the configuration it applied."""

    group: str
    member: str
    storage: MemberStorage
    generation: int
    committed: tuple[str, ...]
    heard_ms: int = 0  # when a message of its group last reached it (or it was created)
    replica: RaftReplica = field(init=False)

    def observe(self, _member: str, item: Entry | Snapshot) -> None:
        """The replica's apply hook: remember the voter set of the latest applied change."""
        if isinstance(item, Snapshot):
            self.committed = item.meta.members
        elif isinstance(item.command, Reconfigure):
            self.committed = item.command.members

    @property
    def config_committed(self) -> bool:
        """Whether the newest voter set in the log is committed (no change in progress)."""
        return set(self.committed) == set(self.replica.members)


@dataclass(slots=True)
class HostCounters:
    ops: dict[str, int] = field(default_factory=dict)
    retired: RaftStats = field(default_factory=RaftStats)  # of members no longer hosted
    members_retired: int = 0
    membership_changes: int = 0

    def count(self, name: str) -> None:
        self.ops[name] = self.ops.get(name, 0) + 1

    def absorb(self, stats: RaftStats) -> None:
        _add(self.retired, stats)


class RecentKeys:
    """The last `limit` keys seen, to recognise a duplicate (of a message) that arrives soon."""

    __slots__ = ("_limit", "_order", "_set")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._order: deque[Hashable] = deque()
        self._set: set[Hashable] = set()

    def seen_before(self, key: Hashable) -> bool:
        if key in self._set:
            return True
        self._order.append(key)
        self._set.add(key)
        if len(self._order) > self._limit:
            self._set.discard(self._order.popleft())
        return False


def _add(total: RaftStats, stats: RaftStats) -> None:
    for name in stats.__dataclass_fields__:
        setattr(total, name, getattr(total, name) + getattr(stats, name))


def status_row(hosted: Hosted, ring: RingView, now_ms: int) -> dict[str, Any]:
    replica = hosted.replica
    lease = replica.lease_expiry
    return {
        "group": hosted.group, "member": hosted.member, "role": replica.role.value,
        "term": replica.term, "leader": replica.leader_id,
        "members": list(replica.members), "committed_members": list(hosted.committed),
        "target_members": list(members_under(hosted.group, ring.future)),
        "commit_index": replica.commit_index, "applied_index": replica.applied_index,
        "last_index": replica.log.last_index, "voter": replica.is_voter,
        "lease": lease is not None and lease > now_ms,
    }


def stats_view(counters: HostCounters, hosted: list[Hosted], open_ops: int) -> dict[str, Any]:
    """Counters over every member this node hosts or hosted since it started."""
    totals = RaftStats()
    for stats in [counters.retired, *(h.replica.stats for h in hosted)]:
        _add(totals, stats)
    return {
        "groups": len({h.group for h in hosted}), "members": len(hosted),
        "leading": sum(1 for h in hosted if h.replica.role is Role.LEADER),
        "elections": totals.elections_won, "elections_started": totals.elections_started,
        "commits": totals.commits, "lease_reads": totals.lease_reads,
        "read_index_reads": totals.read_index_reads, "step_downs": totals.step_downs,
        "snapshots_taken": totals.snapshots_taken,
        "snapshots_installed": totals.snapshots_installed,
        "membership_changes": counters.membership_changes,
        "members_retired": counters.members_retired,
        "operations": dict(counters.ops), "open_operations": open_ops,
    }
