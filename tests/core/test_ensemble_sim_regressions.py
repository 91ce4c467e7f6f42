"""Consistent-group bugs the simulator's `consistent` scenario found, each pinned by a focused test
(the seeds are in tests/sim/test_consistent_scenario.py, CONSISTENT_REGRESSION_SEEDS).

- Stranded members: a member created while the ring was changing joins empty and waits to be
  added; if the group never formed (or was founded from the old ring by members that have since
  retired), nobody ever adds it, and the key stayed unavailable for good after a leave.
- Leases under clock steps: a leader's lease is measured on its own clock, which is wall-clock
  time on a node; a step backwards let a deposed leader keep serving reads from its lease while
  a new leader accepted writes (stale reads).
- A compare-and-set answered 412 although it applied (seed 481): a write's call was answered
  with a refusal its coordinator retries (NotLeader) by a run that was not the one that appended
  it -- the member was dropped with the write in its log, or a duplicate of the call reached the
  node after a restart -- and the retry failed on the version its first run wrote.
- A leave that never completes (seeds 38, 92, 590, 635, 673, 994): a member founded from the old
  ring voted for itself, its peers were never created, and as a leaving member it waited forever
  for its removal to commit; its partition's handoff, and so the ring plan, waited for it.
- A leader that removed itself, restarted before the change reached the other voters (seed 295):
  as a non-voter it never campaigned, and the voters left could not elect anyone without it (it
  holds the longer log), so the change never committed and the leave never completed.
- A member that joined empty never learned it votes (seed 705): a member founded from the old
  ring counted it as a voter, was elected with its vote and replicated to it, but the founding
  voter set was in no entry; after the founder lost its last entry in a crash the joiner (longer
  log, refusing its vote) was the only one that could lead, and it never campaigned.
"""

from __future__ import annotations

import random
from typing import Any

from core.consensus.raft_harness import Cluster
from sapwood.core.cluster import AdminRequest
from sapwood.core.consensus import (
    ABSENT,
    Get,
    HardState,
    Indeterminate,
    Ok,
    Persist,
    Put,
    RemoveMember,
    Role,
    VoteRequest,
)
from sapwood.core.effects import Reply, Send
from sapwood.core.ensemble_following import ORPHAN_QUIET_MS
from sapwood.core.ensemble_groups import STEPPING_CLOCK_RAFT_CONFIG, RingView
from sapwood.core.ensemble_messages import (
    TICK_TIMER,
    EnsembleAnswer,
    EnsembleCall,
    EnsembleEnvelope,
    EnsembleRetired,
)
from sapwood.core.ensemble_storage import MemberStorage, load_members
from sapwood.core.ensembles import RESTART_WRITE_GRACE_MS, TICK_MS, EnsembleHost
from sapwood.core.errors import Unavailable
from sapwood.core.requests import GetRequest, PutRequest, PutResult
from sapwood.core.ring import BKey
from sapwood.storage.memory import MemoryBackend
from support.clusternet import ClusterNet


def sc(key: str) -> BKey:
    return BKey("sc", "b", key)


def _add_consistent_type(net: ClusterNet) -> None:
    def create(core: Any) -> None:
        core.kv.create_type("sc", {"props": {"consistent": True}})
        core.kv.activate_type("sc")

    net.operate("n1", create)
    net.run_for(200)


def _settled(net: ClusterNet) -> bool:
    cores = list(net.cores.values())
    return all(not c.state.next_owners and not c.handoff.active()
               and not c.handoff_candidates() for c in cores) and \
        len({c.state.owners for c in cores}) == 1


def _eventually(net: ClusterNet, attempt: Any, limit_ms: int = 30_000) -> Any:
    deadline = net.now + limit_ms
    while True:
        result = attempt()
        if not isinstance(result, Unavailable) or net.now >= deadline:
            return result
        net.run_for(200)


def test_groups_first_used_during_a_leave_serve_once_the_ring_settles() -> None:
    net = ClusterNet(["n1", "n2", "n3", "n4"], members=["n1", "n2", "n3", "n4"], seed=5)
    _add_consistent_type(net)
    net.call("n1", AdminRequest("leave", ("n3",)))
    net.call("n1", AdminRequest("commit"))
    assert net.run_until(lambda: all(not c.ensembles.ring.settled for c in net.cores.values()),
                         5_000)
    keys = [f"k{i}" for i in range(8)]
    for key in keys:  # first use while every node sees the plan: the members join empty
        for node in ("n1", "n2", "n4"):
            net.submit(node, PutRequest(sc(key), b"early", timeout_ms=3_000))
    net.run_for(1_000)
    assert net.run_until(lambda: _settled(net), 300_000)
    net.run_for(2_000)

    for key in keys:
        written = _eventually(net, lambda key=key: net.call(
            "n2", PutRequest(sc(key), b"later", context=_context(net, key), timeout_ms=2_000)))
        assert isinstance(written, PutResult), f"{key}: {written}"


def _context(net: ClusterNet, key: str) -> dict[bytes, int]:
    read = net.call("n2", GetRequest(sc(key), timeout_ms=2_000))
    return dict(read.obj.clock) if getattr(read, "obj", None) is not None else {}


def test_a_deposed_leader_whose_clock_steps_back_serves_no_stale_read() -> None:
    cluster = Cluster(["a", "b", "c"], seed=7, config=STEPPING_CLOCK_RAFT_CONFIG)
    cluster.start()
    assert cluster.run_until(lambda: cluster.leader() is not None, 20_000)
    old = cluster.leader()
    assert old is not None
    first = cluster.wait(cluster.propose(old, Put(b"k", b"v1", None)), 5_000)
    assert isinstance(first, Ok)
    cluster.run_for(300)  # a heartbeat round: a lease (if any) is fresh

    cluster.isolate(old)
    cluster.nodes[old].clock.offset -= 3_000  # an NTP step on the old leader
    assert cluster.run_until(lambda: cluster.leader() not in (None, old), 20_000)
    new = cluster.leader()
    assert new is not None and cluster.replica(old).role is Role.LEADER
    second = cluster.wait(cluster.propose(new, Put(b"k", b"v2", first.version)), 5_000)
    assert isinstance(second, Ok)

    stale = cluster.wait(cluster.read(old, b"k"), 200)
    assert not (isinstance(stale, Ok) and stale.value == b"v1"), "stale read from a lease"


# --- a 412 for a write that applied (seed 481) ----------------------------------------------------

NOW = 1_000_000
ALONE = ("n1",) * 8  # every partition on n1: a group of n_val 1 elects itself at once


def _host(owners: tuple[str, ...] = ALONE, backend: MemoryBackend | None = None,
          incarnation: int = 1) -> EnsembleHost:
    host = EnsembleHost("n1", backend or MemoryBackend(), random.Random(3), RingView(owners),
                        lambda _node: True, incarnation=incarnation)
    host.ring_confirmed = True
    host.start(NOW)
    return host


def _replies(effects: list[Any], req_id: int) -> list[Any]:
    return [e.result for e in effects if isinstance(e, Reply) and e.req_id == req_id]


def test_a_write_left_open_by_a_dropped_member_is_indeterminate_not_retried() -> None:
    host = _host()
    submitted = host.submit(1, PutRequest(sc("k"), b"v"), {"n_val": 1}, NOW)
    assert not _replies(submitted, 1)  # appended; its commit waits for the flush
    ((group, member),) = host.hosted
    moved = tuple("n2" if i == int(member.split("@")[0]) else o for i, o in enumerate(ALONE))
    host.set_ring(RingView(ALONE, moved))

    dropped = host.on_message("n2", EnsembleRetired(group, member), NOW + 1)

    assert not host.hosted
    (answer,) = _replies(dropped, 1)  # not asked again elsewhere: it may still commit
    assert isinstance(answer, Unavailable) and "may or may not" in str(answer)


def test_a_write_call_reaching_a_restarted_node_early_is_not_run_and_is_indeterminate() -> None:
    host = _host(incarnation=2)
    put = Put(b"k", b"v", ABSENT)
    early = host.on_message("n2", EnsembleCall(7, "n2", "g0/1", "0@n1", put), NOW + 10)

    (sent,) = [e for e in early if isinstance(e, Send)]
    assert sent.to == "n2" and isinstance(sent.msg, EnsembleAnswer)
    assert sent.msg.call_id == 7 and isinstance(sent.msg.result, Indeterminate)
    assert not host.hosted  # nothing was proposed
    read = host.on_message("n2", EnsembleCall(8, "n2", "g0/1", "0@n1", Get(b"k")), NOW + 11)
    assert host.hosted and not any(isinstance(e, Send) and isinstance(e.msg, EnsembleAnswer)
                                   and isinstance(e.msg.result, Indeterminate) for e in read)
    later = NOW + RESTART_WRITE_GRACE_MS
    host.on_message("n2", EnsembleCall(9, "n2", "g0/1", "0@n1", put), later)
    assert 9 in {c.origin_call for c in host.calls.values()}  # run now


def test_a_first_start_runs_write_calls_at_once() -> None:
    host = _host(incarnation=1)
    host.on_message("n2", EnsembleCall(7, "n2", "g0/1", "0@n1", Put(b"k", b"v", ABSENT)), NOW)
    assert 7 in {c.origin_call for c in host.calls.values()}


# --- a leave that never completes (seeds 38, 92, 590, 635, 673, 994) ------------------------------

OLD = ("n1", "n2", "n3") * 2 + ("n1", "n2")  # g0/3 is 0@n1, 1@n2, 2@n3
LEFT = ("n4", *OLD[1:])  # partition 0 moves to n4


def _orphan(backend: MemoryBackend) -> None:
    """0@n1 founded g0/3 from the old ring and voted for itself; its peers never existed."""
    storage = MemberStorage(backend, "g0/3", "0@n1")
    storage.found(("0@n1", "1@n2", "2@n3"))
    storage.apply(Persist("g0/3", 1, HardState(1, "0@n1"), None, (), None))


def _tick(host: EnsembleHost, at: int) -> None:
    host.on_timer(TICK_TIMER, at)


def test_a_leaving_member_without_a_log_is_dropped_once_its_group_is_quiet() -> None:
    backend = MemoryBackend()
    _orphan(backend)
    host = _host(OLD, backend)
    host.set_ring(RingView(OLD, LEFT))
    ask = VoteRequest("g0/3", 2, 3, 1, True)  # a peer holding a log asks for its vote
    at = NOW
    while at < NOW + 2 * ORPHAN_QUIET_MS:
        host.on_message("n2", EnsembleEnvelope("g0/3", "1@n2", "0@n1", ask), at)
        at += TICK_MS
        _tick(host, at)
        assert host.holds(0), "dropped while a member of its group may need its vote"

    for _ in range(ORPHAN_QUIET_MS // TICK_MS + 1):
        at += TICK_MS
        _tick(host, at)

    assert not host.holds(0)  # the partition's handoff, and the ring plan, may go on


def test_a_member_created_again_starts_from_the_term_and_vote_it_was_dropped_with() -> None:
    backend = MemoryBackend()
    _orphan(backend)
    host = _host(OLD, backend)
    host.set_ring(RingView(OLD, LEFT))
    _tick(host, NOW + ORPHAN_QUIET_MS)
    assert not host.hosted
    backend.sync()

    for again in (host, _host(OLD, backend, incarnation=2)):  # the same process, and a restart
        again.set_ring(RingView(OLD))
        again.on_message("n2", EnsembleEnvelope("g0/3", "1@n2", "0@n1", VoteRequest(
            "g0/3", 1, 5, 1, False)), NOW + 2 * ORPHAN_QUIET_MS)
        replica = again.hosted[("g0/3", "0@n1")].replica
        assert (replica.term, replica.voted_for) == (1, "0@n1")  # no second vote in term 1


def test_a_restart_takes_the_later_of_a_members_own_and_its_kept_hard_state() -> None:
    backend = MemoryBackend()
    _orphan(backend)
    MemberStorage(backend, "g0/3", "0@n1").retire(HardState(3, "2@n3"))
    again = MemberStorage(backend, "g0/3", "0@n1")
    again.found(("0@n1", "1@n2", "2@n3"))  # created again: its own hard state is not written yet
    (stored,) = load_members(backend)
    assert stored.durable.hard_state == HardState(3, "2@n3")


def test_a_leader_that_removed_itself_and_restarted_still_gets_its_removal_committed() -> None:
    cluster = Cluster(["a", "b"], seed=11)
    cluster.start()
    assert cluster.run_until(lambda: cluster.leader() is not None, 20_000)
    leaving = cluster.leader()
    assert leaving is not None
    staying = "b" if leaving == "a" else "a"
    assert isinstance(cluster.wait(cluster.propose(leaving, Put(b"k", b"v", None)), 5_000), Ok)

    cluster.isolate(staying)  # the change reaches only the leader's own log
    cluster.propose(leaving, RemoveMember(leaving))
    cluster.run_for(100)
    assert cluster.replica(leaving).members == (staying,)
    cluster.crash(leaving)
    cluster.restart(leaving)
    cluster.heal()

    assert cluster.run_until(lambda: cluster.leader() == staying
                             and cluster.replica(staying).members == (staying,)
                             and cluster.replica(staying).commit_index
                             >= cluster.replica(leaving).log.last_index, 30_000)


def test_a_member_that_joined_empty_learns_from_the_log_that_it_votes() -> None:
    cluster = Cluster(["a", "b", "c"], seed=5)
    cluster.nodes["b"].peers = ()  # b joined empty; a (and c) founded the group with it
    cluster.start()
    cluster.crash("c")
    assert cluster.run_until(lambda: cluster.leader() == "a", 20_000)
    assert isinstance(cluster.wait(cluster.propose("a", Put(b"k", b"v", None)), 5_000), Ok)
    assert cluster.replica("b").is_voter

    cluster.crash("a")
    cluster.restart("c")
    assert cluster.run_until(lambda: cluster.leader() in ("b", "c"), 30_000)
