"""Bytes <-> messages: msgpack with extension types, length-prefixed frames, the handshake's pieces.

Every class that crosses the wire is registered with a numeric code. A registered object travels
as one msgpack extension value holding `[code, fields]`, so messages nest (a KVObject inside a
FetchReply, a BKey inside a Fetch) and come back as the very classes that were sent. Tuples, sets
and frozensets have their own extension types, so a tuple never comes back as a list: values are
rebuilt exactly as they were built, whatever their declared type.

Codes live in one registry: 1-9 values, 10-49 KV, cluster and handoff messages, 50-99 client
requests and queries, 100-199 consensus, 200-299 CRDT operations. Adding a class is one line in
the table at the bottom (or one `register` call from the module that owns it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack

from sapwood.core import cluster, failure, handoff, kvobject, messages, requests
from sapwood.core.causal import Dot
from sapwood.core.crdt import ops
from sapwood.core.index import IndexQuery
from sapwood.core.ring import BKey

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024 * 1024  # above the 50 MB object limit, with room for its envelope
MAX_HANDSHAKE_FRAME_BYTES = 4096
MAX_CODE = 65_535
PACK_BUFFER_BYTES = 1024  # grows as needed
FRAME_HEADER = struct.Struct(">I")

# msgpack extension type numbers (0-127). Registered classes share EXT_OBJECT, so the number of
# message classes is not bounded by msgpack's 128 extension types.
EXT_TUPLE = 1
EXT_FROZENSET = 2
EXT_SET = 3
EXT_OBJECT = 4


class CodecError(ValueError):
    """Bytes that cannot become a message, or a message that cannot become bytes."""


class EncodeError(CodecError):
    pass


class DecodeError(CodecError):
    pass


class FrameTooLarge(CodecError):
    pass


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    cls: type
    code: int
    to_wire: Callable[[Any], Any]
    from_wire: Callable[[Any], Any]


_BY_CLASS: dict[type, _Entry] = {}
_BY_CODE: dict[int, _Entry] = {}


def register(
    cls: type,
    code: int,
    *,
    to_wire: Callable[[Any], Any] | None = None,
    from_wire: Callable[[Any], Any] | None = None,
) -> None:
    """Make `cls` encodable under `code` (1..MAX_CODE, unique).

    Dataclasses and NamedTuples travel field by field in declaration order; any other class
    needs `to_wire` (object -> msgpack-able value) and `from_wire` (that value -> object).
    """
    if not 1 <= code <= MAX_CODE:
        raise ValueError(f"wire code {code} for {cls.__name__} is outside 1..{MAX_CODE}")
    taken = _BY_CODE.get(code)
    if taken is not None and taken.cls is not cls:
        raise ValueError(f"wire code {code} is already {taken.cls.__qualname__}")
    known = _BY_CLASS.get(cls)
    if known is not None and known.code != code:
        raise ValueError(f"{cls.__qualname__} is already registered as wire code {known.code}")
    if to_wire is None or from_wire is None:
        to_wire, from_wire = _field_codec(cls)
    entry = _Entry(cls, code, to_wire, from_wire)
    _BY_CLASS[cls] = entry
    _BY_CODE[code] = entry


def registered_classes() -> dict[type, int]:
    return {cls: entry.code for cls, entry in _BY_CLASS.items()}


def _field_codec(cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if dataclasses.is_dataclass(cls):
        fields = dataclasses.fields(cls)
        if any(not f.init for f in fields):
            raise ValueError(f"{cls.__qualname__} has fields outside __init__; give to_wire/from_wire")
        names = tuple(f.name for f in fields)
    elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
        names = tuple(cls._fields)
    else:
        raise ValueError(f"{cls.__qualname__} is neither a dataclass nor a NamedTuple; "
                         "give to_wire/from_wire")

    if len(names) == 1:
        (name,) = names

        def to_wire(obj: Any) -> list[Any]:
            return [getattr(obj, name)]
    else:
        fields_of = operator.attrgetter(*names)

        def to_wire(obj: Any) -> list[Any]:
            return list(fields_of(obj))

    def from_wire(values: Any) -> Any:
        return cls(*values)

    return to_wire, from_wire


# --- values <-> bytes -------------------------------------------------------------------------


def _default(obj: Any) -> msgpack.ExtType:
    entry = _BY_CLASS.get(type(obj))
    if entry is not None:
        return msgpack.ExtType(EXT_OBJECT, _pack([entry.code, entry.to_wire(obj)]))
    if type(obj) is tuple:
        return msgpack.ExtType(EXT_TUPLE, _pack(list(obj)))
    if type(obj) is frozenset:
        return msgpack.ExtType(EXT_FROZENSET, _pack(list(obj)))
    if type(obj) is set:
        return msgpack.ExtType(EXT_SET, _pack(list(obj)))
    if type(obj) is int:
        raise EncodeError(f"integer {obj} is outside msgpack's range (-2**63 .. 2**64-1)")
    raise EncodeError(f"cannot encode a {type(obj).__qualname__}: register it in sapwood.wire.codec")


def _pack(value: Any) -> bytes:
    # strict_types: tuples and subclasses (NamedTuples, dict subclasses) reach _default instead
    # of silently becoming plain lists and dicts.
    # A small starting buffer: the default 256 KiB one costs an mmap per nested call.
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True,
                         buf_size=PACK_BUFFER_BYTES)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_OBJECT:
        return _decode_object(_unpack(data))
    if code == EXT_TUPLE:
        return tuple(_unpack(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpack(data))
    if code == EXT_SET:
        return set(_unpack(data))
    raise DecodeError(f"unknown msgpack extension type {code}")


def _decode_object(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise DecodeError("malformed object envelope")
    code, wire = value
    entry = _BY_CODE.get(code)
    if entry is None:
        raise DecodeError(f"unknown wire code {code!r}: the peer knows a message this node does not")
    try:
        return entry.from_wire(wire)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise DecodeError(f"malformed {entry.cls.__qualname__}: {exc}") from None


def _unpack(data: bytes) -> Any:
    # Peers are authenticated and Any-typed fields may carry non-string map keys.
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def encode_message(msg: Any) -> bytes:
    """A registered message -> msgpack bytes. EncodeError for anything unregistered inside."""
    if type(msg) not in _BY_CLASS:
        raise EncodeError(f"{type(msg).__qualname__} is not a registered message")
    try:
        return _pack(msg)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {type(msg).__qualname__}: {exc}") from None


def decode_message(data: bytes) -> Any:
    """msgpack bytes -> the registered message they encode. DecodeError for anything else."""
    try:
        msg = _unpack(data)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"malformed message ({type(exc).__name__}: {exc})") from None
    if type(msg) not in _BY_CLASS:
        raise DecodeError(f"a frame holds a {type(msg).__qualname__}, not a message")
    return msg


# --- frames -----------------------------------------------------------------------------------


def encode_frame(payload: bytes, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """4-byte big-endian length, then the payload."""
    if len(payload) > max_bytes:
        raise FrameTooLarge(f"a frame of {len(payload)} bytes exceeds the limit of {max_bytes}")
    return FRAME_HEADER.pack(len(payload)) + payload


def frame_message(msg: Any) -> bytes:
    payload = encode_message(msg)
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"{type(msg).__qualname__} encodes to {len(payload)} bytes; "
                            f"the frame limit is {MAX_FRAME_BYTES}")
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads; refuses an oversized frame by its header alone."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        end = len(buffer)
        header = FRAME_HEADER.size
        while end - pos >= header:
            (size,) = FRAME_HEADER.unpack_from(buffer, pos)
            if size > self.max_bytes:
                raise FrameTooLarge(
                    f"the peer announced a frame of {size} bytes; the limit is {self.max_bytes}")
            if end - pos - header < size:
                break
            frames.append(bytes(buffer[pos + header : pos + header + size]))
            pos += header + size
        if pos:
            del buffer[:pos]
        return frames


# --- handshake --------------------------------------------------------------------------------


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


# --- the vocabulary ---------------------------------------------------------------------------


def _register_core() -> None:
    register(kvobject.KVObject, 1, to_wire=kvobject.to_wire, from_wire=kvobject.from_wire)
    register(kvobject.Metadata, 2)
    register(Dot, 3)
    register(BKey, 4)
    for code, cls in (
        (10, messages.Fetch), (11, messages.FetchReply), (12, messages.CoordinatePut),
        (13, messages.CoordinatePutReply), (14, messages.Replicate), (15, messages.StoreAck),
        (16, messages.Reap), (17, messages.Fold), (18, messages.FoldReply),
        (19, messages.CoordinateUpdate),
        (30, cluster.Gossip), (31, cluster.AdminForward), (32, cluster.AdminReply),
        (33, cluster.AdminRequest), (34, failure.Ping),
        (40, handoff.HandoffBatch), (41, handoff.HandoffAck), (42, handoff.TransferComplete),
        (50, requests.ListKeys), (51, requests.ListBuckets), (52, IndexQuery),
        (53, requests.CoverageRequest), (54, requests.CoverageChunk),
        (55, requests.CoverageResult), (56, requests.GetRequest), (57, requests.GetResult),
        (58, requests.PutRequest), (59, requests.PutResult), (60, requests.DeleteRequest),
        (61, requests.DeleteResult), (62, requests.UpdateRequest),
        (200, ops.FieldKey), (201, ops.CounterOp), (202, ops.SetOp), (203, ops.HllOp),
        (204, ops.RegisterOp), (205, ops.FlagOp), (206, ops.MapOp),
    ):
        register(cls, code)


_register_core()
