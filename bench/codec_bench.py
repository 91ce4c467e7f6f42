"""Inter-node codec cost: microseconds to encode + decode each hot message of a GET and a PUT.

    PYTHONPATH=src python bench/codec_bench.py [--repeat 7] [--number 20000]

The messages are the ones a 3-replica PUT and GET exchange between nodes: Fetch, FetchReply
(holding a one-sibling KVObject with a 256-byte value), CoordinatePut, CoordinatePutReply,
Replicate and StoreAck. For each, the best of `--repeat` runs of `--number` round trips is
reported (CPU time of this process, which a busy machine disturbs less than wall time), split
into encode and decode.

Two codecs are measured in the same run on the same messages:
- "ext": the protocol-1 codec, kept below as a small self-contained copy (one msgpack.packb per
  nested registered object through default=, one unpackb per object through ext_hook=);
- "now": sapwood.wire.codec as it is in this checkout.
Both round trips are checked to give back the message that went in before anything is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgpack

from sapwood.core import kvobject, messages
from sapwood.core.causal import Dot
from sapwood.core.kvobject import KVObject, Metadata, Sibling
from sapwood.core.ring import BKey
from sapwood.wire import codec

VALUE_BYTES = 256
NODE = "sapwood@127.0.0.1"
PARTITION = 37
ACTOR = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def hot_messages() -> dict[str, Any]:
    bkey = BKey("default", "bench", "k12345")
    value = bytes(range(256)) * (VALUE_BYTES // 256)
    meta = Metadata(content_type="application/octet-stream", last_modified_ms=1_764_000_000_123,
                    vtag="5mWzQqTfH0b3kS1")
    obj = KVObject((Sibling(value, meta, Dot(ACTOR, 42)),), {ACTOR: 42})
    return {
        "Fetch": messages.Fetch(1_000_001, NODE, PARTITION, bkey),
        "FetchReply": messages.FetchReply(1_000_001, PARTITION, NODE, obj),
        "CoordinatePut": messages.CoordinatePut(1_000_002, NODE, PARTITION, bkey, value, meta, {},
                                                False, False),
        "CoordinatePutReply": messages.CoordinatePutReply(1_000_002, PARTITION, NODE, obj, None, 0,
                                                          True),
        "Replicate": messages.Replicate(1_000_002, NODE, PARTITION, bkey, obj, False),
        "StoreAck": messages.StoreAck(1_000_002, PARTITION, NODE, False),
    }


# --- the protocol-1 codec, for comparison -----------------------------------------------------


class ExtCodec:
    """Protocol 1: every registered object is a msgpack ExtType holding its own packb'd bytes."""

    EXT_TUPLE, EXT_FROZENSET, EXT_SET, EXT_OBJECT = 1, 2, 3, 4

    def __init__(self) -> None:
        self.by_class: dict[type, tuple[int, Callable[[Any], Any]]] = {}
        self.by_code: dict[int, Callable[[Any], Any]] = {}
        for cls, code in codec.registered_classes().items():
            if cls is KVObject:
                self.by_class[cls] = (code, kvobject.to_wire)
                self.by_code[code] = kvobject.from_wire
            elif dataclasses.is_dataclass(cls) or hasattr(cls, "_fields"):
                self.by_class[cls] = (code, self._field_getter(self._field_names(cls)))
                self.by_code[code] = self._constructor(cls)

    @staticmethod
    def _field_names(cls: type) -> list[str]:
        if dataclasses.is_dataclass(cls):
            return [f.name for f in dataclasses.fields(cls)]
        return list(getattr(cls, "_fields", ()))

    @staticmethod
    def _constructor(cls: type) -> Callable[[Any], Any]:
        return lambda values: cls(*values)

    @staticmethod
    def _field_getter(names: list[str]) -> Callable[[Any], list[Any]]:
        if not names:
            return lambda o: []
        getter = operator.attrgetter(*names)
        if len(names) == 1:
            return lambda o: [getter(o)]
        return lambda o: list(getter(o))

    def _default(self, obj: Any) -> msgpack.ExtType:
        known = self.by_class.get(type(obj))
        if known is not None:
            code, to_wire = known
            return msgpack.ExtType(self.EXT_OBJECT, self._pack([code, to_wire(obj)]))
        if type(obj) is tuple:
            return msgpack.ExtType(self.EXT_TUPLE, self._pack(list(obj)))
        if type(obj) is frozenset:
            return msgpack.ExtType(self.EXT_FROZENSET, self._pack(list(obj)))
        if type(obj) is set:
            return msgpack.ExtType(self.EXT_SET, self._pack(list(obj)))
        raise TypeError(f"cannot encode {type(obj)}")

    def _pack(self, value: Any) -> bytes:
        return msgpack.packb(value, default=self._default, strict_types=True, use_bin_type=True,
                             buf_size=1024)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        value = self._unpack(data)
        if code == self.EXT_OBJECT:
            return self.by_code[value[0]](value[1])
        if code == self.EXT_TUPLE:
            return tuple(value)
        if code == self.EXT_SET:
            return set(value)
        return frozenset(value)

    def _unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)

    def encode_message(self, msg: Any) -> bytes:
        return self._pack(msg)

    def decode_message(self, data: bytes) -> Any:
        return self._unpack(data)


# --- timing -----------------------------------------------------------------------------------


def best_us(fn: Callable[[], Any], repeat: int, number: int) -> float:
    # CPU time of this process: other work on a busy machine inflates wall time far more.
    runs = timeit.repeat(fn, repeat=repeat, number=number, timer=time.process_time)
    return min(runs) / number * 1e6


def measure(encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], msg: Any,
            repeat: int, number: int) -> tuple[int, float, float]:
    data = encode(msg)
    if decode(data) != msg:
        raise SystemExit(f"{type(msg).__name__} does not round-trip")
    enc = best_us(lambda: encode(msg), repeat, number)
    dec = best_us(lambda: decode(data), repeat, number)
    return len(data), enc, dec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    old = ExtCodec()
    codecs = {"ext": (old.encode_message, old.decode_message),
              "now": (codec.encode_message, codec.decode_message)}
    print(f"protocol now: {codec.PROTOCOL_VERSION}; best of {args.repeat} x {args.number}; "
          "us per message")
    print(f"{'message':<19} {'codec':<5} {'bytes':>6} {'encode':>8} {'decode':>8} {'total':>8}"
          "  now/ext")
    totals = dict.fromkeys(codecs, 0.0)
    for name, msg in hot_messages().items():
        figures = {label: measure(encode, decode, msg, args.repeat, args.number)
                   for label, (encode, decode) in codecs.items()}
        for label, (size, enc, dec) in figures.items():
            totals[label] += enc + dec
            ratio = (enc + dec) / sum(figures["ext"][1:])
            print(f"{name:<19} {label:<5} {size:>6} {enc:>8.2f} {dec:>8.2f} {enc + dec:>8.2f}"
                  + (f"  {ratio:7.2f}" if label == "now" else ""))
    count = len(hot_messages())
    print(f"{'mean':<19} " + "  ".join(f"{label} {total / count:.2f}"
                                       for label, total in totals.items())
          + f"  (now/ext {totals['now'] / totals['ext']:.2f})")


if __name__ == "__main__":
    main()
