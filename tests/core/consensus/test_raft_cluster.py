"""Groups of replicas in the seeded harness: elections, replication, crashes, partitions,
leases, membership changes and snapshots."""

from __future__ import annotations

import dataclasses

import pytest

from core.consensus.raft_harness import FAST, Cluster, NetConfig
from sapwood.core.consensus import (
    AddMember,
    ConfigApplied,
    Delete,
    NotLeader,
    Ok,
    Precondition,
    Put,
    RaftConfig,
    RemoveMember,
    Result,
    Role,
    Unavailable,
    Version,
)
from sapwood.core.consensus.messages import ClientCommand

ABC = ["a", "b", "c"]


def started(ids: list[str], seed: int = 1, **kwargs: object) -> Cluster:
    cluster = Cluster(ids, seed=seed, **kwargs)  # type: ignore[arg-type]
    cluster.start()
    assert cluster.run_until(lambda: cluster.leader() is not None, 5_000)
    return cluster


def commit(cluster: Cluster, command: ClientCommand, timeout_ms: float = 5_000) -> Result:
    """Propose at whoever leads until the command is decided (retrying refusals)."""
    end = cluster.now + timeout_ms
    while cluster.now < end:
        leader = cluster.leader()
        if leader is None:
            cluster.run_for(20)
            continue
        result = cluster.wait(cluster.propose(leader, command), 1_000)
        if result is not None and not isinstance(result, NotLeader | Unavailable):
            return result
        cluster.run_for(20)
    raise AssertionError(f"{command} was not decided within {timeout_ms} ms")


def read(cluster: Cluster, node: str, key: bytes, timeout_ms: float = 1_000) -> Result | None:
    return cluster.wait(cluster.read(node, key), timeout_ms)


def finish_checks(cluster: Cluster) -> None:
    cluster.check_log_matching()
    cluster.check_reads()


# --- Elections and replication ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_elections_under_loss_give_one_leader_per_term(seed: int) -> None:
    net = NetConfig(loss=0.2, duplicate=0.1, max_delay_ms=30)
    cluster = Cluster(["a", "b", "c", "d", "e"], seed=seed, net=net)
    cluster.start()
    for _ in range(6):
        cluster.run_for(400)
        leader = cluster.leader()
        if leader is not None:
            cluster.isolate(leader)  # force another election
            cluster.run_for(400)
            cluster.heal()
    # The checker saw every event; each term had at most one leader.
    assert len(cluster.checker.leaders) >= 2
    assert cluster.run_until(lambda: cluster.leader() is not None, 5_000)


def test_proposals_commit_and_every_replica_applies_them_in_order() -> None:
    cluster = started(ABC)
    versions = []
    for i in range(30):
        result = commit(cluster, Put(b"k%d" % (i % 5), b"v%d" % i, versions[i - 5]
                                     if i >= 5 else None))
        assert isinstance(result, Ok)
        versions.append(result.version)
    cluster.run_for(500)
    applied = {n: cluster.replica(n).applied_index for n in ABC}
    assert len(set(applied.values())) == 1
    states = [sorted(cluster.replica(n).kv.items()) for n in ABC]
    assert states[0] == states[1] == states[2]
    finish_checks(cluster)


def test_cas_through_the_group() -> None:
    cluster = started(ABC)
    created = commit(cluster, Put(b"k", b"one"))
    assert isinstance(created, Ok)
    assert isinstance(commit(cluster, Put(b"k", b"again")), Precondition)
    updated = commit(cluster, Put(b"k", b"two", created.version))
    assert isinstance(updated, Ok) and updated.version > created.version
    assert isinstance(commit(cluster, Put(b"k", b"stale", created.version)), Precondition)
    assert isinstance(commit(cluster, Delete(b"k", created.version)), Precondition)
    assert isinstance(commit(cluster, Delete(b"k", updated.version)), Ok)
    leader = cluster.leader()
    assert leader is not None
    assert read(cluster, leader, b"k") is not None
    finish_checks(cluster)


# --- Crashes --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_acknowledged_writes_survive_crashes_of_every_replica(seed: int) -> None:
    net = NetConfig(slow_disk=0.3, slow_disk_ms=30)
    cluster = started(ABC, seed=seed, net=net)
    acked: dict[bytes, Version] = {}
    for round_ in range(4):
        leader = cluster.leader()
        assert leader is not None
        reqs = [cluster.propose(leader, Put(b"r%d-%d" % (round_, i), b"v")) for i in range(10)]
        cluster.run_for(cluster.rng.uniform(5, 40))  # crash in the middle of replication
        for req in reqs:
            result = cluster.result(req)
            if isinstance(result, Ok):
                acked[cluster.ops[req].key or b""] = result.version
        for node in ABC:
            cluster.crash(node)  # every unsynced write is lost
        for node in ABC:
            cluster.restart(node)
        assert cluster.run_until(lambda: cluster.leader() is not None, 5_000)
    assert acked, "the schedule acknowledged nothing; the test would be vacuous"
    commit(cluster, Put(b"barrier", b"x"))
    leader = cluster.leader()
    assert leader is not None
    for key, version in acked.items():
        result = read(cluster, leader, key)
        assert isinstance(result, Ok) and result.version == version
    finish_checks(cluster)


# --- Partitions -------------------------------------------------------------------------------


def test_minority_side_never_commits_nor_reads_after_its_lease() -> None:
    ids = ["a", "b", "c", "d", "e"]
    cluster = started(ids)
    old = cluster.leader()
    assert old is not None
    assert isinstance(commit(cluster, Put(b"m0", b"before")), Ok)
    buddy = next(n for n in ids if n != old)
    cluster.partition({old, buddy}, set(ids) - {old, buddy})
    expiry = cluster.replica(old).lease_expiry
    assert expiry is not None
    writes = [cluster.propose(old, Put(b"m%d" % i, b"lost")) for i in range(5)]
    late_reads = []
    for _ in range(60):
        cluster.run_for(20)
        if cluster.local(old) >= expiry:
            late_reads.append(cluster.read(old, b"m0"))
    majority_result = commit(cluster, Put(b"maj", b"x"))
    assert isinstance(majority_result, Ok)
    assert cluster.replica(old).role is not Role.LEADER
    assert late_reads and all(not isinstance(cluster.result(r), Ok) for r in late_reads)
    assert all(not isinstance(cluster.result(w), Ok) for w in writes)
    cluster.heal()
    for i in range(len(writes)):
        commit(cluster, Put(b"n%d" % i, b"x"))
    cluster.run_for(500)
    # Once healed, the old leader learns other entries were committed at the indexes of its
    # proposals: a definite failure, not an unknown outcome.
    assert all(isinstance(cluster.result(w), Unavailable) for w in writes)
    finish_checks(cluster)


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    cluster = started(ABC)
    leader = cluster.leader()
    assert leader is not None
    cluster.isolate(leader)
    cluster.run_for(2 * FAST.election_timeout_min_ms + 50)
    assert cluster.replica(leader).role is Role.FOLLOWER
    assert cluster.replica(leader).stats.quorum_losses == 1


def test_a_partitioned_follower_rejoining_does_not_disturb_the_leader() -> None:
    cluster = started(ABC)
    leader = cluster.leader()
    assert leader is not None
    term = cluster.replica(leader).term
    loner = next(n for n in ABC if n != leader)
    cluster.isolate(loner)
    cluster.run_for(3_000)
    assert cluster.replica(loner).term == term  # pre-votes failed, so no term inflation
    assert cluster.replica(loner).stats.pre_votes_started >= 5
    cluster.heal()
    cluster.run_for(1_000)
    assert cluster.leader() == leader and cluster.replica(leader).term == term


def test_a_follower_cut_from_the_leader_alone_cannot_unseat_it() -> None:
    cluster = started(ABC)
    leader = cluster.leader()
    assert leader is not None
    term = cluster.replica(leader).term
    cut = next(n for n in ABC if n != leader)
    cluster.cuts |= {(leader, cut), (cut, leader)}
    cluster.run_for(2_000)
    # The third replica still hears the leader, so it refuses the cut follower's (pre-)votes.
    assert cluster.leader() == leader and cluster.replica(leader).term == term
    assert isinstance(commit(cluster, Put(b"k", b"v")), Ok)


# --- Leases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_lease_reads_stop_when_the_lease_expires_under_worst_case_drift(seed: int) -> None:
    rho = FAST.max_clock_drift_rate
    # The leader's clock runs slow (its lease lasts longest in real time), the others fast.
    cluster = started(ABC, seed=seed)
    old = cluster.leader()
    assert old is not None
    for node in ABC:
        cluster.set_rate(node, 1 - rho if node == old else 1 + rho)
    first = commit(cluster, Put(b"k", b"v1"))
    assert isinstance(first, Ok)
    cluster.run_for(100)
    cluster.isolate(old)
    expiry = cluster.replica(old).lease_expiry
    assert expiry is not None
    reads: list[tuple[int, int]] = []
    wrote = None
    while cluster.replica(old).role is Role.LEADER or wrote is None:
        reads.append((cluster.local(old), cluster.read(old, b"k")))
        other = cluster.leader()
        if wrote is None and other not in (None, old):
            wrote = cluster.propose(other, Put(b"k", b"v2", first.version))
        cluster.run_for(2)
    cluster.run_for(500)
    assert wrote is not None and isinstance(cluster.result(wrote), Ok)
    served = [(t, r) for t, r in reads if isinstance(cluster.result(r), Ok)]
    assert served, "no lease read was served; the test would be vacuous"
    for local_time, req in reads:
        if isinstance(cluster.result(req), Ok):
            assert local_time < expiry
            assert cluster.ops[req].completed == cluster.ops[req].invoked  # served locally
    assert cluster.replica(old).stats.lease_reads >= len(served)
    finish_checks(cluster)  # includes: no read returned v1 after v2 was acknowledged


def test_read_index_answers_reads_when_leases_are_off() -> None:
    cfg = dataclasses.replace(FAST, leases_enabled=False)
    cluster = started(ABC, config=cfg)
    assert isinstance(commit(cluster, Put(b"k", b"v")), Ok)
    leader = cluster.leader()
    assert leader is not None
    for _ in range(5):
        result = read(cluster, leader, b"k")
        assert isinstance(result, Ok) and result.value == b"v"
    stats = cluster.replica(leader).stats
    assert stats.lease_reads == 0 and stats.read_index_reads >= 5
    finish_checks(cluster)


# --- Membership -------------------------------------------------------------------------------


def test_add_then_remove_members_one_at_a_time() -> None:
    cluster = started(ABC)
    for i in range(20):
        commit(cluster, Put(b"k%d" % i, b"v"))
    cluster.join("d")
    added = commit(cluster, AddMember("d"))
    assert isinstance(added, ConfigApplied) and added.members == ("a", "b", "c", "d")
    target = cluster.replica(cluster.leader() or "a").applied_index
    assert cluster.run_until(lambda: cluster.replica("d").applied_index >= target, 5_000)
    assert sorted(cluster.replica("d").kv.items()) == sorted(
        cluster.replica(cluster.leader() or "a").kv.items())
    # With four voters, "d" counts: stop two of the originals and the group still commits.
    leader = cluster.leader()
    assert leader is not None
    victim = next(n for n in ABC if n != leader)
    cluster.crash(victim)
    assert isinstance(commit(cluster, Put(b"after-add", b"v")), Ok)
    cluster.restart(victim)
    removed = commit(cluster, RemoveMember(victim))
    assert isinstance(removed, ConfigApplied) and victim not in removed.members
    cluster.crash(victim)  # no longer needed for a majority of three
    assert isinstance(commit(cluster, Put(b"after-remove", b"v")), Ok)
    finish_checks(cluster)


def test_a_leader_removing_itself_steps_down_after_commit() -> None:
    cluster = started(ABC)
    leader = cluster.leader()
    assert leader is not None
    commit(cluster, Put(b"k", b"v"))
    removed = commit(cluster, RemoveMember(leader))
    assert isinstance(removed, ConfigApplied) and leader not in removed.members
    cluster.run_for(1_000)
    old = cluster.replica(leader)
    assert old.role is Role.FOLLOWER and not old.is_voter
    assert cluster.run_until(lambda: cluster.leader() not in (None, leader), 5_000)
    assert isinstance(commit(cluster, Put(b"k2", b"v")), Ok)
    cluster.run_for(2_000)
    assert old.role is Role.FOLLOWER  # a removed replica never campaigns
    finish_checks(cluster)


# --- Snapshots --------------------------------------------------------------------------------


def test_a_replica_that_was_down_catches_up_by_snapshot() -> None:
    cfg = RaftConfig(**{**dataclasses.asdict(FAST), "snapshot_interval_entries": 10,
                        "max_snapshot_chunk_bytes": 64})
    cluster = started(ABC, config=cfg)
    leader = cluster.leader()
    assert leader is not None
    sleeper = next(n for n in ABC if n != leader)
    cluster.crash(sleeper)
    for i in range(60):
        assert isinstance(commit(cluster, Put(b"key-%d" % i, b"value-%d" % i)), Ok)
    assert cluster.replica(leader).log.snapshot_index > 10
    cluster.restart(sleeper)
    target = cluster.replica(leader).applied_index
    assert cluster.run_until(lambda: cluster.replica(sleeper).applied_index >= target, 5_000)
    asleep = cluster.replica(sleeper)
    assert asleep.stats.snapshots_installed >= 1
    assert cluster.replica(leader).stats.snapshots_sent >= 1
    assert sorted(asleep.kv.items()) == sorted(cluster.replica(leader).kv.items())
    # It survives another crash from its own durable snapshot.
    cluster.crash(sleeper)
    cluster.restart(sleeper)
    assert cluster.replica(sleeper).log.snapshot_index >= 10
    assert cluster.replica(sleeper).kv.get(b"key-5") == cluster.replica(leader).kv.get(b"key-5")
    finish_checks(cluster)


def test_a_slightly_lagging_replica_catches_up_from_the_trailing_log() -> None:
    cfg = dataclasses.replace(FAST, snapshot_interval_entries=10, snapshot_trailing_entries=40)
    cluster = started(ABC, config=cfg)
    leader = cluster.leader()
    assert leader is not None
    laggard = next(n for n in ABC if n != leader)
    cluster.crash(laggard)
    for i in range(25):
        assert isinstance(commit(cluster, Put(b"key-%d" % i, b"v")), Ok)
    assert cluster.replica(leader).stats.snapshots_taken >= 2
    cluster.restart(laggard)
    target = cluster.replica(leader).applied_index
    assert cluster.run_until(lambda: cluster.replica(laggard).applied_index >= target, 5_000)
    assert cluster.replica(laggard).stats.snapshots_installed == 0
    assert cluster.replica(leader).stats.snapshots_sent == 0
    finish_checks(cluster)
