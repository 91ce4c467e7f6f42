"""Cluster membership: members, the ring and its planned successor, the claimant, gossip merge.

One node, the claimant, turns staged changes (join, leave, force-remove) into a plan and commits
it: the committed state names the ring partitions should move to (`next_owners`). Ownership moves
one partition at a time as handoffs complete, each move a new epoch. Every node gossips its state;
the higher epoch wins, so all converge on the claimant's latest decision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sapwood.core.claim import claim
from sapwood.core.errors import BadRequest, Conflict, NotFound
from sapwood.core.ownership import transfers

MAX_MEMBERS = 256


class Status(Enum):
    JOINING = "joining"  # staged join, not yet committed
    VALID = "valid"
    LEAVING = "leaving"  # committed leave: handing its partitions off
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    status: Status
    cluster_addr: str  # host:port of the inter-node listener
    http_url: str


@dataclass(frozen=True, slots=True)
class Staged:
    action: str  # "join" | "leave" | "force-remove"
    node: str


@dataclass(frozen=True, slots=True)
class ClusterState:
    cluster_name: str
    epoch: int
    claimant: str
    members: tuple[Member, ...]
    owners: tuple[str, ...]
    next_owners: tuple[str, ...] | None = None
    staged: tuple[Staged, ...] = ()

    @classmethod
    def standalone(cls, cluster_name: str, me: Member, ring_size: int) -> ClusterState:
        return cls(cluster_name, 1, me.name, (me,), tuple([me.name] * ring_size))

    def member(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
        return None

    @property
    def active_members(self) -> list[str]:
        """Members that take part in the ring (not removed)."""
        return [m.name for m in self.members if m.status is not Status.REMOVED]

    @property
    def transfers_pending(self) -> list[tuple[int, str, str]]:
        if self.next_owners is None:
            return []
        return transfers(self.owners, self.next_owners)

    def newer_than(self, other: ClusterState) -> bool:
        """Gossip order: higher epoch wins; equal epochs are broken by claimant name."""
        return (self.epoch, self.claimant) > (other.epoch, other.claimant)


# --- claimant operations (each returns the new state or raises, changing nothing) -------------


def stage_join(state: ClusterState, joiner: Member) -> ClusterState:
    existing = state.member(joiner.name)
    if existing is not None and existing.status is not Status.REMOVED:
        raise Conflict(f"{joiner.name} is already a member ({existing.status.value})")
    if len(state.active_members) >= MAX_MEMBERS:
        raise Conflict(f"a cluster holds at most {MAX_MEMBERS} members")
    members = tuple(m for m in state.members if m.name != joiner.name)
    members = _sorted((*members, replace(joiner, status=Status.JOINING)))
    staged = (*_unstage(state.staged, joiner.name), Staged("join", joiner.name))
    return replace(state, epoch=state.epoch + 1, members=members, staged=staged)


def stage_leave(state: ClusterState, node: str) -> ClusterState:
    member = _valid_member(state, node)
    remaining = [m for m in _members_after(state) if m != member.name]
    if not remaining:
        raise Conflict(f"{node} is the last member; a cluster cannot leave itself empty")
    staged = (*_unstage(state.staged, node), Staged("leave", node))
    return replace(state, epoch=state.epoch + 1, staged=staged)


def stage_force_remove(state: ClusterState, node: str) -> ClusterState:
    member = state.member(node)
    if member is None or member.status is Status.REMOVED:
        raise NotFound(f"{node} is not a member of this cluster")
    if node == state.claimant:
        raise BadRequest(f"{node} is the claimant; force-remove it from another node's view "
                         "after it has gone, or make it leave")
    remaining = [m for m in _members_after(state) if m != node]
    if not remaining:
        raise Conflict("force-removing this node would leave the cluster empty")
    staged = (*_unstage(state.staged, node), Staged("force-remove", node))
    return replace(state, epoch=state.epoch + 1, staged=staged)


def clear_staged(state: ClusterState) -> ClusterState:
    members = tuple(m for m in state.members if m.status is not Status.JOINING)
    return replace(state, epoch=state.epoch + 1, members=members, staged=())


def _members_after(state: ClusterState) -> list[str]:
    """Members that will own partitions once the staged changes are committed."""
    leaving = {s.node for s in state.staged if s.action in ("leave", "force-remove")}
    return [m.name for m in state.members
            if m.status in (Status.VALID, Status.JOINING) and m.name not in leaving]


def plan(state: ClusterState, target_n_val: int = 4) -> tuple[tuple[str, ...], list[Any]]:
    """The ring the staged changes lead to, and the partition transfers to get there."""
    if not state.staged:
        raise BadRequest("there are no staged changes to plan; stage a join, leave or "
                         "force-remove first")
    if state.next_owners is not None:
        raise Conflict("a previous plan is still being carried out "
                       f"({len(state.transfers_pending)} transfers pending); wait for it")
    members = _members_after(state)
    removed = {s.node for s in state.staged if s.action == "force-remove"}
    # Force-removed nodes' partitions move without a handoff: treat them as already gone.
    current = tuple(members[0] if o in removed else o for o in state.owners)
    new = claim(current, sorted(members), target_n_val)
    return new, transfers(current, new)


def commit(state: ClusterState, target_n_val: int = 4) -> ClusterState:
    new_owners, moves = plan(state, target_n_val)
    removed = {s.node for s in state.staged if s.action == "force-remove"}
    leaving = {s.node for s in state.staged if s.action == "leave"}
    members = []
    for m in state.members:
        if m.name in removed:
            members.append(replace(m, status=Status.REMOVED))
        elif m.name in leaving:
            members.append(replace(m, status=Status.LEAVING))
        elif m.status is Status.JOINING:
            members.append(replace(m, status=Status.VALID))
        else:
            members.append(m)
    owners = tuple(new_owners[p] if o in removed else o for p, o in enumerate(state.owners))
    claimant = state.claimant
    if claimant in leaving:
        claimant = sorted(n for n in _members_after(state))[0]
    next_owners = new_owners if moves or owners != new_owners else None
    result = replace(state, epoch=state.epoch + 1, claimant=claimant, members=_sorted(members),
                     owners=owners, next_owners=next_owners, staged=())
    return _settle(result)


def complete_transfer(state: ClusterState, partition: int, source: str, target: str) -> ClusterState:
    """A handoff of `partition` to its planned owner finished: it now owns it."""
    if state.next_owners is None or state.next_owners[partition] != target:
        return state
    if state.owners[partition] != source:
        return state
    owners = list(state.owners)
    owners[partition] = target
    return _settle(replace(state, epoch=state.epoch + 1, owners=tuple(owners)))


def _settle(state: ClusterState) -> ClusterState:
    """Finish a plan once every partition has moved: leaving members that own nothing are gone."""
    if state.next_owners is not None and state.owners != state.next_owners:
        return state
    owning = set(state.owners)
    members = tuple(
        replace(m, status=Status.REMOVED) if m.status is Status.LEAVING and m.name not in owning
        else m for m in state.members
    )
    return replace(state, members=members, next_owners=None)


def _valid_member(state: ClusterState, node: str) -> Member:
    member = state.member(node)
    if member is None or member.status is Status.REMOVED:
        raise NotFound(f"{node} is not a member of this cluster")
    if member.status is not Status.VALID:
        raise Conflict(f"{node} is {member.status.value}, not valid")
    return member


def _unstage(staged: tuple[Staged, ...], node: str) -> tuple[Staged, ...]:
    return tuple(s for s in staged if s.node != node)


def _sorted(members: Any) -> tuple[Member, ...]:
    return tuple(sorted(members, key=lambda m: m.name))


# --- wire form (gossip) ---------------------------------------------------------------------


def state_to_wire(state: ClusterState) -> list[Any]:
    return [
        state.cluster_name, state.epoch, state.claimant,
        [[m.name, m.status.value, m.cluster_addr, m.http_url] for m in state.members],
        list(state.owners), None if state.next_owners is None else list(state.next_owners),
        [[s.action, s.node] for s in state.staged],
    ]


def state_from_wire(w: list[Any]) -> ClusterState:
    name, epoch, claimant, members, owners, next_owners, staged = w
    return ClusterState(
        name, epoch, claimant,
        tuple(Member(n, Status(s), a, h) for n, s, a, h in members),
        tuple(owners), None if next_owners is None else tuple(next_owners),
        tuple(Staged(a, n) for a, n in staged),
    )
