"""Seeds the simulator found bugs with, and reference fixes for the core bugs not yet fixed.

Every seed that ever failed is kept here with what it found. The core (src/sapwood/core/) is owned
separately; until a core bug is fixed there, its fix lives in PENDING_CORE_FIXES as a small
monkeypatch, so the sweeps can keep looking for the next bug. When the real fix lands, delete its
entry here: the seeds that found it must then pass on the production code alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sapwood.core import cluster, coordinator, vnode
from sapwood.core.effects import Effect, Reply, Send
from sapwood.core.errors import Unavailable
from sapwood.core.handoff import TransferComplete
from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions


@dataclass(frozen=True)
class Regression:
    seed: int
    options: RunOptions
    found: str  # what the seed exposed, and where it was fixed


def _all(ops: int) -> RunOptions:
    return RunOptions(ops=ops, faults=ALL_FAULTS)


# --- reference fixes for open core bugs -------------------------------------------------------


def fresh_actor_after_local_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    """core/vnode.py + core/kvobject.apply_write: a vnode mints counter = local clock[actor] + 1. Once
    it has deleted its copy of a key (hinted handoff's delete_if_unchanged, or a reap) and later
    holds an older copy, it mints a dot it already gave to another write; replicas then take the
    two writes for one and drop one: an acknowledged write is lost. Fix: a new actor epoch
    (vnode_actor(node, partition, incarnation, epoch)) every time the vnode deletes an object."""

    def bump(node: vnode.Vnode) -> None:
        base = node.__dict__.setdefault("_sim_base_actor", node.actor)
        epoch = node.__dict__.get("_sim_epoch", 0) + 1
        node.__dict__["_sim_epoch"] = epoch
        node.actor = hashlib.blake2b(base + epoch.to_bytes(8, "big"), digest_size=8).digest()

    delete_if_unchanged = vnode.Vnode.delete_if_unchanged
    reap = vnode.Vnode._reap

    def delete(self: vnode.Vnode, raw_key: bytes, raw_value: bytes) -> None:
        deleting = self.backend.get(self.partition, raw_key) == raw_value
        delete_if_unchanged(self, raw_key, raw_value)
        if deleting:
            bump(self)

    def reaping(self: vnode.Vnode, msg: Any, now_ms: int) -> list[Effect]:
        before = self.stats["reaps"]
        effects = reap(self, msg, now_ms)
        if self.stats["reaps"] != before:
            bump(self)
        return effects

    monkeypatch.setattr(vnode.Vnode, "delete_if_unchanged", delete)
    monkeypatch.setattr(vnode.Vnode, "_reap", reaping)


def durable_cluster_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """core/cluster.py ClusterNode._adopt writes the new cluster state with meta_put but nothing
    makes it durable before the node acts on it (answers `cluster commit`, serves with the new
    ring): a power loss right after a commit reverts the whole cluster to the old ring, and a
    joined node comes back standalone. Fix: make the state durable before acting (sync, or a
    Flush whose completion releases the admin reply)."""
    adopt = cluster.ClusterNode._adopt

    def adopt_durably(self: cluster.ClusterNode, state: Any) -> None:
        adopt(self, state)
        self.backend.sync()

    monkeypatch.setattr(cluster.ClusterNode, "_adopt", adopt_durably)


def resend_transfer_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """core/cluster.py: TransferComplete is sent once; if it is lost (partition, loss, claimant
    crash) the partition is in ownership_done, never handed off again, and the plan never
    finishes (the leaving node stays 'leaving' forever). Fix: on each handoff tick, resend
    TransferComplete for every finished transfer the ring does not show yet."""
    tick = cluster.ClusterNode._handoff_tick

    def handoff_tick(self: cluster.ClusterNode, now_ms: int) -> list[Effect]:
        effects = tick(self, now_ms)
        future = self.state.next_owners
        if future:
            for partition, target in sorted(self.ownership_done):
                if self.state.owners[partition] == self.name and future[partition] == target:
                    effects.append(Send(self.state.claimant,
                                        TransferComplete(partition, self.name, target)))
        return effects

    monkeypatch.setattr(cluster.ClusterNode, "_handoff_tick", handoff_tick)


def refuse_put_without_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    """core/coordinator.py PutCoordinator.__init__: `(local or preflist)[0]` raises IndexError when
    the preflist is empty (a node that owns nothing and sees no member up, e.g. a node that has
    just joined, during a partition). Fix: start() answers Unavailable when there is no replica."""
    init = coordinator.PutCoordinator.__init__
    start = coordinator.PutCoordinator.start

    def put_init(self: coordinator.PutCoordinator, req_id: int, node: str, bkey: Any,
                 preflist: list[Any], *args: Any, **kwargs: Any) -> None:
        if preflist:
            init(self, req_id, node, bkey, preflist, *args, **kwargs)
            return
        self.req_id = req_id
        self.phase = coordinator.PutPhase.DONE
        self.__dict__["_sim_no_replicas"] = True

    def put_start(self: coordinator.PutCoordinator, now_ms: int) -> list[Effect]:
        if self.__dict__.get("_sim_no_replicas"):
            return [Reply(self.req_id, Unavailable("no replica of this key is up"))]
        return start(self, now_ms)

    monkeypatch.setattr(coordinator.PutCoordinator, "__init__", put_init)
    monkeypatch.setattr(coordinator.PutCoordinator, "start", put_start)


PENDING_CORE_FIXES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "fresh-actor-after-local-delete": fresh_actor_after_local_delete,
    "durable-cluster-state": durable_cluster_state,
    "resend-transfer-complete": resend_transfer_complete,
    "refuse-put-without-replicas": refuse_put_without_replicas,
}


def apply_pending_fixes(monkeypatch: pytest.MonkeyPatch, *, skip: tuple[str, ...] = ()) -> None:
    for name, fix in PENDING_CORE_FIXES.items():
        if name not in skip:
            fix(monkeypatch)


# --- the regression list ----------------------------------------------------------------------

_REMOVED_NODE = ("a node that completed `cluster leave` kept hinted data it could never hand off "
                 "(no member pinged it, so it thought all were down): handoff never settled "
                 "(fixed in core: members answer pings from nodes that have left)")
_DOT_REUSE = ("a fallback vnode deleted its handed-off copy, later coordinated a write to the "
              "same key and minted a dot it had already used; replicas dropped the new write as "
              "seen: acknowledged add lost [fresh-actor-after-local-delete]")
_STATE_EPOCH = ("the claimant gossiped ring epoch 5, lost it in a power loss (never synced), then "
                "made a different epoch 5: members disagree on the ring forever, primaries "
                "diverge [durable-cluster-state]")
_TRANSFER = ("a TransferComplete was lost; the partition was never handed off again and the "
             "leave never finished [resend-transfer-complete]")
_NO_REPLICA = ("a put reached a node that owns nothing and saw no member up: IndexError in "
               "PutCoordinator [refuse-put-without-replicas]")
_REQ_ID_RACE = ("sim: a read answered synchronously let the write's request id be overwritten by "
                "the read's, so a duplicated write's extra sibling was reported as a sibling "
                "explosion (fixed in sim/workload.py _request)")

REGRESSIONS: list[Regression] = [
    Regression(0, _all(2000), _REMOVED_NODE),
    Regression(5, _all(2000), _REMOVED_NODE),
    Regression(3, _all(2000), _DOT_REUSE),
    Regression(4, _all(2000), _DOT_REUSE),
    Regression(8, _all(2000), _DOT_REUSE),
    Regression(172, _all(2000), _STATE_EPOCH),
    Regression(174, _all(2000), _STATE_EPOCH),
    Regression(19, _all(2000), _TRANSFER),
    Regression(71, _all(2000), _NO_REPLICA),
    Regression(1, _all(2000), _REQ_ID_RACE),
]
