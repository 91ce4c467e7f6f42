"""The inter-node transport over real TCP on 127.0.0.1, and the cluster secret it authenticates with."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import stat
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sapwood.core.causal import Dot
from sapwood.core.failure import Ping
from sapwood.core.handoff import HandoffBatch
from sapwood.core.kvobject import KVObject, Metadata, Sibling
from sapwood.core.messages import FetchReply
from sapwood.node import outbox, pacing
from sapwood.node import transport as tmod
from sapwood.node.pacing import Backoff
from sapwood.node.secret import SECRET_FILE_NAME, SecretError, load_or_create_secret
from sapwood.node.transport import (
    HandshakeRefused,
    PeerUnreachable,
    Transport,
    attach_transport,
)
from sapwood.wire import codec
from sapwood.wire.codec import FRAME_HEADER
from sapwood.wire.handshake import Hello, Refusal

SECRET = b"0123456789abcdef0123456789abcdef"
HANG_GUARD_S = 20.0  # only stops a broken test from hanging; no test relies on it


def run(coro: Coroutine[Any, Any, None], loop: str = "asyncio") -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(coro, HANG_GUARD_S))


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Transports that find each other through one address book; each has an inbox."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.inboxes: dict[str, list[tuple[str, Any]]] = {}
        self.transports: list[Transport] = []

    async def start(self, name: str, *, cluster: str = "sapwood", secret: bytes = SECRET,
                    port: int = 0, cls: type[Transport] = Transport) -> Transport:
        inbox = self.inboxes.setdefault(name, [])
        t = cls(name, cluster, secret, self.addresses.get,
                lambda sender, msg: inbox.append((sender, msg)), rng=random.Random(1))
        await t.start("127.0.0.1", port)
        self.addresses[name] = t.address
        self.transports.append(t)
        return t

    async def close(self) -> None:
        for t in self.transports:
            await t.close()


def with_cluster(test: Callable[[Cluster], Awaitable[None]]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def body() -> None:
        c = Cluster()
        try:
            await test(c)
        finally:
            await c.close()
    return body


def big_object(size: int) -> KVObject:
    value = bytes(random.Random(7).getrandbits(8) for _ in range(1024)) * (size // 1024)
    return KVObject((Sibling(value, Metadata(content_type="application/x-big"), Dot(b"v1", 3)),),
                    {b"v1": 3})


# --- exchanging messages ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_two_transports_exchange_messages_both_ways_in_order(loop: str) -> None:
    obj = big_object(8 * 1024 * 1024)

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1")
        for i in range(2000):
            a.send("b@127.0.0.1", Ping(f"a{i}"))
            b.send("a@127.0.0.1", Ping(f"b{i}"))
        a.send("b@127.0.0.1", FetchReply(7, 3, "a@127.0.0.1", obj))
        a.send("b@127.0.0.1", Ping("after the big one"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 2002
                         and len(c.inboxes["a@127.0.0.1"]) == 2000)
        at_b = c.inboxes["b@127.0.0.1"]
        assert {sender for sender, _ in at_b} == {"a@127.0.0.1"}
        assert [m.sender for _, m in at_b[:2000]] == [f"a{i}" for i in range(2000)]
        assert at_b[2000][1] == FetchReply(7, 3, "a@127.0.0.1", obj)
        assert at_b[2001][1] == Ping("after the big one")
        assert [m.sender for _, m in c.inboxes["a@127.0.0.1"]] == [f"b{i}" for i in range(2000)]
        a_stats = a.stats()["b@127.0.0.1"]
        assert a_stats["connected"] and a_stats["inbound"]
        assert (a_stats["sent"], a_stats["received"], a_stats["dropped"]) == (2002, 2000, 0)
        assert b.stats()["a@127.0.0.1"]["received"] == 2002

    run(with_cluster(test)(), loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connected_peer_gets_more_than_its_write_buffer_holds_in_order(loop: str) -> None:
    obj = big_object(4 * 1024 * 1024)  # a few times MAX_BATCH_BYTES: the socket buffer fills

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        await c.start("b@127.0.0.1")
        a.send("b@127.0.0.1", Ping("first"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 1)  # connected now
        sent: list[Any] = []
        for turn in range(3):
            for i in range(300):
                sent.append(Ping(f"{turn}.{i}"))
                a.send("b@127.0.0.1", sent[-1])
            sent.append(FetchReply(turn, 3, "a@127.0.0.1", obj))
            a.send("b@127.0.0.1", sent[-1])
            await asyncio.sleep(0)  # the next turn's messages queue behind a full buffer
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 1 + len(sent))
        assert [m for _, m in c.inboxes["b@127.0.0.1"][1:]] == sent
        assert a.stats()["b@127.0.0.1"]["sent"] == 1 + len(sent)

    run(with_cluster(test)(), loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_messages_queued_for_a_connection_closed_under_them_go_out_on_the_next(
        loop: str) -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        await c.start("b@127.0.0.1")
        a.send("b@127.0.0.1", Ping("first"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 1)
        writer = a._peers["b@127.0.0.1"].writer
        assert writer is not None
        writer.transport.close()  # gone before the transport hears of it
        a.send("b@127.0.0.1", Ping("second"))
        a._peers["b@127.0.0.1"].flush()  # at once, before the connection's watcher runs
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 2)
        assert c.inboxes["b@127.0.0.1"][1][1] == Ping("second")

    run(with_cluster(test)(), loop)


def test_probe_names_the_node_at_an_address() -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1")
        assert await a.probe(b.address) == "b@127.0.0.1"
        with pytest.raises(HandshakeRefused) as refused:
            await a.probe(a.address)
        assert refused.value.reason is Refusal.SAME_NAME

    run(with_cluster(test)())


def test_a_failing_handler_does_not_break_the_connection() -> None:
    async def test(c: Cluster) -> None:
        seen: list[Any] = []

        def handler(sender: str, msg: Any) -> None:
            seen.append(msg)
            if len(seen) == 1:
                raise RuntimeError("boom")

        a = await c.start("a@127.0.0.1")
        b = Transport("b@127.0.0.1", "sapwood", SECRET, c.addresses.get, handler)
        c.transports.append(b)
        await b.start("127.0.0.1", 0)
        c.addresses["b@127.0.0.1"] = b.address
        a.send("b@127.0.0.1", Ping("1"))
        a.send("b@127.0.0.1", Ping("2"))
        await eventually(lambda: len(seen) == 2)

    run(with_cluster(test)())


def test_messages_read_together_reach_on_batch_together_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmod, "MAX_DELIVERY_BATCH", 7)

    async def test(c: Cluster) -> None:
        batches: list[list[Any]] = []
        a = await c.start("a@127.0.0.1")
        b = Transport("b@127.0.0.1", "sapwood", SECRET, c.addresses.get, lambda *_: None,
                      on_batch=lambda sender, msgs: batches.append(msgs))
        c.transports.append(b)
        await b.start("127.0.0.1", 0)
        c.addresses["b@127.0.0.1"] = b.address
        for i in range(500):
            a.send("b@127.0.0.1", Ping(f"a{i}"))  # one turn: queued together, written together
        await eventually(lambda: sum(map(len, batches)) == 500)
        assert [m.sender for batch in batches for m in batch] == [f"a{i}" for i in range(500)]
        assert max(map(len, batches)) == 7  # read together, handed over within the limit
        assert b.stats()["a@127.0.0.1"]["received"] == 500

    run(with_cluster(test)())


# --- refusals ---------------------------------------------------------------------------------


def test_a_wrong_secret_is_refused_on_both_sides(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "sapwood.transport")

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1", secret=b"another secret entirely")
        with pytest.raises(HandshakeRefused, match="wrong cluster secret") as refused:
            await a.probe(b.address)
        assert refused.value.reason is Refusal.SECRET
        a.send("b@127.0.0.1", Ping("let me in"))
        await eventually(lambda: "secret" in a.stats()["b@127.0.0.1"]["last_error"]
                         and any("refused a connection" in r.message for r in caplog.records))
        assert c.inboxes["b@127.0.0.1"] == []
        assert not a.stats()["b@127.0.0.1"]["connected"]

    run(with_cluster(test)())
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("cannot connect to b@127.0.0.1: wrong cluster secret") for m in messages)
    assert any("refused a connection from 127.0.0.1" in m and "wrong cluster secret" in m
               for m in messages)


def test_a_wrong_cluster_name_is_refused() -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1", cluster="elsewhere")
        with pytest.raises(HandshakeRefused) as refused:
            await a.probe(b.address)
        assert refused.value.reason is Refusal.CLUSTER_NAME
        assert "'elsewhere'" in str(refused.value) and "'sapwood'" in str(refused.value)
        a.send("b@127.0.0.1", Ping("hello?"))
        await eventually(lambda: "cluster name" in a.stats()["b@127.0.0.1"]["last_error"])
        assert c.inboxes["b@127.0.0.1"] == []

    run(with_cluster(test)())


class FutureTransport(Transport):
    def _hello(self) -> Hello:
        hello = super()._hello()
        return Hello(hello.version + 1, hello.cluster, hello.node, hello.nonce)


def test_another_protocol_version_is_refused() -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1", cls=FutureTransport)
        with pytest.raises(HandshakeRefused, match="protocol version") as refused:
            await a.probe(b.address)
        assert refused.value.reason is Refusal.VERSION
        with pytest.raises(HandshakeRefused, match="protocol version"):
            await b.probe(a.address)

    run(with_cluster(test)())


def test_probe_reports_unreachable_and_foreign_endpoints() -> None:
    async def http_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        with pytest.raises(PeerUnreachable, match="cannot connect"):
            await a.probe(f"127.0.0.1:{free_port()}")
        with pytest.raises(PeerUnreachable, match="malformed inter-node address"):
            await a.probe("no-port-here")
        server = await asyncio.start_server(http_like, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(HandshakeRefused) as refused:
                await a.probe(f"127.0.0.1:{port}")
            assert refused.value.reason is Refusal.NOT_A_PEER
        finally:
            server.close()
            await server.wait_closed()

    run(with_cluster(test)())


# --- reconnecting -----------------------------------------------------------------------------


def test_messages_sent_after_a_peer_restarts_arrive() -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1")
        a.send("b@127.0.0.1", Ping("before"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 1)
        port = b.port
        await b.close()
        await eventually(lambda: not a.stats()["b@127.0.0.1"]["connected"])
        a.send("b@127.0.0.1", Ping("while down"))
        c.inboxes["b@127.0.0.1"].clear()
        await c.start("b@127.0.0.1", port=port)
        for i in range(10):
            a.send("b@127.0.0.1", Ping(f"after {i}"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 11)
        got = [m.sender for _, m in c.inboxes["b@127.0.0.1"]]
        assert got == ["while down"] + [f"after {i}" for i in range(10)]
        assert a.stats()["b@127.0.0.1"]["connected"]

    run(with_cluster(test)())


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(random.Random(3))
    delays = [backoff.next_delay() for _ in range(12)]
    assert pacing.BACKOFF_MIN_S / 2 <= delays[0] <= pacing.BACKOFF_MIN_S
    assert all(pacing.BACKOFF_MAX_S / 2 <= d <= pacing.BACKOFF_MAX_S for d in delays[-4:])
    backoff.reset()
    assert backoff.next_delay() <= pacing.BACKOFF_MIN_S


# --- bounded queues and frame limits ----------------------------------------------------------


def test_a_full_queue_drops_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "sapwood.transport")

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        c.addresses["gone@127.0.0.1"] = f"127.0.0.1:{free_port()}"
        extra = 25
        for i in range(tmod.MAX_QUEUED_MESSAGES + extra):
            a.send("gone@127.0.0.1", Ping(str(i)))
        stats = a.stats()["gone@127.0.0.1"]
        assert stats["queued"] == tmod.MAX_QUEUED_MESSAGES
        assert stats["dropped"] == extra
        assert not stats["connected"]

    run(with_cluster(test)())
    full = [r for r in caplog.records if "send queue to gone@127.0.0.1 is full" in r.getMessage()]
    assert len(full) == 1  # rate-limited: one line for the whole burst


def test_the_queue_is_bounded_in_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "MAX_QUEUED_BYTES", 10_000)

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        c.addresses["gone@127.0.0.1"] = f"127.0.0.1:{free_port()}"
        huge = HandoffBatch(1, "a@127.0.0.1", 0, 1, [(b"k", b"v" * 50_000)], True)
        a.send("gone@127.0.0.1", huge)  # an empty queue takes one message of any legal size
        a.send("gone@127.0.0.1", Ping("no room"))
        assert a.stats()["gone@127.0.0.1"]["dropped"] == 1
        assert a.stats()["gone@127.0.0.1"]["queued"] == 1

    run(with_cluster(test)())


def test_a_message_over_the_frame_limit_is_not_sent(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(codec, "MAX_FRAME_BYTES", 10_000)

    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        await c.start("b@127.0.0.1")
        a.send("b@127.0.0.1", HandoffBatch(1, "a@127.0.0.1", 0, 1, [(b"k", b"v" * 20_000)], True))
        a.send("b@127.0.0.1", Ping("small"))
        await eventually(lambda: len(c.inboxes["b@127.0.0.1"]) == 1)
        assert c.inboxes["b@127.0.0.1"][0][1] == Ping("small")
        assert a.stats()["b@127.0.0.1"]["dropped"] == 1

    run(with_cluster(test)())
    assert any("HandoffBatch encodes to" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("bad", ["oversized", "garbage"])
def test_a_bad_incoming_frame_closes_the_connection(bad: str, loop: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def test(c: Cluster) -> None:
        a = await c.start("a@127.0.0.1")
        b = await c.start("b@127.0.0.1")
        reader, writer, _ = await a._open(b.address, expect="b@127.0.0.1")
        try:
            if bad == "oversized":
                writer.write(FRAME_HEADER.pack(codec.MAX_FRAME_BYTES + 1))
            else:
                writer.write(codec.encode_frame(b"\xc1 not msgpack"))
            assert await reader.read(100) == b""  # b hung up
        finally:
            writer.close()
        assert c.inboxes["b@127.0.0.1"] == []

    run(with_cluster(test)(), loop)
    closing = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("closing the connection from a@127.0.0.1")]
    assert closing and ("limit" in closing[0] if bad == "oversized" else "malformed" in closing[0])


# --- the secret -------------------------------------------------------------------------------


def test_a_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path / "data", None)
    path = tmp_path / "data" / SECRET_FILE_NAME
    assert len(secret) == 64 and bytes.fromhex(secret.decode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path / "data", None) == secret
    assert load_or_create_secret(tmp_path / "other", None) != secret


def test_a_given_secret_file_is_used_and_checked(tmp_path: Path) -> None:
    given = tmp_path / "shared.secret"
    given.write_text("  a shared secret for the whole cluster\n")
    assert load_or_create_secret(tmp_path / "data", given) == b"a shared secret for the whole cluster"
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()
    with pytest.raises(SecretError, match="does not exist"):
        load_or_create_secret(tmp_path / "data", tmp_path / "missing.secret")
    (tmp_path / "empty.secret").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        load_or_create_secret(tmp_path / "data", tmp_path / "empty.secret")


# --- wiring into a node -----------------------------------------------------------------------


def test_attach_transport_routes_a_nodes_messages(tmp_path: Path) -> None:
    from sapwood.node.node import Node, NodeConfig

    async def test() -> None:
        config = NodeConfig(data_dir=tmp_path / "n1", name="n1@127.0.0.1", cluster_port=0)
        node = Node(config)
        transport = await attach_transport(node, config)
        try:
            assert node.send_remote == transport.send
            assert transport.port > 0
            assert (tmp_path / "n1" / SECRET_FILE_NAME).exists()
            peer = Transport("n2@127.0.0.1", "sapwood", load_or_create_secret(tmp_path / "n1"),
                             lambda _: None, lambda *_: None)
            assert await peer.probe(transport.address) == "n1@127.0.0.1"
            await peer.close()
        finally:
            await transport.close()
            node.close()

    run(test())
