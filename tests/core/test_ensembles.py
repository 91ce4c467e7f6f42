"""Consistent buckets in the node core: compare-and-set semantics, leader failure, minorities
refusing, restarts from persisted state, and group membership following ring changes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.cluster import AdminRequest, ClusterNode
from sapwood.core.consensus import (
    Delete,
    Entry,
    HardState,
    MemoryRaftStorage,
    NoOp,
    Persist,
    Put,
    Reconfigure,
    Role,
    Snapshot,
    SnapshotMeta,
    Version,
)
from sapwood.core.crdt import parse_op
from sapwood.core.ensemble_groups import group_id, member_node, members_under
from sapwood.core.ensemble_messages import EnsembleCall
from sapwood.core.ensemble_objects import register_key, version_clock
from sapwood.core.ensemble_storage import MemberStorage, load_members
from sapwood.core.errors import BadRequest, NotFound, PreconditionFailed, Unavailable
from sapwood.core.index import make_query
from sapwood.core.kvobject import Metadata
from sapwood.core.requests import (
    CoverageRequest,
    DeleteRequest,
    DeleteResult,
    GetRequest,
    GetResult,
    ListKeys,
    PutRequest,
    PutResult,
    UpdateRequest,
)
from sapwood.core.ring import BKey, Ring
from sapwood.storage.memory import MemoryBackend
from support.clusternet import ClusterNet

NODES = ["n1", "n2", "n3"]
TEXT = Metadata(content_type="text/plain")
FAILOVER_MS = 20_000  # virtual time allowed for a new leader to take over


def sc(key: str) -> BKey:
    return BKey("sc", "b", key)


def add_types(net: ClusterNet, node: str) -> None:
    def create(core: ClusterNode) -> None:
        core.kv.create_type("sc", {"props": {"consistent": True}})
        core.kv.activate_type("sc")
        core.kv.create_type("av", {"props": {}})
        core.kv.activate_type("av")

    net.operate(node, create)
    net.run_for(200)


def put(net: ClusterNet, node: str, key: str, value: bytes, context: Any = None,
        **options: Any) -> Any:
    return net.call(node, PutRequest(sc(key), value, TEXT, context or {}, return_body=True,
                                     **options))


def get(net: ClusterNet, node: str, key: str, **options: Any) -> Any:
    return net.call(node, GetRequest(sc(key), **options))


def eventually(net: ClusterNet, attempt: Any, limit_ms: int = FAILOVER_MS) -> Any:
    """Repeat `attempt()` while it fails as unavailable (a group electing a leader)."""
    deadline = net.now + limit_ms
    while True:
        result = attempt()
        if not isinstance(result, Unavailable) or net.now >= deadline:
            return result
        net.run_for(100)


def value_of(result: Any) -> bytes | None:
    assert isinstance(result, GetResult), result
    if result.obj is None:
        return None
    assert len(result.obj.siblings) == 1
    return result.obj.siblings[0].value


def spread_keys(net: ClusterNet, count: int) -> list[str]:
    """Keys whose group has its members on distinct nodes (a ring of 8 partitions cannot give
    every preference list of 3 nodes 3 different owners)."""
    ring = Ring(next(iter(net.cores.values())).state.owners)
    keys = (f"k{i}" for i in range(1000))
    return [k for k in keys if len({e.node for e in ring.primaries(sc(k), 3)}) == 3][:count]


def group_of(net: ClusterNet, key: str, n_val: int = 3) -> str:
    any_core = next(iter(net.cores.values()))
    return group_id(Ring(any_core.state.owners).first_partition(sc(key)), n_val)


def leader_of(net: ClusterNet, key: str) -> str:
    group = group_of(net, key)
    leaders = {(h.replica.term, member_node(m)) for name, core in net.cores.items()
               for (g, m), h in core.ensembles.hosted.items()
               if g == group and h.replica.role is Role.LEADER}
    assert leaders, f"group {group} has no leader"
    return max(leaders)[1]


@pytest.fixture
def single() -> ClusterNet:
    net = ClusterNet(["n1"], members=["n1"])
    add_types(net, "n1")
    return net


@pytest.fixture
def trio() -> ClusterNet:
    net = ClusterNet(NODES, members=NODES, seed=7)
    add_types(net, "n1")
    return net


# --- semantics on one node -----------------------------------------------------------------------


def test_put_without_context_creates_and_then_only_compare_and_set_writes(
        single: ClusterNet) -> None:
    created = put(single, "n1", "k", b"v1")
    assert isinstance(created, PutResult) and created.obj is not None
    assert isinstance(put(single, "n1", "k", b"again"), PreconditionFailed)

    read = get(single, "n1", "k")
    assert value_of(read) == b"v1"
    assert read.obj.clock == created.obj.clock
    assert read.obj.siblings[0].meta.content_type == "text/plain"

    updated = put(single, "n1", "k", b"v2", read.obj.clock)
    assert isinstance(updated, PutResult)
    stale = put(single, "n1", "k", b"lost", read.obj.clock)
    assert isinstance(stale, PreconditionFailed) and "expected version" in stale.message
    assert value_of(get(single, "n1", "k")) == b"v2"


def test_deletes_are_unconditional_without_context_and_compare_and_delete_with_one(
        single: ClusterNet) -> None:
    first = put(single, "n1", "k", b"v1").obj.clock
    second = put(single, "n1", "k", b"v2", first).obj.clock
    assert isinstance(single.call("n1", DeleteRequest(sc("k"), first)), PreconditionFailed)
    assert isinstance(single.call("n1", DeleteRequest(sc("k"), second)), DeleteResult)
    assert value_of(get(single, "n1", "k")) is None
    assert isinstance(single.call("n1", DeleteRequest(sc("k"))), NotFound)

    put(single, "n1", "k", b"back")
    assert isinstance(single.call("n1", DeleteRequest(sc("k"))), DeleteResult)
    assert isinstance(single.call("n1", DeleteRequest(sc("k"), second)), PreconditionFailed)


def test_a_deleted_key_is_created_again_without_context_and_old_contexts_stay_stale(
        single: ClusterNet) -> None:
    old = put(single, "n1", "k", b"v1").obj.clock
    single.call("n1", DeleteRequest(sc("k")))
    again = put(single, "n1", "k", b"v2")
    assert isinstance(again, PutResult) and again.obj.clock != old
    assert isinstance(put(single, "n1", "k", b"v3", old), PreconditionFailed)


def test_quorum_parameters_are_ignored(single: ClusterNet) -> None:
    assert isinstance(put(single, "n1", "k", b"v", w=99, dw="all", pw=7), PutResult)
    assert value_of(get(single, "n1", "k", r=42, pr="all", notfound_ok=False)) == b"v"


def test_contexts_of_one_consistency_model_are_refused_by_the_other(single: ClusterNet) -> None:
    kv = single.call("n1", PutRequest(BKey("av", "b", "k"), b"x", TEXT, return_body=True))
    refused = put(single, "n1", "k", b"v", kv.obj.clock)
    assert isinstance(refused, BadRequest) and "eventually consistent" in refused.message

    consistent = put(single, "n1", "k", b"v").obj.clock
    wrong = single.call("n1", PutRequest(BKey("av", "b", "k"), b"y", TEXT, consistent))
    assert isinstance(wrong, BadRequest) and "consistent bucket" in wrong.message


def test_what_consistent_buckets_do_not_support_is_refused_clearly(single: ClusterNet) -> None:
    indexed = Metadata(content_type="text/plain", indexes=(("f_bin", "x"),))
    refused = single.call("n1", PutRequest(sc("k"), b"v", indexed))
    assert isinstance(refused, BadRequest) and "secondary indexes" in refused.message
    query = make_query("sc", "b", "f_bin", "a", "z")
    assert isinstance(single.call("n1", CoverageRequest(query)), BadRequest)
    assert isinstance(single.call("n1", CoverageRequest(ListKeys("sc", "b"))), BadRequest)
    counter = UpdateRequest(sc("c"), "counter", parse_op("counter", 1), legacy=True)
    assert isinstance(single.call("n1", counter), BadRequest)
    metadata = single.core("n1").kv.metadata
    for props in ({"datatype": "set", "allow_mult": True}, {"last_write_wins": True}):
        with pytest.raises(BadRequest):
            metadata.create_type("bad", {"props": {"consistent": True, **props}})


def test_consistent_and_available_buckets_share_the_store(single: ClusterNet) -> None:
    put(single, "n1", "k", b"strong")
    single.call("n1", PutRequest(BKey("av", "b", "k"), b"weak", TEXT))
    assert value_of(get(single, "n1", "k")) == b"strong"
    available = single.call("n1", GetRequest(BKey("av", "b", "k")))
    assert available.obj.siblings[0].value == b"weak"


def test_a_restarted_node_keeps_every_acknowledged_write(single: ClusterNet) -> None:
    contexts = {f"k{i}": put(single, "n1", f"k{i}", f"v{i}".encode()).obj.clock
                for i in range(12)}
    single.crash("n1")
    single.restart("n1")
    for key, context in contexts.items():
        read = eventually(single, lambda key=key: get(single, "n1", key))
        assert value_of(read) == f"v{key[1:]}".encode()
        assert read.obj.clock == context


# --- a cluster ---------------------------------------------------------------------------------


def test_every_node_serves_the_same_registers(trio: ClusterNet) -> None:
    written = eventually(trio, lambda: put(trio, "n1", "k", b"v1"))
    assert isinstance(written, PutResult)
    seen = eventually(trio, lambda: get(trio, "n2", "k"))
    assert value_of(seen) == b"v1"
    assert isinstance(put(trio, "n3", "k", b"v2", seen.obj.clock), PutResult)
    assert isinstance(put(trio, "n1", "k", b"v3", seen.obj.clock), PreconditionFailed)
    assert value_of(get(trio, "n1", "k")) == b"v2"


def test_a_new_leader_takes_over_when_the_leader_crashes(trio: ClusterNet) -> None:
    keys = spread_keys(trio, 6)
    contexts = {k: eventually(trio, lambda k=k: put(trio, "n1", k, k.encode())).obj.clock
                for k in keys}
    first = keys[0]
    leader = leader_of(trio, first)
    trio.crash(leader)
    survivor = next(n for n in NODES if n != leader)
    for key in keys:
        read = eventually(trio, lambda key=key: get(trio, survivor, key))
        assert value_of(read) == key.encode() and read.obj.clock == contexts[key]
    moved = eventually(trio, lambda: put(trio, survivor, first, b"new", contexts[first]))
    assert isinstance(moved, PutResult)
    assert leader_of(trio, first) != leader
    trio.restart(leader)
    assert value_of(eventually(trio, lambda: get(trio, leader, first))) == b"new"


def test_a_minority_refuses_while_available_buckets_accept_writes(trio: ClusterNet) -> None:
    k, k2 = spread_keys(trio, 2)
    eventually(trio, lambda: put(trio, "n1", k, b"v1"))
    trio.isolate("n1")
    trio.run_for(5_000)  # n1 sees the others down; a leader on the majority side is elected
    for attempt in (lambda: put(trio, "n1", k2, b"x", timeout_ms=3_000),
                    lambda: get(trio, "n1", k, timeout_ms=3_000),
                    lambda: trio.call("n1", DeleteRequest(sc(k), timeout_ms=3_000))):
        refused = attempt()
        assert isinstance(refused, Unavailable) and "unavailable" in refused.message
    available = trio.call("n1", PutRequest(BKey("av", "b", k), b"w", TEXT, w=1, dw=1))
    assert isinstance(available, PutResult)
    # The majority side goes on, and the isolated node never saw the write.
    assert isinstance(eventually(trio, lambda: put(trio, "n2", k2, b"y")), PutResult)
    trio.heal()
    assert value_of(eventually(trio, lambda: get(trio, "n1", k2))) == b"y"
    assert value_of(get(trio, "n1", k)) == b"v1"


def test_two_of_three_nodes_down_answer_unavailable_at_once(trio: ClusterNet) -> None:
    eventually(trio, lambda: put(trio, "n1", "k", b"v1"))
    trio.crash("n2")
    trio.crash("n3")
    trio.run_for(5_000)  # the failure detector notices
    started = trio.now
    refused = get(trio, "n1", "k")
    assert isinstance(refused, Unavailable) and "majority" in refused.message
    assert trio.now == started  # no timeout was waited for


def test_every_node_crashing_loses_no_acknowledged_write(trio: ClusterNet) -> None:
    acked = {}
    for i in range(15):
        result = eventually(trio, lambda i=i: put(trio, NODES[i % 3], f"k{i}", b"%d" % i))
        acked[f"k{i}"] = result.obj.clock
    for name in NODES:
        trio.crash(name)
    for name in NODES:
        trio.restart(name)
    for key, clock in acked.items():
        read = eventually(trio, lambda key=key: get(trio, "n2", key))
        assert read.obj is not None and read.obj.clock == clock, key


def test_a_duplicated_call_from_another_node_runs_once(trio: ClusterNet) -> None:
    (key,) = spread_keys(trio, 1)
    eventually(trio, lambda: put(trio, "n1", key, b"v1"))
    leader, group = leader_of(trio, key), group_of(trio, key)
    member = next(m for (g, m), h in trio.core(leader).ensembles.hosted.items()
                  if g == group and h.replica.role is Role.LEADER)
    call = EnsembleCall(1 << 60, "n9", group, member, Delete(register_key(sc(key))))
    assert trio.inject(leader, "n9", call) != []
    assert trio.inject(leader, "n9", call) == []  # not proposed (nor answered) again
    trio.run_for(100)
    assert value_of(get(trio, "n1", key)) is None


def test_a_node_with_consistent_data_cannot_join_a_cluster(single: ClusterNet) -> None:
    put(single, "n1", "k", b"v")
    refused = single.call("n1", AdminRequest("join", ("n9", "n9")))
    assert isinstance(refused, BadRequest) and "consistent" in refused.message


# --- ring changes ------------------------------------------------------------------------------


def settled(net: ClusterNet) -> bool:
    return all(not c.state.next_owners and not c.handoff_candidates() and not c.handoff.active()
               for c in net.cores.values())


def test_group_membership_follows_a_join_and_a_leave_one_member_at_a_time() -> None:
    net = ClusterNet([*NODES, "n4"], members=NODES, seed=3)
    add_types(net, "n1")
    keys = [f"k{i}" for i in range(10)]
    contexts = {k: eventually(net, lambda k=k: put(net, "n1", k, k.encode())).obj.clock
                for k in keys}
    assert net.call("n4", AdminRequest("join", ("n1", "n1"))) is not None
    net.run_for(500)
    net.call("n1", AdminRequest("commit"))
    assert net.run_until(lambda: settled(net), 300_000)
    net.run_for(5_000)  # the last retirements

    owners = net.core("n1").state.owners
    assert "n4" in owners
    for name, core in net.cores.items():
        for (group, member), hosted in core.ensembles.hosted.items():
            target = members_under(group, owners)
            assert member in target, f"{member} of {group} is still hosted on {name}"
            if hosted.replica.role is Role.LEADER:
                assert set(hosted.replica.members) == set(target)
                _assert_single_changes(hosted.replica.log, hosted.replica.members)
    for key in keys:
        read = eventually(net, lambda key=key: get(net, "n4", key))
        assert value_of(read) == key.encode() and read.obj.clock == contexts[key]
        written = eventually(net, lambda key=key: put(net, "n4", key, b"x", contexts[key]))
        assert isinstance(written, PutResult)
        contexts[key] = written.obj.clock

    net.call("n1", AdminRequest("leave", ("n2",)))
    net.call("n1", AdminRequest("commit"))
    assert net.run_until(lambda: settled(net), 300_000)
    net.run_for(5_000)
    assert "n2" not in net.core("n1").state.owners
    assert net.core("n2").ensembles.hosted == {}
    for key in keys:
        read = eventually(net, lambda key=key: get(net, "n3", key))
        assert value_of(read) == b"x" and read.obj.clock == contexts[key]


def _assert_single_changes(log: Any, latest: tuple[str, ...]) -> None:
    configs = [log.entry(i).command.members for i in range(log.first_index, log.last_index + 1)
               if isinstance(log.entry(i).command, Reconfigure)]
    for before, after in itertools.pairwise(configs):
        assert len(set(before) ^ set(after)) == 1
    if configs:
        assert configs[-1] == tuple(sorted(latest))


# --- storage -------------------------------------------------------------------------------------


commands = st.one_of(
    st.just(NoOp()),
    st.builds(Put, st.binary(max_size=4), st.binary(max_size=4),
              st.none() | st.just("absent") | st.builds(Version, st.integers(0, 9),
                                                        st.integers(0, 99))),
    st.builds(Delete, st.binary(max_size=4)),
    st.builds(Reconfigure, st.lists(st.sampled_from("abc"), unique=True).map(tuple)),
)
steps = st.lists(st.tuples(st.sampled_from(["append", "truncate", "snapshot", "hard"]),
                           st.integers(0, 8), st.lists(commands, min_size=1, max_size=4)),
                 max_size=25)


@settings(max_examples=60, deadline=None)
@given(steps=steps)
def test_stored_members_read_back_what_memory_storage_holds(steps: list[Any]) -> None:
    backend = MemoryBackend()
    storage = MemberStorage(backend, "g0/3", "0@n1")
    storage.found(("0@n1", "1@n2"))
    model = MemoryRaftStorage()
    last, floor = 0, 0
    for token, (kind, offset, cmds) in enumerate(steps, start=1):
        start = max(floor + 1, last + 1 - offset)
        if kind == "append":
            entries = tuple(Entry(token, start + i, c) for i, c in enumerate(cmds))
            persist = Persist("g0/3", token, None, None, entries, None)
            last = entries[-1].index
        elif kind == "truncate":
            persist = Persist("g0/3", token, None, start, (), None)
            last = min(last, start - 1)
        elif kind == "snapshot":
            index = max(floor, last - offset)
            snap = Snapshot(SnapshotMeta(index, token, ("a",)), bytes([offset]))
            persist = Persist("g0/3", token, None, None, (), snap)
            floor, last = index, max(last, index)
        else:
            persist = Persist("g0/3", token, HardState(token, "b" if offset % 2 else None),
                              None, (), None)
        storage.apply(persist)
        model.apply(persist)
    (stored,) = load_members(backend)
    assert stored.peers == ("0@n1", "1@n2")
    assert stored.durable == model.state()
    storage.destroy()
    assert load_members(backend) == []


def test_a_context_names_exactly_one_version() -> None:
    assert version_clock(Version(2, 7)) != version_clock(Version(7, 2))
