"""Causality: dots and version vectors whose actors are vnodes, and the opaque client context.

An object carries one version vector (everything it has seen); each sibling carries the dot that
created it. A sibling is obsolete for someone whose vector covers its dot. This is the dotted
version vector scheme Riak 2.0 uses with `dvv_enabled`: siblings are bounded by the number of
truly concurrent writers, never by the number of writes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import msgpack

from sapwood.core.errors import BadRequest

Actor = bytes
VClock = Mapping[bytes, int]
CONTEXT_VERSION = 1
MAX_CONTEXT_BYTES = 64 * 1024
MAX_CLOCK_ENTRIES = 1024


class Dot(NamedTuple):
    actor: Actor
    counter: int


def covers(clock: VClock, dot: Dot) -> bool:
    return clock.get(dot.actor, 0) >= dot.counter


def descends(a: VClock, b: VClock) -> bool:
    """True when `a` has seen everything `b` has."""
    if b.items() <= a.items():  # every entry of b is in a as it is: the common case, in C
        return True
    return all(a.get(actor, 0) >= counter for actor, counter in b.items())


def merge_clocks(*clocks: VClock) -> dict[bytes, int]:
    merged: dict[bytes, int] = {}
    for clock in clocks:
        if not merged:
            merged = dict(clock)  # copied in C; entries that are not positive are dropped below
            if merged and min(merged.values()) <= 0:
                merged = {actor: counter for actor, counter in merged.items() if counter > 0}
            continue
        if clock.items() <= merged.items():
            continue  # nothing new in it: the usual case of a context equal to the clock
        get = merged.get
        for actor, counter in clock.items():
            if counter > get(actor, 0):
                merged[actor] = counter
    return merged


def clock_to_wire(clock: VClock) -> list[list[object]]:
    return [[actor, counter] for actor, counter in sorted(clock.items())]


def clock_from_wire(pairs: Iterable[Iterable[object]]) -> dict[bytes, int]:
    clock: dict[bytes, int] = {}
    for pair in pairs:
        actor, counter = pair
        if not isinstance(actor, bytes) or not isinstance(counter, int) or counter < 0:
            raise ValueError("malformed clock entry")
        clock[actor] = counter
    return clock


def encode_context(clock: VClock) -> str:
    """The opaque causal context clients send back (`X-Riak-Vclock`): base64 of a msgpack vector."""
    # Every object read answers with one: a shared packer spares building one per call (packb
    # does), and sorted pairs pack as clock_to_wire's lists do.
    raw = _CONTEXT_PACKER.pack((CONTEXT_VERSION, sorted(clock.items())))
    return base64.b64encode(raw).decode("ascii")


# Packing bytes and ints runs in C without releasing the GIL: sharing it across threads is safe.
_CONTEXT_PACKER = msgpack.Packer(use_bin_type=True)


def decode_context(text: str | bytes | None) -> dict[bytes, int]:
    """Parse a client context; an empty or missing one is the empty clock. Malformed -> BadRequest."""
    if text is None:
        return {}
    if isinstance(text, str):
        text = text.strip().encode("ascii", "replace")
    if not text:
        return {}
    if len(text) > MAX_CONTEXT_BYTES:
        raise BadRequest(f"causal context is larger than {MAX_CONTEXT_BYTES} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
        version, pairs = msgpack.unpackb(raw, raw=False)
        if version != CONTEXT_VERSION:
            raise ValueError(f"unknown context version {version}")
        clock = clock_from_wire(pairs)
    except (binascii.Error, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise BadRequest(f"malformed causal context (X-Riak-Vclock): {exc}") from None
    if len(clock) > MAX_CLOCK_ENTRIES:
        raise BadRequest(f"causal context has more than {MAX_CLOCK_ENTRIES} actors")
    return clock
