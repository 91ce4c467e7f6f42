"""Randomized runs: partitions, loss, duplication, reordering, slow disks, crashes that lose
unsynced writes, drifting clocks and membership changes, all from one seed per run.

During a run the harness checks election safety, state machine safety and leader completeness
on every event; at the end it checks log matching, that no acknowledged write was lost, that
reads were not stale, that after healing a leader is elected and a proposal commits, and that
every request to a replica that stayed up was answered.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from core.consensus.raft_harness import FAST, Cluster, NetConfig
from sapwood.core.consensus import (
    ABSENT,
    AddMember,
    Delete,
    Get,
    NotLeader,
    Ok,
    Precondition,
    Put,
    RemoveMember,
    Unavailable,
    Version,
)

KEYS = [b"a", b"b", b"c"]
SEEDS = 200
CHAOS_MS = 2_500.0


def client_step(cluster: Cluster, rng: random.Random, versions: dict[bytes, Version]) -> None:
    alive = cluster.alive()
    leader = cluster.leader()
    node = leader if leader is not None and rng.random() < 0.8 else rng.choice(alive)
    key = rng.choice(KEYS)
    known = versions.get(key)
    roll = rng.random()
    if roll < 0.4:
        expected = known if rng.random() < 0.7 else rng.choice([None, ABSENT, Version(1, 2)])
        cluster.propose(node, Put(key, b"v%d" % rng.randrange(10_000), expected))
    elif roll < 0.5:
        cluster.propose(node, Delete(key, known if rng.random() < 0.5 else None))
    elif roll < 0.6:
        cluster.propose(node, Get(key))
    else:
        cluster.read(node, key)


def membership_step(cluster: Cluster, rng: random.Random, universe: list[str]) -> None:
    leader = cluster.leader()
    if leader is None:
        return
    members = cluster.replica(leader).members
    outsiders = [n for n in universe if n not in members]
    if outsiders and (len(members) < 3 or rng.random() < 0.5):
        cluster.propose(leader, AddMember(rng.choice(outsiders)))
    elif len(members) > 1:
        cluster.propose(leader, RemoveMember(rng.choice(members)))


def fault_step(cluster: Cluster, rng: random.Random, universe: list[str]) -> None:
    roll = rng.random()
    alive = cluster.alive()
    leader = cluster.leader()
    if roll < 0.25:
        shuffled = universe[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(shuffled))
        cluster.partition(set(shuffled[:cut]), set(shuffled[cut:]))
    elif roll < 0.35 and leader is not None:
        cluster.isolate(leader)
    elif roll < 0.40:
        a, b = rng.sample(universe, 2)
        cluster.cuts.add((a, b))  # one-way link failure
    elif roll < 0.62:
        cluster.heal()
    elif roll < 0.75 and len(alive) > 1:
        cluster.crash(leader if leader is not None and rng.random() < 0.4 else rng.choice(alive))
    else:
        dead = [n for n in universe if n not in alive]
        if dead:
            cluster.restart(rng.choice(dead))


def run_chaos(seed: int) -> Cluster:
    rng = random.Random(seed)
    size = rng.choice([3, 5])
    members = [f"n{i}" for i in range(1, size + 1)]
    spares = [f"n{i}" for i in range(size + 1, size + 3)] if rng.random() < 0.5 else []
    config = dataclasses.replace(
        FAST,
        snapshot_interval_entries=rng.choice([5, 12, 40]),
        snapshot_trailing_entries=rng.choice([0, 4, 20]),
        leases_enabled=rng.random() < 0.8,
        max_inflight_entries=rng.choice([2, 16]),
    )
    net = NetConfig(
        loss=rng.uniform(0, 0.05),
        duplicate=rng.uniform(0, 0.05),
        max_delay_ms=rng.uniform(2, 25),
        slow_disk=rng.uniform(0, 0.3),
    )
    cluster = Cluster(members, seed=seed, config=config, net=net, drift_rate=config.max_clock_drift_rate)
    cluster.start()
    for spare in spares:
        cluster.join(spare)
    universe = members + spares
    versions: dict[bytes, Version] = {}
    end = cluster.now + CHAOS_MS
    while cluster.now < end:
        cluster.run_for(rng.uniform(5, 60))
        roll = rng.random()
        if roll < 0.7:
            for _ in range(rng.randrange(1, 5)):
                client_step(cluster, rng, versions)
        elif roll < 0.75 and spares:
            membership_step(cluster, rng, universe)
        else:
            fault_step(cluster, rng, universe)
        for op in list(cluster.ops.values())[-10:]:
            if isinstance(op.result, Ok) and op.key is not None:
                versions[op.key] = op.result.version
    cluster.check_log_matching()
    heal_and_settle(cluster, universe)
    return cluster


def heal_and_settle(cluster: Cluster, universe: list[str]) -> None:
    cluster.heal()
    cluster.net.loss = 0.0
    for node in universe:
        cluster.restart(node)
    assert cluster.run_until(lambda: cluster.leader() is not None, 10_000), "no leader after healing"
    decided = None
    deadline = cluster.now + 10_000
    while decided is None and cluster.now < deadline:
        leader = cluster.leader()
        if leader is None:
            cluster.run_for(50)
            continue
        result = cluster.wait(cluster.propose(leader, Put(b"final", b"x")), 1_000)
        if isinstance(result, Ok | Precondition):
            decided = result
        elif result is None or isinstance(result, NotLeader | Unavailable):
            cluster.run_for(50)
    assert decided is not None, "no proposal committed after healing"
    # Long enough for every outstanding proposal to be decided or to time out.
    cluster.run_for(cluster.config.proposal_timeout_ms + 500)
    cluster.check_log_matching()
    cluster.check_reads()
    assert cluster.unanswered() == []


@pytest.mark.parametrize("seed", range(SEEDS))
def test_safety_and_recovery_under_chaos(seed: int) -> None:
    run_chaos(seed)


def test_chaos_exercises_what_it_claims() -> None:
    """Guard against a harness that quietly stopped doing anything."""
    totals = {"elections": 0, "snapshots": 0, "lease": 0, "read_index": 0, "oks": 0,
              "configs": 0}
    for seed in range(12):
        cluster = run_chaos(seed)
        for node in cluster.alive():
            stats = cluster.replica(node).stats
            totals["elections"] += stats.elections_won
            totals["snapshots"] += stats.snapshots_installed
            totals["lease"] += stats.lease_reads
            totals["read_index"] += stats.read_index_reads
        totals["oks"] += sum(1 for op in cluster.ops.values() if isinstance(op.result, Ok))
        totals["configs"] += sum(1 for op in cluster.ops.values()
                                 if op.kind == "member" and op.result is not None
                                 and type(op.result).__name__ == "ConfigApplied")
    assert all(v > 0 for v in totals.values()), totals
