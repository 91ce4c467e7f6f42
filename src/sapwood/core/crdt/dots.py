"""Dots, version vectors and the causal machinery shared by the observed-remove data types.

A *dot* (actor, counter) names one update event; a *clock* (version vector) maps each actor to the
highest counter seen. The observed-remove types (set, map, and the register and flag that live in
maps) are a *dot store* paired with one clock: the store holds the dots that are still live, the
clock every dot ever seen. Joining two states keeps a dot when both hold it, or when the side
without it has never seen it (so it is new, not removed). This is Riak's ORSWOT "dot compression":
an element carries only its live dots (normally one), never a version vector of its own.

A remove sent with a client context deletes only the dots that context covers. When the context
covers dots this replica has not received yet, the remove is also *deferred*: kept beside the
state and re-applied after every merge until the clock covers the context (Riak does the same).

Mutation: `update` changes the state in place and returns it, so an update costs O(size of the op),
not O(size of the state). `merge` and `copy` return fresh states and leave their inputs untouched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, cast

import msgpack

from sapwood.core.crdt.ops import FieldKey
from sapwood.core.errors import BadRequest, SapwoodError

if TYPE_CHECKING:
    from sapwood.core.crdt.ops import Op

FORMAT_VERSION = 1
# Observed-remove types encode large sets and maps in segments (segments.py) since version 2;
# since version 3 sets and maps compress large groups of segments (segments.py), and maps write
# a register field's common case in short form (map.py). Decoders read every version.
CAUSAL_FORMAT_VERSION = 2
CAUSAL_FORMAT_VERSIONS = (1, 2, 3)
CONTEXT_VERSION = 1
MAX_ACTOR_BYTES = 255
MAX_CONTEXT_BYTES = 64 * 1024
# Each pending context-remove is re-applied on every merge; a client that keeps sending contexts
# far ahead of this replica could otherwise grow the state without bound.
MAX_DEFERRED_CONTEXTS = 64

Clock = dict[bytes, int]
Dots = dict[bytes, int]  # a set of dots holding at most one per actor (an actor acts in sequence)
Dot = tuple[bytes, int]
Path = tuple[
    Any, ...
]  # address of a removable part: map FieldKeys, then a set element or flag step
CtxKey = tuple[tuple[bytes, int], ...]


class CorruptDatatype(SapwoodError):
    """Stored data-type bytes could not be decoded (wrong tag, unknown version, damaged payload)."""

    status: ClassVar[int] = 500


def descends(clock: Clock, other: Clock) -> bool:
    """True when `clock` has seen every dot `other` has seen."""
    return all(clock.get(actor, 0) >= counter for actor, counter in other.items())


def merge_clocks(a: Clock, b: Clock) -> Clock:
    merged = dict(a)
    for actor, counter in b.items():
        if counter > merged.get(actor, 0):
            merged[actor] = counter
    return merged


def unseen_dots(dots: Dots, clock: Clock) -> Dots:
    """The dots `clock` has not seen; `dots` itself when all survive (dot maps are shared)."""
    kept = {actor: counter for actor, counter in dots.items() if counter > clock.get(actor, 0)}
    return dots if len(kept) == len(dots) else kept


def join_dots(mine: Dots, theirs: Dots, my_clock: Clock, their_clock: Clock) -> Dots:
    """Dots held by both, plus dots held by one side that the other side has not seen."""
    if mine is theirs or mine == theirs:
        return mine
    out: Dots = {}
    for actor, counter in mine.items():
        if theirs.get(actor) == counter or counter > their_clock.get(actor, 0):
            out[actor] = counter
    for actor, counter in theirs.items():
        if counter > my_clock.get(actor, 0):
            # Two live dots of one actor only arise if an actor id was reused; keep the later.
            out[actor] = max(counter, out.get(actor, 0))
    return out


def check_actor(actor: bytes) -> None:
    if not isinstance(actor, bytes) or not actor:
        raise BadRequest("actor must be non-empty bytes")
    if len(actor) > MAX_ACTOR_BYTES:
        raise BadRequest(f"actor id is longer than {MAX_ACTOR_BYTES} bytes")


def ctx_key(ctx: Clock) -> CtxKey:
    return tuple(sorted(ctx.items()))


def encode_context(clock: Clock) -> bytes:
    """Opaque causal context handed to clients: version byte + msgpack of the clock."""
    flat: list[Any] = []
    for actor, counter in sorted(clock.items()):
        flat += (actor, counter)
    return bytes([CONTEXT_VERSION]) + msgpack.packb(flat, use_bin_type=True)


def decode_context(data: bytes) -> Clock:
    """Parse a context from `encode_context`; anything else is the client's error (BadRequest)."""
    if len(data) > MAX_CONTEXT_BYTES:
        raise BadRequest(f"data type context is larger than {MAX_CONTEXT_BYTES} bytes")
    if data[:1] != bytes([CONTEXT_VERSION]):
        raise BadRequest("malformed data type context: unknown version")
    try:
        flat = msgpack.unpackb(data[1:], raw=False)
        clock = _clock_from_flat(flat)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadRequest("malformed data type context") from exc
    return clock


def _clock_from_flat(flat: Any) -> Clock:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("clock must be a flat list of actor, counter pairs")
    clock: Clock = {}
    for actor, counter in zip(flat[::2], flat[1::2], strict=True):
        if not isinstance(actor, bytes) or not isinstance(counter, int) or counter <= 0:
            raise ValueError("malformed clock entry")
        clock[actor] = counter
    return clock


def dots_to_wire(dots: Dots, index: dict[bytes, int]) -> list[int]:
    """Flat [actor index, counter, ...]; actors are numbered by the state's clock (compact)."""
    flat: list[int] = []
    for actor, counter in sorted(dots.items()):
        flat += (index[actor], counter)
    return flat


def dots_from_wire(flat: Any, actors: list[bytes]) -> Dots:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("malformed dots")
    return {actors[i]: _positive(c) for i, c in zip(flat[::2], flat[1::2], strict=True)}


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError("counter must be a positive integer")
    return value


def path_to_wire(path: Path) -> list[Any]:
    return [[step.name, step.type] if isinstance(step, FieldKey) else step for step in path]


def path_from_wire(data: Any) -> Path:
    if not isinstance(data, list):
        raise ValueError("malformed path")
    steps: list[Any] = []
    for step in data:
        if isinstance(step, list):
            name, kind = step
            steps.append(FieldKey(str(name), str(kind)))
        elif isinstance(step, bytes | str):
            steps.append(step)
        else:
            raise ValueError("malformed path step")
    return tuple(steps)


def _canonical(wire: Any) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


def pack(tag: int, payload: Any) -> bytes:
    """Encoded state: a type tag byte, a format version byte, then msgpack."""
    return bytes([tag, FORMAT_VERSION]) + msgpack.packb(payload, use_bin_type=True)


def unpack(data: bytes, tag: int, type_name: str, versions: tuple[int, ...] = (FORMAT_VERSION,)
           ) -> Any:
    if len(data) < 2 or data[0] != tag:
        raise CorruptDatatype(f"bytes do not hold a {type_name}")
    if data[1] not in versions:
        raise CorruptDatatype(f"unknown {type_name} format version {data[1]}")
    try:
        return msgpack.unpackb(data[2:], raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptDatatype(f"damaged {type_name} payload") from exc


class DotStore(ABC):
    """The live part of an observed-remove type; it has no clock of its own (its owner has one).

    Stores nest (a map holds stores), which is how map fields share the map's clock and context.
    """

    __slots__ = ()

    @abstractmethod
    def is_empty(self) -> bool: ...

    @abstractmethod
    def join(self, other: Self, clock: Clock, other_clock: Clock) -> Self:
        """A fresh store: the join of both; neither input is changed."""

    @abstractmethod
    def discard_seen(self, ctx: Clock) -> None:
        """Remove every dot `ctx` covers (a whole-field remove)."""

    def remove_path(self, path: Path, ctx: Clock) -> None:
        """Remove the dots `ctx` covers at `path` (a deferred remove); most stores have no parts."""
        return None

    def check(self, op: Any, has_context: bool) -> None:
        """Raise (BadRequest, PreconditionFailed) if `apply` would refuse `op`; changes nothing."""
        return None

    @abstractmethod
    def apply(self, op: Any, dot: Dot, now_ms: int, observed: Clock | None) -> list[Path]:
        """Apply a checked op in place under the new `dot`.

        `observed` is the client's context, or None when the op observed all of this replica's
        state. Returns the paths of removes made under a context (candidates for deferral).
        """

    @abstractmethod
    def value(self) -> Any: ...

    @abstractmethod
    def copy(self) -> Self: ...

    @abstractmethod
    def to_wire(self, index: dict[bytes, int]) -> Any: ...

    def encode_parts(self, index: dict[bytes, int], actors: tuple[bytes, ...]) -> list[bytes]:
        """`to_wire` as msgpack, in parts to be joined; large stores override this to reuse the
        parts that did not change. `actors` is the actor list `index` numbers (cached parts are
        valid for one list only)."""
        return [_canonical(self.to_wire(index))]

    def encode_wire(self, index: dict[bytes, int], actors: tuple[bytes, ...]) -> bytes:
        return b"".join(self.encode_parts(index, actors))

    @classmethod
    @abstractmethod
    def from_wire(cls, data: Any, actors: list[bytes]) -> Self: ...


StoreT = TypeVar("StoreT", bound=DotStore)


class CausalCRDT(ABC, Generic[StoreT]):
    """A dot store with its clock and pending (deferred) context-removes: a complete data type.

    Generic in its store type rather than narrowing `store` in each subclass: mypyc compiles
    attributes whose type a subclass redeclares only when the declarations are the same.
    """

    type_name: ClassVar[str]
    TAG: ClassVar[int]
    FORMAT: ClassVar[int] = CAUSAL_FORMAT_VERSION  # the version `encode` writes
    store_type: ClassVar[type[DotStore]]
    op_type: ClassVar[type]

    __slots__ = ("clock", "deferred", "store")

    def __init__(
        self,
        clock: Clock | None = None,
        store: StoreT | None = None,
        deferred: dict[CtxKey, set[Path]] | None = None,
    ) -> None:
        self.clock: Clock = {} if clock is None else clock
        self.store: StoreT = cast(StoreT, self.store_type()) if store is None else store
        self.deferred: dict[CtxKey, set[Path]] = {} if deferred is None else deferred

    @classmethod
    def new(cls) -> Self:
        return cls()

    def value(self) -> Any:
        return self.store.value()

    def context(self) -> bytes:
        return encode_context(self.clock)

    def update(self, op: Op, actor: bytes, now_ms: int, context: bytes | None = None) -> Self:
        """Apply `op` as `actor` in place and return self; on any error nothing has changed."""
        if not isinstance(op, self.op_type):
            raise BadRequest(f"a {type(op).__name__} cannot update a {self.type_name}")
        check_actor(actor)
        ctx = decode_context(context) if context else None
        self.store.check(op, ctx is not None)
        if ctx is not None:
            self._check_deferral_room(ctx)
        dot = (actor, self._next_counter(actor, ctx))
        paths = self.store.apply(op, dot, now_ms, ctx)
        self.clock[actor] = dot[1]
        if ctx is not None and paths and not descends(self.clock, ctx):
            self.deferred.setdefault(ctx_key(ctx), set()).update(paths)
        return self

    def _check_deferral_room(self, ctx: Clock) -> None:
        if descends(self.clock, ctx) or ctx_key(ctx) in self.deferred:
            return
        if len(self.deferred) >= MAX_DEFERRED_CONTEXTS:
            raise BadRequest(
                f"{self.type_name} already has {MAX_DEFERRED_CONTEXTS} removes waiting for data "
                "their context has seen; retry once replicas have exchanged state"
            )

    def _next_counter(self, actor: bytes, ctx: Clock | None) -> int:
        # A new dot must be unseen by every context in play, or a pending remove would delete it.
        highest = self.clock.get(actor, 0)
        if ctx is not None:
            highest = max(highest, ctx.get(actor, 0))
        for key in self.deferred:
            highest = max([highest, *(c for a, c in key if a == actor)])
        return highest + 1

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        clock = merge_clocks(self.clock, other.clock)
        store = self.store.join(other.store, self.clock, other.clock)
        pending: dict[CtxKey, set[Path]] = {}
        for source in (self.deferred, other.deferred):
            for key, paths in source.items():
                pending.setdefault(key, set()).update(paths)
        for key, paths in pending.items():
            ctx = dict(key)
            for path in paths:
                store.remove_path(path, ctx)
        kept = {key: paths for key, paths in pending.items() if not descends(clock, dict(key))}
        return type(self)(clock, store, kept)

    def copy(self) -> Self:
        deferred = {key: set(paths) for key, paths in self.deferred.items()}
        return type(self)(dict(self.clock), self.store.copy(), deferred)

    def encode(self) -> bytes:
        """[actors, their counters, the store, deferred removes] as msgpack, after the tag and
        version bytes. The store's bytes come from `encode_parts`, so a large set or map
        re-encodes only the segments changed since the last encode (segments.py)."""
        actors = tuple(sorted(self.clock))
        index = {actor: i for i, actor in enumerate(actors)}
        deferred = [
            [[x for pair in key for x in pair], sorted(map(path_to_wire, paths), key=_canonical)]
            for key, paths in sorted(self.deferred.items())
        ]
        return b"".join((
            bytes([self.TAG, self.FORMAT, 0x94]),  # 0x94: a msgpack array of 4
            _canonical(list(actors)), _canonical([self.clock[a] for a in actors]),
            *self.store.encode_parts(index, actors), _canonical(deferred),
        ))

    @classmethod
    def decode(cls, data: bytes) -> Self:
        payload = unpack(data, cls.TAG, cls.type_name, CAUSAL_FORMAT_VERSIONS)
        try:
            actors, counters, store_wire, deferred_wire = payload
            if not all(isinstance(a, bytes) for a in actors):
                raise ValueError("malformed actor")
            clock = {a: _positive(c) for a, c in zip(actors, counters, strict=True)}
            store = cls.store_type.from_wire(store_wire, actors)
            deferred: dict[CtxKey, set[Path]] = {}
            for flat_ctx, paths in deferred_wire:
                key = ctx_key(_clock_from_flat(flat_ctx))
                deferred[key] = {path_from_wire(p) for p in paths}
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise CorruptDatatype(f"damaged {cls.type_name} payload") from exc
        return cls(clock, cast(StoreT, store), deferred)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value()!r})"
