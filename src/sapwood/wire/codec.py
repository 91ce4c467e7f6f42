"""Bytes <-> messages: msgpack documents and length-prefixed frames (the handshake that opens a
connection is in `sapwood.wire.handshake`).

Every class that crosses the wire is registered with a numeric code. A message is turned into
plain msgpack arrays in Python and then into bytes by a single msgpack.packb (and back by a single
unpackb): a registered object is the array `[code, field, field, ...]`, so messages nest (a
KVObject inside a FetchReply, a BKey inside a Fetch) and come back as the very classes that were
sent.

A field whose type hint promises plain msgpack data (None, bool, int, float, str, bytes, and lists
and dicts of those) travels as it is. Every other field (Any, tuples, sets, registered classes,
unions with them) is tagged: arrays are headed by a registered code or by a negative TAG_* for
lists, tuples, sets and frozensets, so a tuple never comes back as a list. Values are rebuilt
exactly as they were built; a plain-hinted field holding anything but plain data is an
EncodeError, never a silently different value.

Codes live in one registry: 1-9 values, 10-49 KV, cluster and handoff messages, 50-99 client
requests and queries, 100-199 consensus, 200-299 CRDT operations. Adding a class is one line in
the table at the bottom (or one `register` call from the module that owns it).
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from sapwood.core import (
    cluster,
    consensus,
    ensemble_messages,
    failure,
    handoff,
    kvobject,
    messages,
    requests,
)
from sapwood.core.causal import Dot
from sapwood.core.crdt import ops
from sapwood.core.index import IndexQuery
from sapwood.core.ring import BKey

# 3: a KVObject travels as its stored bytes (kvobject.encode), one msgpack bin.
# 2: one msgpack document per message with tagged arrays (1 nested an ExtType per object).
PROTOCOL_VERSION = 3
MAX_FRAME_BYTES = 64 * 1024 * 1024  # above the 50 MB object limit, with room for its envelope
MAX_HANDSHAKE_FRAME_BYTES = 4096
MAX_CODE = 65_535
PACK_BUFFER_BYTES = 1024  # grows as needed; the default 256 KiB costs an mmap per message
# The shared packer keeps the buffer its largest message grew; one that grew past this is
# replaced, so a large message (a handoff batch) does not pin its size in memory.
MAX_KEPT_PACK_BUFFER_BYTES = 1024 * 1024
FRAME_HEADER = struct.Struct(">I")

# Heads of tagged arrays that are not registered objects (those are headed by their code >= 1).
TAG_LIST = -1
TAG_TUPLE = -2
TAG_SET = -3
TAG_FROZENSET = -4
TAG_DICT_ITEMS = -5  # a dict with a key msgpack cannot carry as a map key (a tuple, an object)

_PLAIN_SCALARS: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes})


class CodecError(ValueError):
    """Bytes that cannot become a message, or a message that cannot become bytes."""


class EncodeError(CodecError):
    pass


class DecodeError(CodecError):
    pass


class FrameTooLarge(CodecError):
    pass


# --- the registry -----------------------------------------------------------------------------

Encoder = Callable[[Any], Any]
Decoder = Callable[[list[Any]], Any]


@dataclass(frozen=True, slots=True)
class _Entry:
    cls: type
    code: int
    encode: Encoder  # object -> [code, ...]
    decode: Decoder  # [code, ...] -> object


_BY_CLASS: dict[type, _Entry] = {}
_BY_CODE: dict[int, _Entry] = {}
# Flat tables for the hot paths: registered classes and the tagged containers together.
_ENCODERS: dict[type, Encoder] = {}
_DECODERS: dict[int, Decoder] = {}
_TAG_NAMES: dict[int, str] = {}


def register(
    cls: type,
    code: int,
    *,
    to_wire: Callable[[Any], Any] | None = None,
    from_wire: Callable[[Any], Any] | None = None,
    plain: bool = False,
) -> None:
    """Make `cls` encodable under `code` (1..MAX_CODE, unique).

    Dataclasses and NamedTuples travel field by field in declaration order, each field plain or
    tagged by its type hint; any other class needs `to_wire` (object -> msgpack-able value) and
    `from_wire` (that value -> object). `plain=True` says to_wire returns only plain data (None,
    bool, int, float, str, bytes, lists, dicts with such keys), which then travels unwalked.
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
        if plain:
            raise ValueError(f"plain= describes what to_wire returns; {cls.__qualname__} has none")
        encode, decode = _field_codec(cls, code)
    else:
        encode, decode = _custom_codec(code, to_wire, from_wire, plain)
    entry = _Entry(cls, code, encode, decode)
    _BY_CLASS[cls] = entry
    _BY_CODE[code] = entry
    _ENCODERS[cls] = encode
    _DECODERS[code] = decode
    _TAG_NAMES[code] = cls.__qualname__


def registered_classes() -> dict[type, int]:
    return {cls: entry.code for cls, entry in _BY_CLASS.items()}


def _field_names(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        fields = dataclasses.fields(cls)
        if any(not f.init for f in fields):
            raise ValueError(f"{cls.__qualname__} has fields outside __init__; give to_wire/from_wire")
        return tuple(f.name for f in fields)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return tuple(cls._fields)
    raise ValueError(f"{cls.__qualname__} is neither a dataclass nor a NamedTuple; "
                     "give to_wire/from_wire")


def _plain_fields(cls: type, names: tuple[str, ...]) -> tuple[bool, ...]:
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError, SyntaxError):
        # An annotation only a type checker can resolve: tagging every field is always exact.
        return (False,) * len(names)
    return tuple(_is_plain(hints.get(name, Any)) for name in names)


def _is_plain(hint: Any) -> bool:
    """Whether every value of this type is plain msgpack data that unpacks as itself."""
    if isinstance(hint, type) and hint in _PLAIN_SCALARS:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return all(_is_plain(arg) for arg in args)
    if origin is list:
        return len(args) == 1 and _is_plain(args[0])
    if origin is dict:
        key = args[0] if len(args) == 2 else None
        return isinstance(key, type) and key in _PLAIN_SCALARS and _is_plain(args[1])
    return False


def _field_codec(cls: type, code: int) -> tuple[Encoder, Decoder]:
    """Straight-line encode and decode functions for one class, generated once at registration
    (as dataclasses generates __init__): no loop and no type test per field on the hot path."""
    names = _field_names(cls)
    plain = _plain_fields(cls, names)
    params = [f"f{i}" for i in range(len(names))]
    values = [f"obj.{name}" if is_plain else f"encode_any(obj.{name})"
              for name, is_plain in zip(names, plain, strict=True)]
    args = [param if is_plain else f"decode_any({param})"
            for param, is_plain in zip(params, plain, strict=True)]
    source = (f"def encode(obj):\n    return [{', '.join([str(code), *values])}]\n"
              f"def decode(wire):\n    {', '.join(['_code', *params])}, = wire\n"
              f"    return cls({', '.join(args)})\n")
    namespace: dict[str, Any] = {"cls": cls, "encode_any": _encode_any, "decode_any": _decode_any}
    exec(compile(source, f"<wire codec of {cls.__qualname__}>", "exec"), namespace)
    encode, decode = namespace["encode"], namespace["decode"]
    encode.__qualname__ = f"encode_{cls.__name__}"
    decode.__qualname__ = f"decode_{cls.__name__}"
    return encode, decode


def _custom_codec(code: int, to_wire: Callable[[Any], Any], from_wire: Callable[[Any], Any],
                  plain: bool) -> tuple[Encoder, Decoder]:
    if plain:
        def encode(obj: Any) -> list[Any]:
            return [code, to_wire(obj)]

        def decode(wire: list[Any]) -> Any:
            _code, value = wire
            return from_wire(value)
    else:
        def encode(obj: Any) -> list[Any]:
            return [code, _encode_any(to_wire(obj))]

        def decode(wire: list[Any]) -> Any:
            _code, value = wire
            return from_wire(_decode_any(value))
    return encode, decode


# --- values <-> plain msgpack data ------------------------------------------------------------


def _encode_any(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    encode = _ENCODERS.get(kind)
    if encode is None:
        raise EncodeError(f"cannot encode a {kind.__qualname__}: register it in sapwood.wire.codec")
    return encode(value)


def _encode_list(value: list[Any]) -> list[Any]:
    return [TAG_LIST, *map(_encode_any, value)]


def _encode_tuple(value: tuple[Any, ...]) -> list[Any]:
    return [TAG_TUPLE, *map(_encode_any, value)]


def _encode_set(value: set[Any]) -> list[Any]:
    return [TAG_SET, *map(_encode_any, value)]


def _encode_frozenset(value: frozenset[Any]) -> list[Any]:
    return [TAG_FROZENSET, *map(_encode_any, value)]


def _encode_dict(value: dict[Any, Any]) -> dict[Any, Any] | list[Any]:
    out = {}
    for key, item in value.items():
        if type(key) not in _PLAIN_SCALARS:
            return [TAG_DICT_ITEMS, *map(_encode_any, itertools.chain.from_iterable(value.items()))]
        out[key] = _encode_any(item)
    return out


def _decode_any(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        try:
            return _DECODERS[value[0]](value)
        except DecodeError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise _malformed(value, exc) from None
    if kind is dict:
        return {key: _decode_any(item) for key, item in value.items()}
    return value


def _items(wire: list[Any]) -> itertools.islice[Any]:
    return itertools.islice(wire, 1, None)


def _decode_list(wire: list[Any]) -> list[Any]:
    return [_decode_any(item) for item in _items(wire)]


def _decode_tuple(wire: list[Any]) -> tuple[Any, ...]:
    return tuple(map(_decode_any, _items(wire)))


def _decode_set(wire: list[Any]) -> set[Any]:
    return set(map(_decode_any, _items(wire)))


def _decode_frozenset(wire: list[Any]) -> frozenset[Any]:
    return frozenset(map(_decode_any, _items(wire)))


def _decode_dict_items(wire: list[Any]) -> dict[Any, Any]:
    keys, items = wire[1::2], wire[2::2]
    return dict(zip(map(_decode_any, keys), map(_decode_any, items), strict=True))


def _malformed(wire: list[Any], exc: Exception) -> DecodeError:
    if not wire:
        return DecodeError("malformed message: an array without a type code")
    try:
        name = _TAG_NAMES.get(wire[0])
    except TypeError:  # an unhashable head
        name = None
    if name is None:
        return DecodeError(f"unknown wire code {wire[0]!r}: the peer knows a message this node "
                           "does not")
    return DecodeError(f"malformed {name}: {exc}")


def _register_containers() -> None:
    containers: tuple[tuple[int, type, Encoder, Decoder], ...] = (
        (TAG_LIST, list, _encode_list, _decode_list),
        (TAG_TUPLE, tuple, _encode_tuple, _decode_tuple),
        (TAG_SET, set, _encode_set, _decode_set),
        (TAG_FROZENSET, frozenset, _encode_frozenset, _decode_frozenset),
        (TAG_DICT_ITEMS, dict, _encode_dict, _decode_dict_items),
    )
    for tag, kind, encode, decode in containers:
        _ENCODERS[kind] = encode
        _DECODERS[tag] = decode
        _TAG_NAMES[tag] = kind.__qualname__


_register_containers()


# --- messages <-> bytes -----------------------------------------------------------------------


def _refuse_unpackable(obj: Any) -> Any:
    # msgpack's default=: reached only by a value in a plain-hinted field that is not plain data.
    kind = type(obj)
    if kind is int:
        raise EncodeError(f"integer {obj} is outside msgpack's range (-2**63 .. 2**64-1)")
    if kind in _ENCODERS:
        raise EncodeError(f"a {kind.__qualname__} where plain data is promised (None, bool, int, "
                          "float, str, bytes, lists and dicts of those) by a field's type hint or "
                          "by plain=True: fix the value or the promise")
    raise EncodeError(f"cannot encode a {kind.__qualname__}: register it in sapwood.wire.codec")


def _refuse_extension(code: int, data: bytes) -> Any:
    raise DecodeError(f"unknown msgpack extension type {code}")


def _new_packer() -> msgpack.Packer:
    # strict_types: a tuple or a list subclass in a plain field reaches _refuse_unpackable
    # instead of silently becoming a list.
    return msgpack.Packer(default=_refuse_unpackable, strict_types=True, use_bin_type=True,
                          autoreset=True, buf_size=PACK_BUFFER_BYTES)


# One packer for every message rather than one built per message (packb's way), which cost as
# much as the packing itself. Its buffer is reset after each message, and on an error too.
# Messages are encoded on the node's event loop thread only (its default= hook runs Python code,
# so two threads packing at once could interleave there).
_packer = _new_packer()


def encode_message(msg: Any) -> bytes:
    """A registered message -> msgpack bytes. EncodeError for anything unregistered inside."""
    global _packer
    entry = _BY_CLASS.get(type(msg))
    if entry is None:
        raise EncodeError(f"{type(msg).__qualname__} is not a registered message")
    try:
        data: bytes = _packer.pack(entry.encode(msg))
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode {type(msg).__qualname__}: {exc}") from None
    if len(data) > MAX_KEPT_PACK_BUFFER_BYTES:
        _packer = _new_packer()
    return data


ObjectDecoder = Callable[[bytes], "kvobject.KVObject"]
# The stored bytes -> KVObject function of the decode_message call under way (see its
# decode_object argument); a module variable so the registered decoder needs no parameter.
_object_decoder: ObjectDecoder = kvobject.decode


def _decode_object(data: bytes) -> kvobject.KVObject:
    return _object_decoder(data)


def decode_message(data: bytes, decode_object: ObjectDecoder | None = None) -> Any:
    """msgpack bytes -> the registered message they encode. DecodeError for anything else.

    `decode_object` turns the stored bytes of a KVObject inside into the object: a node passes
    its decode cache, since the replicas of a key hold the same bytes its own replica has
    decoded already. Default: kvobject.decode.
    """
    global _object_decoder
    _object_decoder = decode_object or kvobject.decode
    try:
        # Peers are authenticated and Any-typed fields may carry non-string map keys.
        msg = _decode_any(msgpack.unpackb(data, ext_hook=_refuse_extension, raw=False,
                                          strict_map_key=False))
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"malformed message ({type(exc).__name__}: {exc})") from None
    finally:
        _object_decoder = kvobject.decode
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
        header = FRAME_HEADER.size
        if buffer:
            buffer += data
            if len(buffer) >= header and len(buffer) - header < self._announced(buffer, 0):
                return []  # still inside one frame: no copy until it is complete
            data = bytes(buffer)
            buffer.clear()
        # Frames are sliced straight out of the chunk read (usually whole frames): one copy each.
        frames: list[bytes] = []
        pos = 0
        end = len(data)
        while end - pos >= header:
            size = self._announced(data, pos)
            if end - pos - header < size:
                break
            frames.append(data[pos + header : pos + header + size])
            pos += header + size
        if pos < end:
            buffer += memoryview(data)[pos:]
        return frames

    def _announced(self, data: bytes | bytearray, pos: int) -> int:
        (size,) = FRAME_HEADER.unpack_from(data, pos)
        if size > self.max_bytes:
            raise FrameTooLarge(
                f"the peer announced a frame of {size} bytes; the limit is {self.max_bytes}")
        return int(size)


# --- the vocabulary ---------------------------------------------------------------------------


def _register_core() -> None:
    # The object travels as the bytes it is stored as: a coordinator sends what it has just
    # stored (encoded once, not again for the wire), and a replica stores the bytes it received
    # (kvobject.decode keeps them on the object) instead of encoding the object again.
    register(kvobject.KVObject, 1, to_wire=kvobject.encode, from_wire=_decode_object,
             plain=True)
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


def _register_consensus() -> None:
    em = ensemble_messages
    register(consensus.NoOp, 121, to_wire=lambda _: [], from_wire=lambda _: consensus.NoOp())
    for code, cls in (
        (100, em.EnsembleEnvelope), (101, em.EnsembleCall), (102, em.EnsembleAnswer),
        (103, em.EnsemblePersisted), (104, em.EnsembleRetireQuery), (105, em.EnsembleRetired),
        (110, consensus.VoteRequest), (111, consensus.VoteResponse),
        (112, consensus.AppendEntries), (113, consensus.AppendResponse),
        (114, consensus.Heartbeat), (115, consensus.HeartbeatResponse),
        (116, consensus.InstallSnapshot), (117, consensus.SnapshotResponse),
        (120, consensus.Entry), (122, consensus.Reconfigure), (123, consensus.Put),
        (124, consensus.Delete), (125, consensus.Get), (126, consensus.Version),
        (127, consensus.SnapshotMeta), (128, consensus.AddMember), (129, consensus.RemoveMember),
        (130, consensus.Ok), (131, consensus.Absent), (132, consensus.Precondition),
        (133, consensus.NotLeader), (134, consensus.Unavailable), (135, consensus.Indeterminate),
        (136, consensus.Invalid), (137, consensus.TooLarge), (138, consensus.ConfigApplied),
    ):
        register(cls, code)


_register_core()
_register_consensus()
