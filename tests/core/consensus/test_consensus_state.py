"""The replicated register map (CAS semantics), the log, durable storage and the lease bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core import errors
from sapwood.core.consensus import (
    ABSENT,
    Absent,
    Delete,
    Entry,
    Get,
    HardState,
    Indeterminate,
    MemoryRaftStorage,
    NoOp,
    NotLeader,
    Ok,
    Persist,
    Precondition,
    Put,
    RaftConfig,
    RaftLog,
    Snapshot,
    SnapshotMeta,
    TooLarge,
    Unavailable,
    Version,
    as_error,
)
from sapwood.core.consensus.kvstate import KvState, SnapshotDecodeError
from sapwood.core.consensus.membership import MembershipHistory, quorum_value

V1 = Version(1, 1)
V2 = Version(1, 2)
V3 = Version(2, 3)


def fresh() -> KvState:
    return KvState(max_bytes=1 << 20)


# --- CAS semantics --------------------------------------------------------------------------------


def test_put_without_version_creates_only_absent_keys() -> None:
    kv = fresh()
    assert kv.apply(Put(b"k", b"a"), V1) == Ok(V1, b"a")
    refused = kv.apply(Put(b"k", b"b"), V2)
    assert isinstance(refused, Precondition)
    assert "exists" in refused.message
    assert kv.get(b"k") == Ok(V1, b"a")


def test_absent_marker_behaves_like_no_version() -> None:
    kv = fresh()
    assert kv.apply(Put(b"k", b"a", ABSENT), V1) == Ok(V1, b"a")
    assert isinstance(kv.apply(Put(b"k", b"b", ABSENT), V2), Precondition)


def test_put_with_current_version_succeeds_and_stale_version_fails() -> None:
    kv = fresh()
    kv.apply(Put(b"k", b"a"), V1)
    assert kv.apply(Put(b"k", b"b", V1), V2) == Ok(V2, b"b")
    stale = kv.apply(Put(b"k", b"c", V1), V3)
    assert isinstance(stale, Precondition)
    assert kv.get(b"k") == Ok(V2, b"b")


def test_put_with_version_on_absent_key_fails() -> None:
    kv = fresh()
    assert isinstance(kv.apply(Put(b"k", b"a", V1), V2), Precondition)
    assert kv.get(b"k") == Absent(b"k")


def test_delete_without_version_is_unconditional() -> None:
    kv = fresh()
    kv.apply(Put(b"k", b"a"), V1)
    assert kv.apply(Delete(b"k"), V2) == Ok(V2, None)
    assert kv.get(b"k") == Absent(b"k")
    assert kv.apply(Delete(b"k"), V3) == Absent(b"k")


def test_compare_and_delete() -> None:
    kv = fresh()
    kv.apply(Put(b"k", b"a"), V1)
    assert isinstance(kv.apply(Delete(b"k", Version(9, 9)), V2), Precondition)
    assert kv.apply(Delete(b"k", V1), V2) == Ok(V2, None)
    assert isinstance(kv.apply(Delete(b"k", V1), V3), Precondition)


def test_recreated_key_never_reuses_a_version() -> None:
    kv = fresh()
    kv.apply(Put(b"k", b"a"), V1)
    kv.apply(Delete(b"k"), V2)
    kv.apply(Put(b"k", b"b"), V3)
    # A client holding the first version cannot overwrite the recreated key (no ABA).
    assert isinstance(kv.apply(Put(b"k", b"c", V1), Version(2, 4)), Precondition)


def test_get_command_reads_without_changing_state() -> None:
    kv = fresh()
    assert kv.apply(Get(b"k"), V1) == Absent(b"k")
    kv.apply(Put(b"k", b"a"), V2)
    assert kv.apply(Get(b"k"), V3) == Ok(V2, b"a")


def test_state_size_limit_refuses_growth_deterministically() -> None:
    kv = KvState(max_bytes=100)
    assert isinstance(kv.apply(Put(b"k", b"x" * 10), V1), Ok)
    too_big = kv.apply(Put(b"j", b"x" * 80), V2)
    assert isinstance(too_big, TooLarge)
    assert "max_group_bytes" in too_big.message
    assert kv.get(b"j") == Absent(b"j")


def test_snapshot_decode_rejects_garbage() -> None:
    with pytest.raises(SnapshotDecodeError):
        KvState.decode(b"\x01\x02", 1000)


class Model:
    """The specification: a dict of key -> (version, value)."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[Version, bytes]] = {}

    def apply(self, command: Put | Delete, version: Version) -> bool:
        current = self.data.get(command.key)
        if isinstance(command, Put):
            ok = current is None if command.expected in (None, ABSENT) else (
                current is not None and current[0] == command.expected
            )
            if ok:
                self.data[command.key] = (version, command.value)
            return ok
        if command.expected is not None and (current is None or current[0] != command.expected):
            return False
        self.data.pop(command.key, None)
        return current is not None


keys = st.sampled_from([b"a", b"b", b"c"])
expectations = st.one_of(
    st.none(), st.just(ABSENT), st.builds(Version, st.integers(1, 3), st.integers(1, 30))
)
commands = st.one_of(
    st.builds(Put, keys, st.binary(max_size=4), expectations),
    st.builds(Delete, keys, st.one_of(st.none(), st.builds(Version, st.integers(1, 3),
                                                           st.integers(1, 30)))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(commands, st.booleans()), max_size=30))
def test_kv_state_matches_the_model_and_survives_snapshots(
    steps: list[tuple[Put | Delete, bool]],
) -> None:
    kv, model = fresh(), Model()
    for index, (command, use_current) in enumerate(steps, start=1):
        version = Version(1 + index // 10, index)
        current = model.data.get(command.key)
        if use_current and current is not None and command.expected not in (None, ABSENT):
            command = (Put(command.key, command.value, current[0]) if isinstance(command, Put)
                       else Delete(command.key, current[0]))
        result = kv.apply(command, version)
        changed = model.apply(command, version)
        assert isinstance(result, Ok) == changed, (command, result)
        kv = KvState.decode(kv.encode(), 1 << 20)  # snapshot round trip at every step
    assert {k: (v, val) for k, v, val in kv.items()} == model.data


# --- Results map to the store's errors -------------------------------------------------------------


def test_results_map_to_http_errors() -> None:
    assert isinstance(as_error(Precondition("x")), errors.PreconditionFailed)
    assert isinstance(as_error(NotLeader("n1")), errors.Unavailable)
    assert isinstance(as_error(Unavailable("x")), errors.Unavailable)
    assert isinstance(as_error(Indeterminate("x")), errors.Unavailable)
    assert isinstance(as_error(TooLarge("x")), errors.TooLarge)
    assert as_error(Ok(V1, b"a")) is None
    assert as_error(Absent(b"k")) is None


# --- Log ------------------------------------------------------------------------------------------


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, NoOp()) for i in range(first, last + 1)]


def test_log_terms_across_snapshot_boundary() -> None:
    log = RaftLog(5, 2, entries(6, 8, 3))
    assert (log.first_index, log.last_index, log.last_term) == (6, 8, 3)
    assert log.term_at(5) == 2
    assert log.term_at(4) is None and log.term_at(9) is None
    log.compact_to(7, 3)
    assert log.term_at(7) == 3 and log.first_index == 8
    with pytest.raises(IndexError):
        log.entry(7)


def test_log_entries_from_respects_count_and_bytes_but_sends_at_least_one() -> None:
    log = RaftLog(0, 0, [Entry(1, i, Put(b"k", b"x" * 100)) for i in range(1, 6)])
    assert len(log.entries_from(1, 3, 10_000)) == 3
    assert len(log.entries_from(1, 10, 150)) == 1
    assert len(log.entries_from(1, 10, 1)) == 1


def test_rejection_hint_skips_a_conflicting_term_but_not_below_commit() -> None:
    log = RaftLog(0, 0, entries(1, 3, 1) + entries(4, 9, 2))
    assert log.rejection_hint(12, floor=0) == 9  # behind: probe at our end
    assert log.rejection_hint(8, floor=0) == 3  # skip all of term 2
    assert log.rejection_hint(8, floor=5) == 5


def test_up_to_date_compares_term_then_index() -> None:
    log = RaftLog(0, 0, entries(1, 5, 2))
    assert log.is_up_to_date(5, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(9, 1)
    assert not log.is_up_to_date(4, 2)


def test_membership_history_follows_truncation_and_compaction() -> None:
    history = MembershipHistory(("a", "b", "c"))
    history.record(5, ("a", "b", "c", "d"))
    history.record(9, ("a", "b", "d"))
    assert history.at(4) == ("a", "b", "c") and history.at(7) == ("a", "b", "c", "d")
    assert history.truncate_from(9)
    assert history.current == ("a", "b", "c", "d")
    history.compact_to(6)
    assert history.current == ("a", "b", "c", "d") and history.latest_change_index == 0


@given(st.lists(st.integers(0, 50), min_size=1, max_size=7))
def test_quorum_value_is_reached_by_a_majority(values: list[int]) -> None:
    q = quorum_value(values, len(values))
    assert sum(1 for v in values if v >= q) >= len(values) // 2 + 1
    assert sum(1 for v in values if v >= q + 1) < len(values) // 2 + 1


# --- Durable storage ------------------------------------------------------------------------------


def test_memory_storage_applies_persist_in_the_documented_order() -> None:
    store = MemoryRaftStorage()
    store.apply(Persist("g", 1, HardState(1, "a"), None, tuple(entries(1, 5, 1)), None))
    # Overwrite from 4 on, as a follower does when its tail conflicts.
    store.apply(Persist("g", 2, None, 4, tuple(entries(4, 6, 2)), None))
    assert [(e.index, e.term) for e in store.entries] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2),
                                                         (6, 2)]
    snap = Snapshot(SnapshotMeta(5, 2, ("a",)), b"\x90")
    store.apply(Persist("g", 3, HardState(2, None), None, tuple(entries(7, 7, 2)), snap))
    state = store.state()
    assert [e.index for e in state.entries] == [6, 7]
    assert state.snapshot == snap and state.hard_state == HardState(2, None)


def test_memory_storage_discards_the_log_for_a_snapshot_that_replaces_it() -> None:
    store = MemoryRaftStorage()
    store.apply(Persist("g", 1, None, None, tuple(entries(1, 3, 1)), None))
    snap = Snapshot(SnapshotMeta(10, 4, ("a",)), b"\x90")
    store.apply(Persist("g", 2, None, 11, (), snap))
    assert store.state().entries == ()


# --- Config and the lease bound -------------------------------------------------------------------


def test_config_rejects_inconsistent_timing() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval_ms"):
        RaftConfig(heartbeat_interval_ms=2000)
    with pytest.raises(ValueError, match="election_timeout_max_ms"):
        RaftConfig(election_timeout_min_ms=500, election_timeout_max_ms=500)
    with pytest.raises(ValueError, match="max_pending_reads"):
        RaftConfig(max_pending_reads=0)


def test_leases_can_be_disabled() -> None:
    assert RaftConfig(leases_enabled=False).lease_ms == 0


@given(
    st.integers(100, 20_000),
    st.floats(0.0, 0.3),
    st.floats(-1.0, 1.0),
    st.floats(-1.0, 1.0),
)
def test_lease_ends_before_any_follower_may_vote(
    election_min: int, rho: float, leader_skew: float, follower_skew: float
) -> None:
    """For any clock rates within the drift bound, the lease (on the leader's clock) ends in
    real time before a follower that acknowledged it stops refusing votes (on its clock)."""
    cfg = RaftConfig(
        election_timeout_min_ms=election_min,
        election_timeout_max_ms=election_min * 2,
        heartbeat_interval_ms=max(1, election_min // 10),
        max_clock_drift_rate=rho,
    )
    leader_rate = 1.0 + rho * leader_skew
    follower_rate = 1.0 + rho * follower_skew
    lease_real = (cfg.lease_ms + 1) / leader_rate  # +1: the leader's millisecond truncation
    refusal_real = (election_min - 1) / follower_rate  # -1: the follower's truncation
    assert lease_real <= refusal_real or math.isclose(lease_real, refusal_real)
