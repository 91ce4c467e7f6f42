"""Map: nested fields, observed-remove of fields, reset-remove on concurrent update, contexts."""

from __future__ import annotations

from typing import Any

import pytest

import sapwood.core.crdt.map as map_module
from sapwood.core.crdt import FieldKey, Map, MapOp, SetStore, parse_op
from sapwood.core.errors import BadRequest, PreconditionFailed

A, B = b"vnode-a", b"vnode-b"


def op(body: Any) -> MapOp:
    parsed = parse_op("map", body)
    assert isinstance(parsed, MapOp)
    return parsed


def updated(body: Any, actor: bytes = A, now_ms: int = 0, state: Map | None = None) -> Map:
    return (state or Map.new()).update(op(body), actor, now_ms)


def test_value_has_every_field_type_nested() -> None:
    m = updated(
        {
            "update": {
                "likes_counter": 5,
                "name_register": "ada",
                "admin_flag": "enable",
                "tags_set": {"add_all": ["b", "a"]},
                "address_map": {
                    "update": {"city_register": "Paris", "zip_counter": {"increment": 3}}
                },
            }
        }
    )
    assert m.value() == {
        "address_map": {"city_register": "Paris", "zip_counter": 3},
        "admin_flag": True,
        "likes_counter": 5,
        "name_register": "ada",
        "tags_set": ["a", "b"],
    }


def test_updated_fields_exist_even_when_their_value_is_empty() -> None:
    m = updated({"update": {"off_flag": "disable", "s_set": {"add": "x"}}})
    m.update(op({"update": {"s_set": {"remove": "x"}}}), A, 0)
    assert m.value() == {"off_flag": False, "s_set": []}


def test_fields_of_one_name_and_different_types_are_distinct() -> None:
    m = updated({"update": {"x_counter": 1, "x_set": {"add": "1"}}})
    assert m.value() == {"x_counter": 1, "x_set": ["1"]}


def test_remove_and_update_of_a_field_in_one_op_keeps_only_the_update() -> None:
    m = updated(
        {
            "update": {
                "c_counter": 5,
                "s_set": {"add_all": ["x", "y"]},
                "n_map": {"update": {"f_flag": "enable"}},
            }
        }
    )
    m.update(
        op(
            {
                "remove": ["c_counter", "s_set", "n_map"],
                "update": {
                    "c_counter": 2,
                    "s_set": {"add": "z"},
                    "n_map": {"update": {"r_register": "v"}},
                },
            }
        ),
        A,
        0,
    )
    assert m.value() == {"c_counter": 2, "n_map": {"r_register": "v"}, "s_set": ["z"]}


def test_update_concurrent_with_field_remove_survives_with_only_its_effect() -> None:
    base = updated({"update": {"s_set": {"add_all": ["x", "y"]}, "r_register": "old"}})
    remover = base.copy().update(op({"remove": ["s_set", "r_register"]}), A, 0)
    updater = base.copy().update(op({"update": {"s_set": {"add": "z"}, "r_register": "new"}}), B, 1)
    for merged in (remover.merge(updater), updater.merge(remover)):
        assert merged.value() == {"r_register": "new", "s_set": ["z"]}


def test_counter_updated_concurrently_with_remove_keeps_the_updating_actors_total() -> None:
    base = updated({"update": {"c_counter": 5}}, A)
    base = base.merge(updated({"update": {"c_counter": 7}}, B))
    remover = base.copy().update(op({"remove": ["c_counter"]}), A, 0)
    updater = base.copy().update(op({"update": {"c_counter": 1}}), B, 0)
    # A's observed 5 is gone; B re-tagged its whole total (7 + 1) with a dot A never saw.
    assert remover.merge(updater).value() == {"c_counter": 8}
    assert updater.merge(remover).value() == {"c_counter": 8}


def test_removed_counter_field_is_not_resurrected_by_an_old_replica() -> None:
    r1 = updated({"update": {"c_counter": 5, "k_flag": "enable"}}, A)
    r2 = r1.copy()
    r1.update(op({"remove": ["c_counter"]}), A, 0)
    assert r1.merge(r2).value() == {"k_flag": True}
    assert r2.merge(r1).value() == {"k_flag": True}


def test_remove_of_absent_field_without_context_fails_and_changes_nothing() -> None:
    m = updated({"update": {"a_counter": 1}})
    before = m.encode()
    with pytest.raises(PreconditionFailed, match="ghost_set"):
        m.update(op({"remove": ["ghost_set"], "update": {"a_counter": 1}}), A, 0)
    assert m.encode() == before
    m.update(op({"remove": ["ghost_set"]}), A, 0, m.context())  # with a context: fine
    assert m.value() == {"a_counter": 1}


def test_nested_precondition_failure_changes_nothing() -> None:
    m = updated({"update": {"a_counter": 1, "s_set": {"add": "x"}}})
    before = m.encode()
    bad = {"update": {"a_counter": 1, "n_map": {"update": {"t_set": {"remove": "nope"}}}}}
    with pytest.raises(PreconditionFailed, match="nope"):
        m.update(op(bad), A, 0)
    with pytest.raises(PreconditionFailed):  # the remove empties s_set before the nested remove
        m.update(op({"remove": ["s_set"], "update": {"s_set": {"remove": "x"}}}), A, 0)
    assert m.encode() == before


def test_stale_context_remove_in_a_nested_set_leaves_a_concurrent_add() -> None:
    r1 = updated({"update": {"s_set": {"add": "x"}}}, A)
    stale = r1.context()
    r2 = r1.copy().update(op({"update": {"s_set": {"add": "x"}}}), B, 0)
    r1 = r1.merge(r2)
    r1.update(op({"update": {"s_set": {"remove": "x"}}}), A, 0, stale)
    assert r1.value() == {"s_set": ["x"]}


def test_stale_context_field_remove_leaves_a_concurrent_update() -> None:
    r1 = updated({"update": {"s_set": {"add": "x"}, "f_flag": "enable"}}, A)
    stale = r1.context()
    r2 = r1.copy().update(op({"update": {"s_set": {"add": "y"}}}), B, 0)
    r1 = r1.merge(r2)
    r1.update(op({"remove": ["s_set", "f_flag"]}), A, 0, stale)
    assert r1.value() == {"s_set": ["y"]}


def test_field_remove_with_a_context_ahead_of_the_replica_is_deferred() -> None:
    ahead = updated(
        {"update": {"s_set": {"add": "x"}, "n_map": {"update": {"f_flag": "enable"}}}}, A
    )
    behind = Map.new()
    behind.update(
        op({"remove": ["s_set"], "update": {"n_map": {"update": {"f_flag": "disable"}}}}),
        B,
        0,
        ahead.context(),
    )
    merged = behind.merge(ahead)
    assert merged.value() == {"n_map": {"f_flag": False}}
    assert not merged.deferred
    assert Map.decode(behind.encode()).deferred == behind.deferred


def test_flag_enable_wins_over_a_concurrent_disable() -> None:
    base = updated({"update": {"f_flag": "enable"}})
    disabler = base.copy().update(op({"update": {"f_flag": "disable"}}), A, 0)
    enabler = base.copy().update(op({"update": {"f_flag": "enable"}}), B, 0)
    assert disabler.merge(enabler).value() == {"f_flag": True}
    assert disabler.value() == {"f_flag": False}


def test_register_is_last_writer_wins_with_deterministic_ties() -> None:
    early = Map.new().update(op({"update": {"r_register": "early"}}), B, 100)
    late = Map.new().update(op({"update": {"r_register": "late"}}), b"vnode-c", 200)
    assert early.merge(late).value() == late.merge(early).value() == {"r_register": "late"}
    tie = Map.new().update(op({"update": {"r_register": "tie"}}), A, 100)
    # Same timestamp: the greater actor id (B) wins, whatever the merge order.
    assert early.merge(tie).value() == tie.merge(early).value() == {"r_register": "early"}
    assert tie.merge(late).merge(early).value() == {"r_register": "late"}


def test_register_write_with_an_older_clock_does_not_roll_back() -> None:
    m = updated({"update": {"r_register": "new"}}, A, 500)
    m.update(op({"update": {"r_register": "older"}}), B, 100)
    assert m.value() == {"r_register": "new"}


def test_map_field_count_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(map_module, "MAX_MAP_FIELDS", 2)
    m = updated({"update": {"a_counter": 1, "b_counter": 1}})
    with pytest.raises(BadRequest, match="more than 2"):
        m.update(op({"update": {"c_counter": 1}}), A, 0)
    m.update(op({"update": {"a_counter": 1}}), A, 0)
    assert m.value() == {"a_counter": 2, "b_counter": 1}


def test_update_of_a_large_nested_set_is_in_place() -> None:
    adds = [str(i) for i in range(5000)]
    m = updated({"update": {"s_set": {"add_all": adds}}})
    nested = m.store.fields[FieldKey("s", "set")].store
    assert isinstance(nested, SetStore)
    entries = nested.entries
    m.update(op({"update": {"s_set": {"add": "more"}}}), B, 0)
    assert m.store.fields[FieldKey("s", "set")].store is nested
    assert nested.entries is entries  # no copy of the 5,000 entries
    assert len(m.value()["s_set"]) == 5001


def test_round_trip_of_a_nested_map() -> None:
    m = updated(
        {
            "update": {
                "n_map": {"update": {"m_map": {"update": {"c_counter": -4, "s_set": {"add": "q"}}}}}
            }
        }
    )
    m = m.merge(updated({"update": {"r_register": "v"}}, B, 3))
    decoded = Map.decode(m.encode())
    assert (
        decoded.value()
        == m.value()
        == {
            "n_map": {"m_map": {"c_counter": -4, "s_set": ["q"]}},
            "r_register": "v",
        }
    )
    assert decoded.context() == m.context()
