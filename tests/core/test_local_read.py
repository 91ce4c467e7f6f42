"""A GET whose replicas are all on this node reads them in one step (GetCoordinator.read_locally).

It must answer, and repair, exactly as the message path does: same reply, same read repairs, for
any replica states and any quorum values. And through a one-node service, a replica that missed a
write is repaired by the read.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sapwood.core.coordinator import GetCoordinator, Quorums, WriteMode
from sapwood.core.effects import Effect, Reply, Send, SetTimer
from sapwood.core.errors import SapwoodError
from sapwood.core.kvobject import KVObject, Metadata, apply_write, merge
from sapwood.core.messages import Fetch, FetchReply
from sapwood.core.requests import GetRequest, GetResult, PutRequest
from sapwood.core.ring import BKey, PreflistEntry, Ring
from sapwood.core.service import KVService
from sapwood.storage.memory import MemoryBackend

NODE = "a@h"
KEY = BKey("default", "b", "k")
PARTITIONS = (5, 6, 7)


def _versions() -> list[KVObject]:
    """A few related versions of one key: a chain, a concurrent sibling, their merge."""
    first = apply_write(None, {}, b"one", Metadata(), b"actor-a", 1, allow_mult=True)
    second = apply_write(first, dict(first.clock), b"two", Metadata(), b"actor-a", 2,
                         allow_mult=True)
    concurrent = apply_write(first, dict(first.clock), b"other", Metadata(), b"actor-b", 3,
                             allow_mult=True)
    both = merge(second, concurrent)
    assert both is not None
    return [first, second, concurrent, both]


VERSIONS = _versions()
replica_state = st.one_of(st.none(), st.sampled_from(VERSIONS))


def _coordinator(quorums: Quorums, allow_mult: bool, primaries: tuple[bool, ...]
                 ) -> GetCoordinator:
    preflist = [PreflistEntry(p, NODE, primary) for p, primary in zip(PARTITIONS, primaries,
                                                                       strict=True)]
    return GetCoordinator(1, NODE, KEY, preflist, quorums, WriteMode(allow_mult, False), 1000)


def _by_messages(coordinator: GetCoordinator, replicas: dict[int, KVObject | None]
                 ) -> list[Effect]:
    """Fetches out, then their replies back in preflist order, as the service delivers them."""
    started = coordinator.start(0)
    effects = [e for e in started if not isinstance(e, Send)]  # a refusal, and the timer
    fetches = [e.msg for e in started if isinstance(e, Send)]
    for fetch in fetches:
        assert isinstance(fetch, Fetch)
        reply = FetchReply(fetch.req_id, fetch.partition, NODE, replicas[fetch.partition])
        effects += coordinator.on_message(reply, 0)
    return [e for e in effects if not isinstance(e, SetTimer)]


def _comparable(effects: list[Effect]) -> list[object]:
    """Effects with errors as (class, message): exceptions do not compare equal."""
    return [(type(e.result), e.result.message)
            if isinstance(e, Reply) and isinstance(e.result, SapwoodError) else e
            for e in effects]


@settings(max_examples=300, deadline=None)
@given(
    states=st.tuples(replica_state, replica_state, replica_state),
    r=st.integers(1, 3), pr=st.integers(0, 3),
    notfound_ok=st.booleans(), basic_quorum=st.booleans(), allow_mult=st.booleans(),
    primaries=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_reading_locally_answers_and_repairs_as_the_messages_do(
        states: tuple[KVObject | None, ...], r: int, pr: int, notfound_ok: bool,
        basic_quorum: bool, allow_mult: bool, primaries: tuple[bool, ...]) -> None:
    replicas = dict(zip(PARTITIONS, states, strict=True))
    quorums = Quorums(n=3, r=r, pr=pr, notfound_ok=notfound_ok, basic_quorum=basic_quorum)
    expected = _by_messages(_coordinator(quorums, allow_mult, primaries), replicas)

    local = _coordinator(quorums, allow_mult, primaries)
    reads: list[int] = []

    def read(partition: int, bkey: BKey) -> KVObject | None:
        assert bkey == KEY
        reads.append(partition)
        return replicas[partition]

    got = local.read_locally(read, 0)
    assert _comparable(got) == _comparable(expected)
    assert local.done
    assert reads in ([], list(PARTITIONS))  # refused up front, or every replica in order


def test_a_one_node_get_repairs_the_replica_that_missed_a_write() -> None:
    backend = MemoryBackend()
    service = KVService(NODE, Ring.single(NODE, 8), backend, 1)
    service.set_commit_durable(True)
    service.submit(1, PutRequest(KEY, b"v", Metadata()), 0)
    preflist = service.preflist(KEY, 3)
    behind = service.vnode(preflist[-1].partition)
    raw_key = next(k for k, _ in backend.fold_objects(behind.partition))
    backend.delete(behind.partition, raw_key, [])  # this replica never got the write
    assert behind.read(KEY) is None

    effects = service.submit(2, GetRequest(KEY), 0)

    (reply,) = effects
    assert isinstance(reply.result, GetResult) and reply.result.obj is not None
    assert reply.result.obj.siblings[0].value == b"v"
    assert behind.read(KEY) == service.vnode(preflist[0].partition).read(KEY)
    assert [service.vnode(e.partition).stats["gets"] for e in preflist] == [1, 1, 1]
