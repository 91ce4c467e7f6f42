"""The wire codec: every message round-trips exactly; frames split and refuse oversize; handshake."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sapwood.core import cluster, consensus, failure, handoff, kvobject, messages, requests
from sapwood.core import ensemble_messages as em
from sapwood.core import membership as ms
from sapwood.core.causal import Dot
from sapwood.core.crdt import ops
from sapwood.core.index import IndexQuery
from sapwood.core.kvobject import KVObject, Metadata, Sibling
from sapwood.core.ring import BKey
from sapwood.wire import codec, handshake
from sapwood.wire.codec import (
    DecodeError,
    EncodeError,
    FrameDecoder,
    FrameTooLarge,
    decode_message,
    encode_message,
)
from sapwood.wire.handshake import Hello, Refusal, Role

# --- strategies -------------------------------------------------------------------------------

text = st.text(max_size=12)
names = st.text(min_size=1, max_size=12)
ints = st.integers(min_value=0, max_value=2**40)
maybe_text = st.none() | text
bkeys = st.builds(BKey, text, text, text)
dots = st.builds(Dot, st.binary(min_size=1, max_size=8), ints)
clocks = st.dictionaries(st.binary(min_size=1, max_size=8), ints, max_size=4)
terms = st.one_of(text, st.integers(min_value=-(2**63), max_value=2**63 - 1))
metadata = st.builds(
    Metadata,
    content_type=text,
    charset=maybe_text,
    encoding=maybe_text,
    usermeta=st.lists(st.tuples(text, text), max_size=3).map(tuple),
    indexes=st.lists(st.tuples(text, terms), max_size=3).map(tuple),
    links=st.lists(st.tuples(text, text, text), max_size=2).map(tuple),
    last_modified_ms=ints,
    vtag=text,
    deleted=st.booleans(),
)
objects = st.builds(
    KVObject,
    st.lists(st.builds(Sibling, st.binary(max_size=64), metadata, dots), max_size=3).map(tuple),
    clocks,
)
maybe_objects = st.none() | objects
wire_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.one_of(
    st.none(), st.booleans(), wire_ints,
    st.floats(allow_nan=False), text, st.binary(max_size=16),
)
# Map keys msgpack cannot carry as they are (tuples, registered objects) travel as tagged pairs.
any_keys = st.one_of(text, st.binary(max_size=4), wire_ints, st.tuples(wire_ints, text), bkeys)
# What Any-typed fields may carry: plain values, lists vs tuples, maps, sets, nested keys.
any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(any_keys, inner, max_size=3),
        st.frozensets(wire_ints, max_size=4),
        st.sets(st.one_of(text, st.tuples(wire_ints)), max_size=4),
        bkeys,
    ),
    max_leaves=12,
)
quorums = st.one_of(st.none(), st.integers(min_value=0, max_value=16),
                    st.sampled_from(["one", "quorum", "all", "default"]))
index_queries = st.builds(
    IndexQuery, text, text, text, terms, terms, st.booleans(), st.none() | ints,
    st.none() | st.tuples(terms, text), maybe_text,
)
queries = st.one_of(st.builds(requests.ListKeys, text, text),
                    st.builds(requests.ListBuckets, text), index_queries)
fold_items = st.lists(st.one_of(text, st.tuples(terms, text)), max_size=6)
elements = st.lists(st.binary(max_size=8), max_size=3).map(tuple)
field_keys = st.builds(ops.FieldKey, text, st.sampled_from(ops.MAP_FIELD_TYPES))
counter_ops = st.builds(ops.CounterOp, st.integers(min_value=-(2**63), max_value=2**63 - 1))
leaf_ops = st.one_of(
    counter_ops,
    st.builds(ops.SetOp, elements, elements), st.builds(ops.HllOp, elements),
    st.builds(ops.RegisterOp, st.binary(max_size=16)), st.builds(ops.FlagOp, st.booleans()),
)
crdt_ops = st.recursive(leaf_ops, lambda inner: st.builds(
    ops.MapOp, st.lists(field_keys, max_size=2).map(tuple),
    st.lists(st.tuples(field_keys, inner), max_size=2).map(tuple)), max_leaves=5)

versions = st.builds(consensus.Version, ints, ints)
members = st.lists(names, max_size=3).map(tuple)
keys = st.binary(max_size=8)
COMMANDS: dict[type, st.SearchStrategy[Any]] = {
    consensus.Put: st.builds(consensus.Put, keys, st.binary(max_size=16),
                             st.none() | versions | st.just(consensus.ABSENT)),
    consensus.Delete: st.builds(consensus.Delete, keys, st.none() | versions),
    consensus.Get: st.builds(consensus.Get, keys),
    consensus.AddMember: st.builds(consensus.AddMember, names),
    consensus.RemoveMember: st.builds(consensus.RemoveMember, names),
    consensus.NoOp: st.just(consensus.NoOp()),
    consensus.Reconfigure: st.builds(consensus.Reconfigure, members),
}
entries = st.builds(consensus.Entry, ints, ints, st.one_of(
    *(COMMANDS[cls] for cls in (consensus.Put, consensus.Delete, consensus.Get, consensus.NoOp,
                                consensus.Reconfigure))))
snapshot_metas = st.builds(consensus.SnapshotMeta, ints, ints, members)
RAFT: dict[type, st.SearchStrategy[Any]] = {
    consensus.VoteRequest: st.builds(consensus.VoteRequest, text, ints, ints, ints,
                                     st.booleans()),
    consensus.VoteResponse: st.builds(consensus.VoteResponse, text, ints, st.booleans(),
                                      st.booleans()),
    consensus.AppendEntries: st.builds(consensus.AppendEntries, text, ints, ints, ints,
                                       st.lists(entries, max_size=3).map(tuple), ints),
    consensus.AppendResponse: st.builds(consensus.AppendResponse, text, ints, st.booleans(),
                                        ints, ints, ints),
    consensus.Heartbeat: st.builds(consensus.Heartbeat, text, ints, ints, ints),
    consensus.HeartbeatResponse: st.builds(consensus.HeartbeatResponse, text, ints, ints),
    consensus.InstallSnapshot: st.builds(consensus.InstallSnapshot, text, ints, snapshot_metas,
                                         ints, st.binary(max_size=32), st.booleans()),
    consensus.SnapshotResponse: st.builds(consensus.SnapshotResponse, text, ints, ints, ints,
                                          st.booleans()),
}
RESULTS: dict[type, st.SearchStrategy[Any]] = {
    consensus.Ok: st.builds(consensus.Ok, versions, st.none() | st.binary(max_size=16)),
    consensus.Absent: st.builds(consensus.Absent, keys),
    consensus.NotLeader: st.builds(consensus.NotLeader, maybe_text),
    consensus.ConfigApplied: st.builds(consensus.ConfigApplied, members, versions),
    **{cls: st.builds(cls, text) for cls in (consensus.Precondition, consensus.Unavailable,
                                             consensus.Indeterminate, consensus.Invalid,
                                             consensus.TooLarge)},
}
ENSEMBLE: dict[type, st.SearchStrategy[Any]] = {
    em.EnsembleEnvelope: st.builds(em.EnsembleEnvelope, text, names, names,
                                   st.one_of(*RAFT.values())),
    em.EnsembleCall: st.builds(em.EnsembleCall, ints, names, text, names, st.one_of(
        COMMANDS[consensus.Put], COMMANDS[consensus.Delete], COMMANDS[consensus.Get])),
    em.EnsembleAnswer: st.builds(em.EnsembleAnswer, ints, st.one_of(*RESULTS.values())),
    em.EnsemblePersisted: st.builds(em.EnsemblePersisted, text, names, ints, ints),
    em.EnsembleRetireQuery: st.builds(em.EnsembleRetireQuery, text, names),
    em.EnsembleRetired: st.builds(em.EnsembleRetired, text, names),
}

STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    **COMMANDS, **RAFT, **RESULTS, **ENSEMBLE,
    consensus.Version: versions,
    consensus.Entry: entries,
    consensus.SnapshotMeta: snapshot_metas,
    KVObject: objects,
    Metadata: metadata,
    Dot: dots,
    BKey: bkeys,
    messages.Fetch: st.builds(messages.Fetch, ints, names, ints, bkeys),
    messages.FetchReply: st.builds(messages.FetchReply, ints, ints, names, maybe_objects,
                                   maybe_text),
    messages.CoordinatePut: st.builds(messages.CoordinatePut, ints, names, ints, bkeys,
                                      st.binary(max_size=64), metadata, clocks, st.booleans(),
                                      st.booleans()),
    messages.CoordinateUpdate: st.builds(messages.CoordinateUpdate, ints, names, ints, bkeys,
                                         text, crdt_ops, st.none() | st.binary(max_size=16),
                                         st.integers(4, 16), st.booleans()),
    messages.CoordinatePutReply: st.builds(messages.CoordinatePutReply, ints, ints, names,
                                           maybe_objects, maybe_text, ints),
    messages.Replicate: st.builds(messages.Replicate, ints, text, ints, bkeys, objects,
                                  st.booleans()),
    messages.StoreAck: st.builds(messages.StoreAck, ints, ints, names, st.booleans(), maybe_text),
    messages.Reap: st.builds(messages.Reap, ints, bkeys, clocks, ints),
    messages.Fold: st.builds(messages.Fold, ints, names, ints, queries,
                             st.frozensets(ints, max_size=8)),
    messages.FoldReply: st.builds(messages.FoldReply, ints, ints, names, fold_items, maybe_text),
    cluster.Gossip: st.builds(cluster.Gossip, names, st.lists(any_values, max_size=4),
                              st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8),
                                                 ints, names), max_size=3)),
    cluster.AdminForward: st.builds(cluster.AdminForward, ints, names, text,
                                    st.lists(any_values, max_size=3)),
    cluster.AdminReply: st.builds(cluster.AdminReply, ints, st.booleans(), any_values),
    cluster.AdminRequest: st.builds(cluster.AdminRequest, text,
                                    st.lists(any_values, max_size=3).map(tuple)),
    failure.Ping: st.builds(failure.Ping, names),
    handoff.HandoffBatch: st.builds(handoff.HandoffBatch, ints, names, ints, ints,
                                    st.lists(st.tuples(st.binary(max_size=16),
                                                       st.binary(max_size=64)), max_size=4),
                                    st.booleans()),
    handoff.HandoffAck: st.builds(handoff.HandoffAck, ints, ints, ints, names, maybe_text),
    handoff.TransferComplete: st.builds(handoff.TransferComplete, ints, names, names),
    requests.ListKeys: st.builds(requests.ListKeys, text, text),
    requests.ListBuckets: st.builds(requests.ListBuckets, text),
    IndexQuery: index_queries,
    requests.CoverageRequest: st.builds(requests.CoverageRequest, queries, st.none() | ints,
                                        st.booleans()),
    requests.CoverageChunk: st.builds(requests.CoverageChunk, fold_items),
    requests.CoverageResult: st.builds(requests.CoverageResult, fold_items,
                                       st.floats(0, 1), maybe_text,
                                       st.lists(st.tuples(terms, text), max_size=3)),
    requests.GetRequest: st.builds(requests.GetRequest, bkeys, quorums, quorums,
                                   st.none() | st.booleans(), st.none() | st.booleans(),
                                   st.none() | ints),
    requests.GetResult: st.builds(requests.GetResult, bkeys, maybe_objects),
    requests.PutRequest: st.builds(requests.PutRequest, bkeys, st.binary(max_size=32), metadata,
                                   clocks, quorums, quorums, quorums, st.none() | ints,
                                   st.booleans()),
    requests.UpdateRequest: st.builds(requests.UpdateRequest, bkeys, text, crdt_ops,
                                      st.none() | st.binary(max_size=16), quorums, quorums,
                                      quorums, st.none() | ints, st.booleans(), st.booleans()),
    ops.FieldKey: field_keys,
    ops.CounterOp: counter_ops,
    ops.SetOp: st.builds(ops.SetOp, elements, elements),
    ops.HllOp: st.builds(ops.HllOp, elements),
    ops.RegisterOp: st.builds(ops.RegisterOp, st.binary(max_size=16)),
    ops.FlagOp: st.builds(ops.FlagOp, st.booleans()),
    ops.MapOp: crdt_ops.filter(lambda op: isinstance(op, ops.MapOp)),
    requests.PutResult: st.builds(requests.PutResult, bkeys, maybe_objects),
    requests.DeleteRequest: st.builds(requests.DeleteRequest, bkeys, st.none() | clocks, quorums,
                                      quorums, quorums, quorums, quorums, quorums,
                                      st.none() | ints),
    requests.DeleteResult: st.builds(requests.DeleteResult, bkeys),
}


def assert_identical(sent: Any, got: Any) -> None:
    """Equal, and built from the very same classes all the way down (a tuple is not a list)."""
    assert type(got) is type(sent), f"{got!r} is a {type(got)}, was a {type(sent)}"
    if dataclasses.is_dataclass(sent):
        for f in dataclasses.fields(sent):
            assert_identical(getattr(sent, f.name), getattr(got, f.name))
    elif isinstance(sent, list | tuple):
        assert len(got) == len(sent)
        for a, b in zip(sent, got, strict=True):
            assert_identical(a, b)
    elif isinstance(sent, dict):
        assert got.keys() == sent.keys()
        for key, value in sent.items():
            assert_identical(value, got[key])
    else:
        assert got == sent


# --- coverage of the vocabulary ---------------------------------------------------------------


def _dataclasses_of(module: Any) -> set[type]:
    return {obj for obj in vars(module).values()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj)
            and obj.__module__ == module.__name__}


EXCHANGED = {
    *_dataclasses_of(messages),
    cluster.Gossip, cluster.AdminForward, cluster.AdminReply,
    handoff.HandoffBatch, handoff.HandoffAck, handoff.TransferComplete,
    failure.Ping,
    requests.ListKeys, requests.ListBuckets, IndexQuery, requests.CoverageChunk,
    KVObject, Metadata, Dot, BKey,
    *_dataclasses_of(ops), ops.FieldKey,  # the operations inside CoordinateUpdate
}


def test_every_exchanged_class_is_registered_and_has_a_strategy() -> None:
    registered = codec.registered_classes()
    missing = {cls.__qualname__ for cls in EXCHANGED - set(registered)}
    assert not missing, f"add these to the table in sapwood/wire/codec.py: {sorted(missing)}"

    assert len(set(registered.values())) == len(registered)
    core = {cls for cls in registered if cls.__module__.startswith("sapwood.core")}
    assert core <= set(STRATEGIES)


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=lambda c: c.__qualname__),
                         ids=lambda c: c.__qualname__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_round_trips_exactly(cls: type, data: st.DataObject) -> None:
    msg = data.draw(STRATEGIES[cls])
    decoded = decode_message(encode_message(msg))
    assert decoded == msg
    assert_identical(msg, decoded)


def test_nested_values_keep_their_classes() -> None:
    query = IndexQuery("t", "b", "age_int", 1, 9, continuation=(5, "k"))
    fold = decode_message(encode_message(messages.Fold(1, "a@h", 3, query, frozenset({1, 2}))))
    assert type(fold.query) is IndexQuery
    assert type(fold.query.continuation) is tuple
    assert type(fold.first_partitions) is frozenset
    fetch = decode_message(encode_message(messages.Fetch(1, "a@h", 0, BKey("t", "b", "k"))))
    assert type(fetch.bkey) is BKey
    reply = decode_message(encode_message(messages.FoldReply(1, 0, "a@h", [(1, "k"), (2, "j")])))
    assert set(reply.items) == {(1, "k"), (2, "j")}  # tuples, so hashable as the merge needs


def test_gossip_of_a_real_cluster_state_round_trips() -> None:
    me = ms.Member("a@h", ms.Status.VALID, "127.0.0.1:8099", "http://127.0.0.1:8098")
    state = ms.ClusterState.standalone("sapwood", me, 8)
    gossip = cluster.Gossip("a@h", ms.state_to_wire(state), [(b"type/x", b"{}", 5, "a@h")])
    decoded = decode_message(encode_message(gossip))
    assert ms.state_from_wire(decoded.state) == state
    assert_identical(gossip, decoded)


def test_a_large_object_round_trips() -> None:
    value = bytes(range(256)) * 40_000  # 10 MB
    obj = KVObject((Sibling(value, Metadata(), Dot(b"v1", 1)),), {b"v1": 1})
    decoded = decode_message(encode_message(messages.Replicate(1, "a@h", 0, BKey("", "b", "k"),
                                                               obj, True)))
    assert decoded.obj.siblings[0].value == value


# --- refusals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unregistered:
    x: int


def test_unregistered_messages_and_values_cannot_be_encoded() -> None:
    with pytest.raises(EncodeError, match="Unregistered is not a registered message"):
        encode_message(Unregistered(1))
    with pytest.raises(EncodeError, match="register it"):
        encode_message(cluster.AdminReply(1, True, Unregistered(1)))
    with pytest.raises(EncodeError, match="not a registered message"):
        encode_message([1, 2])
    with pytest.raises(EncodeError, match="outside msgpack's range"):
        encode_message(cluster.AdminReply(1, True, 2**64))


def test_unknown_codes_and_garbage_are_clear_decode_errors() -> None:
    with pytest.raises(DecodeError, match="unknown wire code 4242"):
        decode_message(msgpack.packb([4242, 1]))
    with pytest.raises(DecodeError, match="unknown wire code 4242"):
        decode_message(msgpack.packb([32, 1, True, [4242]]))  # inside an AdminReply
    with pytest.raises(DecodeError, match=r"unknown wire code \[1\]"):
        decode_message(msgpack.packb([[1], 2]))
    with pytest.raises(DecodeError, match="unknown msgpack extension type 99"):
        decode_message(msgpack.packb(msgpack.ExtType(99, b"")))
    for value in ("text", {"a": 1}, None, [codec.TAG_TUPLE, 1, 2]):
        with pytest.raises(DecodeError, match="not a message"):
            decode_message(msgpack.packb(value))
    with pytest.raises(DecodeError, match="without a type code"):
        decode_message(msgpack.packb([]))
    with pytest.raises(DecodeError):
        decode_message(b"\xc1\xff\x00")
    with pytest.raises(DecodeError, match="malformed Ping"):
        decode_message(msgpack.packb([34, "a@h", "extra"]))
    with pytest.raises(DecodeError, match="malformed BKey"):
        decode_message(msgpack.packb([10, 1, "a@h", 0, [4, "t", "b"]]))
    with pytest.raises(DecodeError, match="malformed KVObject: unknown object encoding version"):
        decode_message(msgpack.packb([11, 1, 0, "a@h", [1, msgpack.packb([99, [], []])], None]))
    with pytest.raises(DecodeError, match="malformed KVObject"):
        decode_message(msgpack.packb([11, 1, 0, "a@h", [1, [1, [], []]], None]))
    with pytest.raises(DecodeError, match="malformed frozenset: unhashable"):
        decode_message(msgpack.packb([17, 1, "a@h", 0, None,
                                      [codec.TAG_FROZENSET, [codec.TAG_LIST]]]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_to_a_message_or_a_decode_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except DecodeError:
        return
    assert type(msg) in codec.registered_classes()


# --- the format -------------------------------------------------------------------------------


def test_the_wire_format_is_one_array_per_object() -> None:
    """What a peer of this protocol version reads; a change here needs a PROTOCOL_VERSION bump."""
    assert codec.PROTOCOL_VERSION == 3
    fetch = messages.Fetch(7, "a@h", 3, BKey("t", "b", "k"))
    assert msgpack.unpackb(encode_message(fetch)) == [10, 7, "a@h", 3, [4, "t", "b", "k"]]
    reply = cluster.AdminReply(1, True, ((1, "x"), [2], frozenset(), {(1,): b"v", b"k": None}))
    tagged = [codec.TAG_TUPLE, [codec.TAG_TUPLE, 1, "x"], [codec.TAG_LIST, 2],
              [codec.TAG_FROZENSET], [codec.TAG_DICT_ITEMS, [codec.TAG_TUPLE, 1], b"v", b"k", None]]
    assert msgpack.unpackb(encode_message(reply)) == [32, 1, True, tagged]


def test_objects_travel_as_their_stored_bytes() -> None:
    meta = Metadata(usermeta=(("a", "b"),), indexes=(("age_int", 5),), vtag="v")
    obj = KVObject((Sibling(b"value", meta, Dot(b"x", 2)),), {b"x": 2, b"y": 1})
    msg = messages.Replicate(1, "a@h", 0, BKey("", "b", "k"), obj, True)
    code, wire = msgpack.unpackb(encode_message(msg), raw=False)[5]
    assert code == codec.registered_classes()[KVObject]
    assert wire == kvobject.encode(obj)
    assert kvobject.from_wire(msgpack.unpackb(wire, raw=False)) == obj
    received = decode_message(encode_message(msg)).obj
    # The replica stores the bytes it received rather than encoding the object again.
    assert received == obj and kvobject.encode(received) is not None
    assert kvobject.encode(received) == wire


def test_a_message_is_one_pack_and_one_unpackb(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)
        return call

    class CountedPacker:
        def __init__(self, real: Any) -> None:
            self.pack = counted("pack", real.pack)

    monkeypatch.setattr(msgpack, "packb", counted("packb", msgpack.packb))
    monkeypatch.setattr(msgpack, "unpackb", counted("unpackb", msgpack.unpackb))
    monkeypatch.setattr(codec, "_packer", CountedPacker(codec._packer))
    obj = KVObject((Sibling(b"v", Metadata(usermeta=(("a", "b"),)), Dot(b"x", 1)),
                    Sibling(b"w", Metadata(), Dot(b"y", 1))), {b"x": 1, b"y": 1})
    op = ops.MapOp((ops.FieldKey("f", "set"),),
                   ((ops.FieldKey("g", "map"), ops.MapOp((), ((ops.FieldKey("c", "counter"),
                                                               ops.CounterOp(1)),))),))
    kvobject.encode(obj)  # stored before it is sent: its bytes are at hand
    for msg, unpacks in ((messages.Replicate(1, "a@h", 0, BKey("t", "b", "k"), obj, False), 2),
                         (messages.CoordinateUpdate(2, "a@h", 0, BKey("t", "b", "k"), "map", op,
                                                    None, 14), 1)):
        calls.clear()
        assert decode_message(encode_message(msg)) == msg
        # The object's own bytes are unpacked once more, as a stored object's are on a read.
        assert calls == ["pack", *["unpackb"] * unpacks]


@dataclass(frozen=True, slots=True)
class PlainHints:
    count: int
    label: str | None
    sizes: list[int]
    clock: dict[bytes, int]


@settings(max_examples=60, deadline=None)
@given(st.tuples(any_values, any_values, any_values, any_values))
def test_a_value_breaking_its_hint_comes_back_exactly_or_is_refused(values: tuple[Any, ...]) -> None:
    codec.register(PlainHints, 60_005)
    msg = PlainHints(*values)
    try:
        data = encode_message(msg)
    except EncodeError as exc:
        assert "plain data is promised" in str(exc) or "register it" in str(exc)
        return
    assert_identical(msg, decode_message(data))


def test_a_tuple_where_a_hint_promises_plain_data_is_refused() -> None:
    with pytest.raises(EncodeError, match="a tuple where plain data is promised"):
        encode_message(messages.StoreAck(1, 0, ("a@h",), True))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="a BKey where"):
        encode_message(messages.Reap(0, BKey("t", "b", "k"), {b"a": BKey("t", "b", "k")}))


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LaterMessage:
    term: int
    entries: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class UnresolvedHints:
    payload: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821


class Opaque:
    def __init__(self, payload: str) -> None:
        self.payload = payload


def test_registering_a_new_message_is_one_line() -> None:
    codec.register(LaterMessage, 60_001)
    codec.register(LaterMessage, 60_001)  # idempotent, e.g. on re-import
    msg = LaterMessage(3, (b"a", b"b"))
    assert_identical(msg, decode_message(encode_message(msg)))


def test_fieldless_classes_and_unresolvable_hints() -> None:
    codec.register(Empty, 60_006)
    assert_identical(Empty(), decode_message(encode_message(Empty())))
    codec.register(UnresolvedHints, 60_007)  # every field tagged, so still exact
    msg = UnresolvedHints(((1, "x"), frozenset({b"a"})))
    assert_identical(msg, decode_message(encode_message(msg)))


def test_custom_encodings_and_conflicting_registrations() -> None:
    codec.register(Opaque, 60_002, to_wire=lambda o: o.payload, from_wire=Opaque)
    back = decode_message(encode_message(cluster.AdminReply(1, True, Opaque("x"))))
    assert isinstance(back.result, Opaque) and back.result.payload == "x"
    with pytest.raises(ValueError, match="already"):
        codec.register(Unregistered, 60_001)
    with pytest.raises(ValueError, match="already registered"):
        codec.register(LaterMessage, 60_003)
    with pytest.raises(ValueError, match="outside"):
        codec.register(Unregistered, 0)
    with pytest.raises(ValueError, match="neither a dataclass nor a NamedTuple"):
        codec.register(dict, 60_004)
    with pytest.raises(ValueError, match="plain= describes what to_wire returns"):
        codec.register(Unregistered, 60_008, plain=True)


class PlainOpaque(Opaque):
    pass


class TupleOpaque(Opaque):
    pass


def test_a_plain_custom_encoding_travels_as_it_is() -> None:
    codec.register(PlainOpaque, 60_009, to_wire=lambda o: [o.payload, {"n": 1}],
                   from_wire=lambda w: PlainOpaque(w[0]), plain=True)
    reply = cluster.AdminReply(1, True, [PlainOpaque("x")])
    assert msgpack.unpackb(encode_message(reply))[3] == [codec.TAG_LIST, [60_009, ["x", {"n": 1}]]]
    assert decode_message(encode_message(reply)).result[0].payload == "x"
    codec.register(TupleOpaque, 60_010, to_wire=lambda o: (o.payload,),
                   from_wire=lambda w: TupleOpaque(w[0]), plain=True)
    with pytest.raises(EncodeError, match="a tuple where"):
        encode_message(cluster.AdminReply(1, True, TupleOpaque("x")))


# --- frames -----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10))
def test_frames_survive_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(codec.encode_frame(p) for p in payloads)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(stream[start:end])
    assert out == payloads
    assert decoder.pending_bytes == 0


def test_an_oversized_frame_is_refused_by_its_header() -> None:
    decoder = FrameDecoder(max_bytes=100)
    assert decoder.feed(codec.encode_frame(b"x" * 100)) == [b"x" * 100]
    with pytest.raises(FrameTooLarge, match="frame of 101 bytes; the limit is 100"):
        decoder.feed(struct.pack(">I", 101))  # refused before any of its body arrives
    with pytest.raises(FrameTooLarge):
        codec.encode_frame(b"x" * 101, max_bytes=100)
    assert codec.MAX_FRAME_BYTES > 50 * 1024 * 1024


def test_a_message_over_the_frame_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_FRAME_BYTES", 1000)
    msg = handoff.HandoffBatch(1, "a@h", 0, 1, [(b"k", b"v" * 2000)], True)
    with pytest.raises(FrameTooLarge, match="HandoffBatch encodes to"):
        codec.frame_message(msg)
    assert len(codec.frame_message(failure.Ping("a@h"))) < 1000


# --- handshake pieces -------------------------------------------------------------------------


def _hello(node: str = "a@h", cluster_name: str = "sapwood", version: int = 1) -> Hello:
    return Hello(version, cluster_name, node, b"n" * 16)


def test_hellos_round_trip_and_are_checked() -> None:
    hello = _hello()
    assert handshake.decode_hello(handshake.encode_hello(hello)) == hello
    assert handshake.check_hello(hello, _hello("b@h")) is None
    assert handshake.check_hello(hello, _hello("b@h", version=2))[0] is Refusal.VERSION
    refusal, detail = handshake.check_hello(hello, _hello("b@h", cluster_name="other"))
    assert refusal is Refusal.CLUSTER_NAME and "'other'" in detail and "'sapwood'" in detail
    assert handshake.check_hello(hello, _hello("a@h"))[0] is Refusal.SAME_NAME
    with pytest.raises(DecodeError, match="not a sapwood hello"):
        handshake.decode_hello(msgpack.packb({"GET": 1}))


def test_proofs_depend_on_secret_role_and_both_hellos() -> None:
    client, server = _hello("a@h"), _hello("b@h")
    proof = handshake.handshake_proof(b"s" * 32, Role.CLIENT, client, server)
    assert handshake.proof_matches(proof, handshake.handshake_proof(b"s" * 32, Role.CLIENT, client, server))
    assert proof != handshake.handshake_proof(b"t" * 32, Role.CLIENT, client, server)
    assert proof != handshake.handshake_proof(b"s" * 32, Role.SERVER, client, server)
    assert proof != handshake.handshake_proof(b"s" * 32, Role.CLIENT, client, _hello("c@h"))
    assert handshake.decode_proof(handshake.encode_proof(proof)) == proof


def test_verdicts_round_trip() -> None:
    assert handshake.decode_verdict(handshake.encode_verdict(None)) == (None, "")
    refused = handshake.encode_verdict(Refusal.SECRET, "a@h does not share the secret")
    assert handshake.decode_verdict(refused) == (Refusal.SECRET, "a@h does not share the secret")


def test_the_shared_packer_is_clean_after_a_refused_message() -> None:
    bad = failure.Ping(object())  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="cannot encode a object"):
        encode_message(bad)
    good = failure.Ping("a@h")
    assert decode_message(encode_message(good)) == good


def test_a_large_message_does_not_pin_the_packer_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_KEPT_PACK_BUFFER_BYTES", 100)
    before = codec._packer
    big = handoff.HandoffBatch(1, "a@h", 0, 1, [(b"k", b"v" * 2000)], True)
    assert decode_message(encode_message(big)) == big
    assert codec._packer is not before  # replaced, its grown buffer released
    small = failure.Ping("a@h")
    assert decode_message(encode_message(small)) == small
