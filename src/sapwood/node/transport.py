"""asyncio TCP between nodes: one outbound connection per peer, authenticated, with bounded queues.

Every peer this node sends to gets a dialer task: it connects (backing off exponentially while the
peer is unreachable) and shakes hands; while connected, the peer's `PeerOutbox` writes what each
loop turn queued (see `sapwood.node.outbox`). Connections from peers are accepted and
authenticated, then read by a protocol that decodes and delivers each chunk as the loop reads it
(no reader task to wake, no stream buffer in between); their messages reach `on_message` in
the order they were sent. Each direction of a pair has its own connection, so a node only ever
writes to connections it dialled and a reconnect never races another writer.

Sending never blocks: a message joins the peer's bounded queue or, when that is full, is dropped
with a rate-limited warning. The protocols above tolerate loss (requests time out, handoffs
retry), so dropping is safer than buffering without bound for a peer that is down or slow.

Handshake (client = the dialling side), each step one frame:
  client -> hello(version, cluster, node, nonce)
  server -> hello, proof(server)          proof = HMAC-SHA256(secret, role, both nonces, names)
  client -> proof(client)
  server -> verdict(ok | refusal)
Either side refuses a wrong version or cluster name from the hellos and a wrong secret from the
proofs, and logs the reason; `probe` raises it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NoReturn

from sapwood.node.outbox import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    PeerOutbox,
    PeerState,
)
from sapwood.node.pacing import Backoff, LogThrottle, skipped_suffix
from sapwood.node.secret import load_or_create_secret
from sapwood.wire.codec import (
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    MAX_HANDSHAKE_FRAME_BYTES,
    PROTOCOL_VERSION,
    CodecError,
    FrameDecoder,
    FrameTooLarge,
    ObjectDecoder,
    decode_message,
    encode_frame,
    frame_message,
)
from sapwood.wire.handshake import (
    SECRET_HINT,
    Hello,
    Refusal,
    Role,
    check_hello,
    decode_hello,
    decode_proof,
    decode_verdict,
    encode_hello,
    encode_proof,
    encode_verdict,
    handshake_proof,
    proof_matches,
)

if TYPE_CHECKING:
    from sapwood.node.node import Node, NodeConfig

log = logging.getLogger("sapwood.transport")

READ_CHUNK_BYTES = 256 * 1024
# Messages of one read handed to the node as one event (their writes share one commit); a read
# holding more is handed over in several events of at most this many.
MAX_DELIVERY_BATCH = 512
CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 5.0
NONCE_BYTES = 16


class TransportError(Exception):
    pass


class PeerUnreachable(TransportError):
    """No connection could be made (refused, timed out, closed during the handshake, no address)."""


class HandshakeRefused(TransportError):
    """The peer is reachable but may not talk to this node: `reason` says why."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Transport:
    """Authenticated, framed message passing between the nodes of one cluster."""

    def __init__(
        self,
        node_name: str,
        cluster_name: str,
        secret: bytes,
        address_of: Callable[[str], str | None],
        on_message: Callable[[str, Any], None],
        *,
        rng: random.Random | None = None,
        on_batch: Callable[[str, list[Any]], None] | None = None,
        decode_object: ObjectDecoder | None = None,
    ) -> None:
        self.node_name = node_name
        self.cluster_name = cluster_name
        self._secret = secret
        self._address_of = address_of
        self._on_message = on_message
        self._on_batch = on_batch
        self._decode_object = decode_object
        self._rng = rng or random.Random()
        self._peers: dict[str, PeerOutbox] = {}
        self._received: dict[str, int] = {}
        self._inbound: dict[str, asyncio.StreamWriter] = {}
        self._reading: dict[asyncio.StreamWriter, _InboundFrames] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._throttle = LogThrottle()
        self._closed = False
        self.host = ""
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Listen for peers on host:port (port 0: any free port, then in `self.port`)."""
        self._server = await asyncio.start_server(self._accept, host, port,
                                                  limit=READ_CHUNK_BYTES)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("inter-node listener for %s on %s", self.node_name, self.address)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        tasks += list(self._handlers)
        for task in tasks:
            task.cancel()
        for writer in list(self._inbound.values()):
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let the closed transports run their close callbacks

    # --- sending ------------------------------------------------------------------------------

    def send(self, to: str, msg: Any) -> None:
        """Queue `msg` for node `to`; never blocks. A full queue drops the message (and says so).

        Call it from the event loop's thread. The message is encoded here, so the queue limits
        count real bytes and an unencodable message is reported at once.
        """
        if self._closed:
            return
        if to == self.node_name:
            asyncio.get_running_loop().call_soon(self._deliver, to, msg)
            return
        peer = self._peers.get(to) or self._add_peer(to)
        try:
            frame = frame_message(msg)
        except CodecError as exc:
            peer.dropped += 1
            skipped = self._throttle.allow(("unsendable", type(msg)))
            if skipped is not None:
                log.error("cannot send %s to %s: %s%s", type(msg).__name__, to, exc,
                          skipped_suffix(skipped))
            return
        if not peer.admits(len(frame)):
            peer.dropped += 1
            self._warn_full(peer, msg)
            return
        peer.enqueue(frame)

    def _warn_full(self, peer: PeerOutbox, msg: Any) -> None:
        skipped = self._throttle.allow((peer.name, "full"))
        if skipped is None:
            return
        log.warning(
            "send queue to %s is full (%d messages, %d bytes; limits %d messages, %d bytes): "
            "dropping %s; the peer is %s%s%s", peer.name, len(peer.queue), peer.queued_bytes,
            MAX_QUEUED_MESSAGES, MAX_QUEUED_BYTES, type(msg).__name__, peer.state.value,
            f" ({peer.last_error})" if peer.last_error else "", skipped_suffix(skipped))

    def _add_peer(self, name: str) -> PeerOutbox:
        peer = PeerOutbox(name)
        self._peers[name] = peer
        peer.task = asyncio.get_running_loop().create_task(
            self._run_peer(peer), name=f"sapwood-peer-{name}")
        return peer

    async def _run_peer(self, peer: PeerOutbox) -> None:
        backoff = Backoff(self._rng)
        while True:
            while not peer.queue:
                peer.state = PeerState.IDLE
                await peer.wait_for_signal()
            peer.state = PeerState.CONNECTING
            try:
                reader, writer = await self._dial(peer.name)
            except TransportError as exc:
                peer.last_error = str(exc)
                self._warn_dial(peer.name, exc)
            else:
                backoff.reset()
                await self._pump(peer, reader, writer)
            peer.state = PeerState.BACKOFF
            await asyncio.sleep(backoff.next_delay())

    def _warn_dial(self, name: str, exc: TransportError) -> None:
        kind = exc.reason if isinstance(exc, HandshakeRefused) else "unreachable"
        skipped = self._throttle.allow((name, kind))
        if skipped is not None:
            log.warning("cannot connect to %s: %s%s", name, exc, skipped_suffix(skipped))

    async def _dial(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        addr = self._address_of(name)
        if addr is None:
            raise PeerUnreachable(f"no known inter-node address for {name}")
        reader, writer, _ = await self._open(addr, expect=name)
        return reader, writer

    async def _pump(self, peer: PeerOutbox, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it is lost: `flush` writes each turn's frames; this task
        writes what was queued before the connection and whatever a full buffer held back."""
        peer.state = PeerState.CONNECTED
        peer.last_error = ""
        peer.lost = False
        peer.writer = writer
        watcher = asyncio.get_running_loop().create_task(self._watch_for_close(peer, reader))
        try:
            while not peer.lost:
                if not peer.queue:
                    await peer.wait_for_signal()
                    continue
                peer.flush()
                await writer.drain()  # waits only while the buffer is over its high mark
        except (ConnectionError, OSError) as exc:
            peer.last_error = f"connection lost: {exc}"
            log.info("connection to %s lost: %s", peer.name, exc)
        finally:
            peer.writer = None
            watcher.cancel()
            writer.close()

    async def _watch_for_close(self, peer: PeerOutbox, reader: asyncio.StreamReader) -> None:
        # Peers never write on a connection they accepted, so any read result means it is over.
        with suppress(ConnectionError, OSError):
            await reader.read(READ_CHUNK_BYTES)
        peer.lost = True
        peer.signal.set()

    # --- connecting and the handshake ---------------------------------------------------------

    async def probe(self, addr: str) -> str:
        """Connect to `addr` and shake hands; returns the node name found there.

        Raises PeerUnreachable or HandshakeRefused (wrong cluster name, secret or version).
        """
        _, writer, hello = await self._open(addr, expect=None)
        writer.close()
        with suppress(ConnectionError, OSError):
            await writer.wait_closed()
        return hello.node

    async def _open(self, addr: str, expect: str | None
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Hello]:
        host, port = parse_address(addr)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_CHUNK_BYTES), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise PeerUnreachable(f"connecting to {addr} timed out") from None
        except OSError as exc:
            raise PeerUnreachable(f"cannot connect to {addr}: {exc.strerror or exc}") from None
        _set_nodelay(writer)
        try:
            hello = await asyncio.wait_for(self._client_handshake(reader, writer, expect),
                                           HANDSHAKE_TIMEOUT_S)
        except TimeoutError:
            writer.close()
            raise PeerUnreachable(f"{addr} did not finish the handshake within "
                                  f"{HANDSHAKE_TIMEOUT_S} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            writer.close()
            raise PeerUnreachable(f"{addr} closed the connection during the handshake") from None
        except CodecError as exc:
            writer.close()
            raise HandshakeRefused(Refusal.NOT_A_PEER, f"{addr}: {exc}") from None
        except BaseException:
            writer.close()
            raise
        return reader, writer, hello

    def _hello(self) -> Hello:
        return Hello(PROTOCOL_VERSION, self.cluster_name, self.node_name,
                     secrets.token_bytes(NONCE_BYTES))

    async def _client_handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                expect: str | None) -> Hello:
        mine = self._hello()
        writer.write(encode_frame(encode_hello(mine)))
        theirs = decode_hello(await _read_handshake_frame(reader))
        mismatch = check_hello(mine, theirs)
        if mismatch is not None:
            raise HandshakeRefused(*mismatch)
        if expect is not None and theirs.node != expect:
            raise HandshakeRefused(Refusal.WRONG_NODE,
                                   f"{theirs.node} answers at the address of {expect}")
        their_proof = decode_proof(await _read_handshake_frame(reader))
        # Our proof goes out even if theirs is wrong, so the server can log the reason too.
        writer.write(encode_frame(encode_proof(
            handshake_proof(self._secret, Role.CLIENT, mine, theirs))))
        expected = handshake_proof(self._secret, Role.SERVER, mine, theirs)
        if not proof_matches(expected, their_proof):
            raise HandshakeRefused(Refusal.SECRET, f"{theirs.node} does not share the cluster "
                                                   f"secret of {mine.node}; {SECRET_HINT}")
        refusal, detail = decode_verdict(await _read_handshake_frame(reader))
        if refusal is not None:
            raise HandshakeRefused(refusal, detail)
        return theirs

    async def _server_handshake(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> Hello:
        theirs = decode_hello(await _read_handshake_frame(reader))
        mine = self._hello()
        proof = handshake_proof(self._secret, Role.SERVER, theirs, mine)
        writer.write(encode_frame(encode_hello(mine)) + encode_frame(encode_proof(proof)))
        mismatch = check_hello(mine, theirs)
        if mismatch is not None:
            await _refuse(writer, *mismatch)
        their_proof = decode_proof(await _read_handshake_frame(reader))
        if not proof_matches(handshake_proof(self._secret, Role.CLIENT, theirs, mine), their_proof):
            await _refuse(writer, Refusal.SECRET, f"{theirs.node} does not share the cluster "
                                                  f"secret of {mine.node}; {SECRET_HINT}")
        writer.write(encode_frame(encode_verdict(None)))
        # From here on the peer may send messages: the protocol reading them takes over the
        # connection in this same step, before the loop can read any of them into the stream.
        self._read_frames(theirs.node, reader, writer)
        await writer.drain()
        return theirs

    # --- receiving ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        where = _describe_peer(writer)
        try:
            _set_nodelay(writer)
            hello = await self._authenticate(reader, writer, where)
            if hello is not None:
                await self._read_messages(hello.node, writer)
        except asyncio.CancelledError:
            # Only close() cancels a handler. Ending quietly keeps asyncio's stream callback from
            # reporting the cancellation as an error.
            pass
        finally:
            writer.close()
            self._forget_inbound(writer)
            if task is not None:
                self._handlers.discard(task)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            where: str) -> Hello | None:
        try:
            return await asyncio.wait_for(self._server_handshake(reader, writer),
                                          HANDSHAKE_TIMEOUT_S)
        except HandshakeRefused as exc:
            self._warn_refused(where, exc)
        except CodecError as exc:
            self._warn_refused(where, HandshakeRefused(Refusal.NOT_A_PEER, str(exc)))
        except TimeoutError:
            log.info("connection from %s: no handshake within %s s", where, HANDSHAKE_TIMEOUT_S)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            # A client that refused us closes here; it logs its own reason.
            log.debug("connection from %s closed during the handshake: %r", where, exc)
        return None

    def _warn_refused(self, where: str, exc: HandshakeRefused) -> None:
        skipped = self._throttle.allow(("refused", where.rsplit(":", 1)[0], exc.reason))
        if skipped is not None:
            log.warning("refused a connection from %s: %s%s", where, exc, skipped_suffix(skipped))

    def _read_frames(self, name: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Hand the authenticated connection from `name` to an `_InboundFrames` protocol."""
        old = self._inbound.get(name)
        if old is not None:
            old.close()  # the peer dialled again, so its previous connection is dead or dying
        self._inbound[name] = writer
        conn = writer.transport
        protocol = _InboundFrames(self, name, conn)
        self._reading[writer] = protocol
        early = _buffered(reader)
        conn.set_protocol(protocol)
        if early:
            protocol.data_received(early)

    async def _read_messages(self, name: str, writer: asyncio.StreamWriter) -> None:
        """Wait for the connection from `name` to end (its protocol does the reading)."""
        protocol = self._reading.get(writer)
        if protocol is not None:
            exc = await protocol.ended
            if exc is not None:
                log.info("connection from %s lost: %s", name, exc)

    def _forget_inbound(self, writer: asyncio.StreamWriter) -> None:
        """The connection is over (or never got past the handshake)."""
        protocol = self._reading.pop(writer, None)
        if protocol is not None and self._inbound.get(protocol.name) is writer:
            del self._inbound[protocol.name]

    def _receive(self, name: str, decoder: FrameDecoder, data: bytes) -> bool:
        """Decode and deliver the frames completed by `data`; False if the stream is bad (the
        messages before the bad frame still count, and the connection is to be closed)."""
        msgs: list[Any] = []
        try:
            for payload in decoder.feed(data):
                msgs.append(decode_message(payload, self._decode_object))
        except CodecError as exc:
            log.error("closing the connection from %s: %s", name, exc)
            return False
        finally:
            if msgs:
                self._deliver_all(name, msgs)
        return True

    def _deliver_all(self, sender: str, msgs: list[Any]) -> None:
        """The messages of one read, in order: as batches when the node takes them so."""
        if self._on_batch is None or len(msgs) == 1:
            for msg in msgs:
                self._deliver(sender, msg)
            return
        self._received[sender] = self._received.get(sender, 0) + len(msgs)
        for start in range(0, len(msgs), MAX_DELIVERY_BATCH):
            batch = msgs[start:start + MAX_DELIVERY_BATCH]
            try:
                self._on_batch(sender, batch)
            except Exception:
                log.exception("handling %d messages from %s failed", len(batch), sender)

    def _deliver(self, sender: str, msg: Any) -> None:
        self._received[sender] = self._received.get(sender, 0) + 1
        try:
            self._on_message(sender, msg)
        except Exception:
            log.exception("handling %s from %s failed", type(msg).__name__, sender)

    # --- introspection ------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per peer: outbound state and counters, and messages received from it."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(self._peers) | set(self._received)):
            peer = self._peers.get(name) or PeerOutbox(name)
            out[name] = {
                "connected": peer.state is PeerState.CONNECTED,
                "state": peer.state.value,
                "inbound": name in self._inbound,
                "queued": len(peer.queue),
                "queued_bytes": peer.queued_bytes,
                "sent": peer.sent,
                "received": self._received.get(name, 0),
                "dropped": peer.dropped,
                "last_error": peer.last_error,
            }
        return out


class _InboundFrames(asyncio.Protocol):
    """Reads one authenticated peer's connection: every chunk the loop reads is split into
    frames, decoded and delivered at once, in order."""

    def __init__(self, owner: Transport, name: str, conn: asyncio.BaseTransport) -> None:
        self._owner = owner
        self.name = name
        self._conn = conn
        self._decoder = FrameDecoder(MAX_FRAME_BYTES)
        self._open = True
        # The connection's end (its error, if any); the accepting task waits for it.
        self.ended: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._open and not self._owner._receive(self.name, self._decoder, data):
            self._open = False
            self._conn.close()

    def eof_received(self) -> bool:
        return False  # the peer hung up: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if not self.ended.done():
            self.ended.set_result(exc)


def _buffered(reader: asyncio.StreamReader) -> bytes:
    """Bytes the stream read ahead of the handshake's last frame. None in practice (the peer
    sends nothing between its proof and our verdict), but taken over rather than lost."""
    buffer = getattr(reader, "_buffer", None)
    if not buffer:
        return b""
    data = bytes(buffer)
    buffer.clear()
    return data


async def _read_handshake_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
    if size > MAX_HANDSHAKE_FRAME_BYTES:
        raise FrameTooLarge(f"a handshake frame of {size} bytes (limit "
                            f"{MAX_HANDSHAKE_FRAME_BYTES}): not a sapwood inter-node endpoint")
    return await reader.readexactly(size)


async def _refuse(writer: asyncio.StreamWriter, reason: Refusal, detail: str) -> NoReturn:
    writer.write(encode_frame(encode_verdict(reason, detail)))
    with suppress(ConnectionError, OSError):
        await writer.drain()
    raise HandshakeRefused(reason, detail)


def parse_address(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerUnreachable(f"malformed inter-node address {addr!r}: expected host:port")
    return host.strip("[]"), int(port)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _describe_peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def attach_transport(node: Node, config: NodeConfig) -> Transport:
    """Start the inter-node listener of `node` and route its outgoing messages through it."""
    secret = load_or_create_secret(config.data_dir, config.secret_file)
    transport = Transport(node.name, config.cluster_name, secret, node.core.address_of,
                          node.deliver, rng=random.Random(config.seed),
                          on_batch=node.deliver_batch,
                          decode_object=node.service.decode_cache.decode)
    await transport.start(config.cluster_host, config.cluster_port)
    node.send_remote = transport.send
    return transport
