"""The handshake that opens an inter-node connection: hellos (protocol version, cluster name,
node name, nonce), HMAC proofs of the shared cluster secret, and the server's verdict.

Hellos, proofs and verdicts are msgpack maps keyed by name, whose shape never changes, so nodes of
any two protocol versions can read each other's and refuse each other clearly.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum

import msgpack

from sapwood.wire.codec import DecodeError


class Refusal(Enum):
    """Why a connection was refused; the value is what both sides log."""

    VERSION = "protocol version mismatch"
    CLUSTER_NAME = "cluster name mismatch"
    SECRET = "wrong cluster secret"
    SAME_NAME = "the peer has this node's own name"
    WRONG_NODE = "unexpected node at that address"
    NOT_A_PEER = "not a sapwood inter-node endpoint"


class Role(Enum):
    CLIENT = b"sapwood-client"
    SERVER = b"sapwood-server"


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    cluster: str
    node: str
    nonce: bytes


def encode_hello(hello: Hello) -> bytes:
    # A map keyed by name: its shape never changes, so any version can read another's version.
    return msgpack.packb({"sapwood": hello.version, "cluster": hello.cluster,
                          "node": hello.node, "nonce": hello.nonce}, use_bin_type=True)


def decode_hello(data: bytes) -> Hello:
    try:
        fields = msgpack.unpackb(data, raw=False)
        hello = Hello(fields["sapwood"], fields["cluster"], fields["node"], fields["nonce"])
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not a sapwood hello: {exc}") from None
    if not (isinstance(hello.version, int) and isinstance(hello.cluster, str)
            and isinstance(hello.node, str) and isinstance(hello.nonce, bytes)):
        raise DecodeError("not a sapwood hello: malformed fields")
    return hello


def handshake_proof(secret: bytes, role: Role, client: Hello, server: Hello) -> bytes:
    """HMAC-SHA256 over both nonces and names; the role keeps one side's proof from being replayed
    as the other's."""
    mac = hmac.new(secret, role.value, hashlib.sha256)
    for part in (client.nonce, server.nonce, client.node.encode(), server.node.encode()):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()


def proof_matches(expected: bytes, received: bytes) -> bool:
    return hmac.compare_digest(expected, received)


def encode_proof(proof: bytes) -> bytes:
    return msgpack.packb({"proof": proof}, use_bin_type=True)


def decode_proof(data: bytes) -> bytes:
    try:
        proof = msgpack.unpackb(data, raw=False)["proof"]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed handshake proof: {exc}") from None
    if not isinstance(proof, bytes):
        raise DecodeError("malformed handshake proof")
    return proof


def encode_verdict(refusal: Refusal | None, detail: str = "") -> bytes:
    reason = None if refusal is None else refusal.name
    return msgpack.packb({"ok": refusal is None, "reason": reason, "detail": detail},
                         use_bin_type=True)


def decode_verdict(data: bytes) -> tuple[Refusal | None, str]:
    """(None, "") when accepted, else (why, the server's explanation)."""
    try:
        fields = msgpack.unpackb(data, raw=False)
        if fields["ok"]:
            return None, ""
        return Refusal[fields["reason"]], str(fields["detail"])
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed handshake verdict: {exc}") from None


def check_hello(mine: Hello, theirs: Hello) -> tuple[Refusal, str] | None:
    """Whether two hellos may talk at all (the secret is checked afterwards, by the proofs)."""
    if theirs.version != mine.version:
        return Refusal.VERSION, (f"{theirs.node} speaks protocol version {theirs.version}, "
                                 f"{mine.node} speaks {mine.version}")
    if theirs.cluster != mine.cluster:
        return Refusal.CLUSTER_NAME, (f"{theirs.node} is in cluster {theirs.cluster!r}, "
                                      f"{mine.node} in cluster {mine.cluster!r}")
    if theirs.node == mine.node:
        return Refusal.SAME_NAME, f"both ends are named {mine.node}"
    return None


SECRET_HINT = ("every node of a cluster needs the same secret: copy cluster.secret from a member's "
               "data directory, or start every node with the same --secret-file")
