"""Typed data type objects (Riak 2.0 CRDTs) with staged operations, as Riak's Python client has.

    likes = Counter(bucket, "post-1")          # or bucket.new_datatype("post-1")
    likes.increment(); likes.store()            # stored with the new value and context read back
    tags = bucket.get_datatype("post-1")        # the bucket type's datatype decides the class
    tags.discard("old"); tags.add("new"); tags.store()
    user = Map(bucket, "ada")
    user.registers["name"].assign("Ada"); user.counters["logins"].increment()
    user.sets["roles"].add("admin"); del user.flags["banned"]; user.store()

`value` is what the store last answered (staged changes are not in it); `modified` says whether
changes are staged, `to_op()` shows them as Riak's JSON op. `store()` sends them with the fetched
`context`, so removes act only on what this object saw. With an `AsyncClient`'s bucket, `store()`,
`reload()` and `delete()` return awaitables. Map fields (nested counters, sets, maps, registers and
flags) are staged through their map and stored with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, overload

from sapwood.core.errors import BadRequest

if TYPE_CHECKING:
    from sapwood.client.buckets import AsyncBucket, Bucket

BucketT = TypeVar("BucketT", bound="Bucket | AsyncBucket | None")
SyncD = TypeVar("SyncD", bound="Datatype[Bucket]")
AsyncD = TypeVar("AsyncD", bound="Datatype[AsyncBucket]")

FieldKey = tuple[str, str]  # (name, type) of a map field, as Riak's Python client names them
MAP_FIELD_TYPES = ("counter", "flag", "map", "register", "set")


@dataclass(frozen=True, slots=True)
class DatatypeFetched:
    """A data type as a transport read it: Riak's JSON value (None: not found) and context."""

    type_name: str
    value: Any
    context: str | None = None

    @property
    def exists(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class DatatypeStored:
    key: str
    fetched: DatatypeFetched | None  # None unless the body was asked for


def _element(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a str, got {type(value).__name__}")
    return value


def _amount(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"a counter changes by an int, got {type(value).__name__}")
    return value


class Staged(ABC):
    """A value with staged changes: every data type, and every map field."""

    type_name: ClassVar[str]

    @property
    @abstractmethod
    def value(self) -> Any:
        """The value as last read from the store (staged changes are not included)."""

    @abstractmethod
    def to_op(self) -> Any:
        """The staged changes as Riak's JSON op; None when nothing is staged."""

    @abstractmethod
    def clear(self) -> None:
        """Forget the staged changes."""

    @abstractmethod
    def _load(self, value: Any) -> None:
        """Take Riak's JSON value (None: empty) as the new value, dropping staged changes."""

    @property
    def modified(self) -> bool:
        return self.to_op() is not None


class Datatype(Staged, Generic[BucketT]):
    """A data type at a key of a bucket; `bucket` is None for a map's nested fields."""

    def __init__(self, bucket: BucketT, key: str | None = None, *, value: Any = None,
                 context: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.context = context
        self.exists = value is not None
        self._load(value)

    def describe(self) -> str:
        where = f"key {self.key!r}" if self.key is not None else "a new key"
        owner = self.bucket.describe() if self.bucket is not None else "a map"
        return f"{self.type_name} at {where} in {owner}"

    def load(self, fetched: DatatypeFetched) -> None:
        """Take a fetch (or a store's returned body) as this object's value and context."""
        if fetched.type_name != self.type_name:
            raise BadRequest(f"{self.describe()}: the bucket type holds {fetched.type_name}s, "
                             f"not {self.type_name}s")
        self._load(fetched.value)
        self.context = fetched.context
        self.exists = fetched.exists

    def _owner(self) -> Bucket | AsyncBucket:
        if self.bucket is None:
            raise BadRequest(f"a {self.type_name} inside a map is stored by storing the map")
        return self.bucket

    @overload
    def store(self: SyncD, **options: Any) -> SyncD: ...
    @overload
    def store(self: AsyncD, **options: Any) -> Coroutine[Any, Any, AsyncD]: ...

    def store(self, **options: Any) -> Any:
        """Send the staged changes (with the context); see Bucket.update_datatype."""
        return self._owner().update_datatype(self, **options)

    update = store  # Riak's Python client names it both ways

    @overload
    def reload(self: SyncD, **options: Any) -> SyncD: ...
    @overload
    def reload(self: AsyncD, **options: Any) -> Coroutine[Any, Any, AsyncD]: ...

    def reload(self, **options: Any) -> Any:
        """Fetch the value and context again (staged changes are dropped)."""
        return self._owner().reload_datatype(self, **options)

    @overload
    def delete(self: Datatype[Bucket], **options: Any) -> bool: ...
    @overload
    def delete(self: Datatype[AsyncBucket], **options: Any) -> Coroutine[Any, Any, bool]: ...

    def delete(self, **options: Any) -> Any:
        """Delete the key (a tombstone, as for any object); the object becomes empty."""
        return self._owner().delete_datatype(self, **options)

    def forget(self) -> None:
        """What a delete leaves: no value, no context, nothing staged."""
        self._load(None)
        self.context = None
        self.exists = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r} value={self.value!r}>"


# --- counter, sets, hll -------------------------------------------------------------------------


class Counter(Datatype[BucketT]):
    type_name: ClassVar[str] = "counter"

    def _load(self, value: Any) -> None:
        self._value = int(value or 0)
        self._delta = 0

    @property
    def value(self) -> int:
        return self._value

    def increment(self, amount: int = 1) -> None:
        self._delta += _amount(amount)

    def decrement(self, amount: int = 1) -> None:
        self._delta -= _amount(amount)

    def to_op(self) -> Any:
        return {"increment": self._delta} if self._delta else None

    def clear(self) -> None:
        self._delta = 0


class _Elements(Datatype[BucketT]):
    """A set-like value of str elements; subclasses say whether elements can be removed."""

    def _load(self, value: Any) -> None:
        self._value = frozenset(value or ())
        self._adds: dict[str, None] = {}
        self._removes: dict[str, None] = {}

    @property
    def value(self) -> frozenset[str]:
        return self._value

    def add(self, element: str) -> None:
        self._adds[_element(element, f"a {self.type_name} element")] = None

    def to_op(self) -> Any:
        op: dict[str, list[str]] = {}
        if self._adds:
            op["add_all"] = list(self._adds)
        if self._removes:
            op["remove_all"] = list(self._removes)
        return op or None

    def clear(self) -> None:
        self._adds, self._removes = {}, {}

    def __contains__(self, element: object) -> bool:
        return element in self._value

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._value))

    def __len__(self) -> int:
        return len(self._value)


class Set(_Elements[BucketT]):
    """Add-wins observed-remove set; `discard` removes only what this object's context saw."""

    type_name: ClassVar[str] = "set"

    def discard(self, element: str) -> None:
        element = _element(element, "a set element")
        self._adds.pop(element, None)  # staged add then discard: the discard is what was meant
        self._removes[element] = None


class GSet(_Elements[BucketT]):
    """Grow-only set."""

    type_name: ClassVar[str] = "gset"


class HyperLogLog(Datatype[BucketT]):
    """Cardinality estimate; `value` is the estimated number of distinct elements added."""

    type_name: ClassVar[str] = "hll"

    def _load(self, value: Any) -> None:
        self._value = int(value or 0)
        self._adds: dict[str, None] = {}

    @property
    def value(self) -> int:
        return self._value

    def add(self, element: str) -> None:
        self._adds[_element(element, "an hll element")] = None

    def to_op(self) -> Any:
        return {"add_all": list(self._adds)} if self._adds else None

    def clear(self) -> None:
        self._adds = {}


# --- map fields that exist only in maps ---------------------------------------------------------


class Register(Staged):
    """Last-writer-wins string (map fields only)."""

    type_name: ClassVar[str] = "register"

    def __init__(self, value: Any = None) -> None:
        self._load(value)

    def _load(self, value: Any) -> None:
        self._value: str | None = value
        self._new: str | None = None

    @property
    def value(self) -> str | None:
        return self._value

    def assign(self, value: str) -> None:
        self._new = _element(value, "a register value")

    def to_op(self) -> Any:
        return self._new

    def clear(self) -> None:
        self._new = None

    def __repr__(self) -> str:
        return f"<Register {self._value!r}>"


class Flag(Staged):
    """Enable-wins boolean (map fields only)."""

    type_name: ClassVar[str] = "flag"

    def __init__(self, value: Any = None) -> None:
        self._load(value)

    def _load(self, value: Any) -> None:
        self._value = bool(value)
        self._new: bool | None = None

    @property
    def value(self) -> bool:
        return self._value

    def enable(self) -> None:
        self._new = True

    def disable(self) -> None:
        self._new = False

    def to_op(self) -> Any:
        return None if self._new is None else ("enable" if self._new else "disable")

    def clear(self) -> None:
        self._new = None

    def __repr__(self) -> str:
        return f"<Flag {self._value!r}>"


# --- map ----------------------------------------------------------------------------------------

F = TypeVar("F", bound=Staged)


def split_field_name(json_name: str) -> FieldKey:
    """`"likes_counter"` -> ("likes", "counter")."""
    name, _, kind = json_name.rpartition("_")
    if not name or kind not in MAP_FIELD_TYPES:
        raise BadRequest(f"map field {json_name!r} is not name_type with a known type")
    return name, kind


def new_field(kind: str, value: Any = None) -> Staged:
    if kind == "register":
        return Register(value)
    if kind == "flag":
        return Flag(value)
    if kind == "counter":
        return Counter(None, value=value)
    if kind == "set":
        return Set(None, value=value)
    return Map(None, value=value)


class FieldView(Mapping[str, F]):
    """The fields of one type in a map: `m.counters["likes"]` (created empty when absent, so
    it can be updated), `del m.sets["tags"]` (staged remove), `"likes" in m.counters`."""

    def __init__(self, owner: Map[Any], kind: str) -> None:
        self._map = owner
        self._kind = kind

    def __getitem__(self, name: str) -> F:
        return cast(F, self._map.field((_element(name, "a map field name"), self._kind)))

    def __delitem__(self, name: str) -> None:
        self._map.remove((_element(name, "a map field name"), self._kind))

    def __contains__(self, name: object) -> bool:
        return (name, self._kind) in self._map._fields

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(name for name, kind in self._map._fields if kind == self._kind))

    def __len__(self) -> int:
        return sum(1 for _, kind in self._map._fields if kind == self._kind)


class Map(Datatype[BucketT]):
    """Fields named (name, type) holding counters, sets, registers, flags and maps.

    `value` is `{(name, type): value}` (Riak's Python client's form); `json_value()` gives
    Riak's JSON form `{"name_type": value}`.
    """

    type_name: ClassVar[str] = "map"

    def _load(self, value: Any) -> None:
        self._fields: dict[FieldKey, Staged] = {}  # fetched fields
        self._new: dict[FieldKey, Staged] = {}  # fields first touched since the fetch
        self._removes: dict[FieldKey, None] = {}
        for json_name, field_value in (value or {}).items():
            key = split_field_name(json_name)
            self._fields[key] = new_field(key[1], field_value)

    @property
    def value(self) -> dict[FieldKey, Any]:
        return {key: field.value for key, field in self._fields.items()}

    def json_value(self) -> dict[str, Any]:
        """The value as Riak's JSON shows it: `{"name_type": ...}`, sets as sorted lists."""
        return {f"{name}_{kind}": _json_value(field) for (name, kind), field in self._fields.items()}

    def field(self, key: FieldKey) -> Staged:
        """The field `key` = (name, type), to stage updates on; an absent one starts empty."""
        if key[1] not in MAP_FIELD_TYPES:
            raise BadRequest(f"map fields are one of {', '.join(MAP_FIELD_TYPES)}; got {key[1]!r}")
        found = self._new.get(key)
        if found is None:
            found = self._fields.get(key)  # (not `or`: an empty set field is falsy)
        if found is None:
            found = self._new[key] = new_field(key[1])
        return found

    def remove(self, key: FieldKey) -> None:
        """Stage the removal of a field (and drop updates staged on it before)."""
        self._removes[key] = None
        for field in (self._fields.get(key), self._new.pop(key, None)):
            if field is not None:
                field.clear()

    @property
    def counters(self) -> FieldView[Counter[None]]:
        return FieldView(self, "counter")

    @property
    def sets(self) -> FieldView[Set[None]]:
        return FieldView(self, "set")

    @property
    def maps(self) -> FieldView[Map[None]]:
        return FieldView(self, "map")

    @property
    def registers(self) -> FieldView[Register]:
        return FieldView(self, "register")

    @property
    def flags(self) -> FieldView[Flag]:
        return FieldView(self, "flag")

    def to_op(self) -> Any:
        updates = {f"{name}_{kind}": field_op for (name, kind), field in
                   [*self._fields.items(), *self._new.items()]
                   if (field_op := field.to_op()) is not None}
        op: dict[str, Any] = {}
        if self._removes:
            op["remove"] = [f"{name}_{kind}" for name, kind in self._removes]
        if updates:
            op["update"] = updates
        return op or None

    def clear(self) -> None:
        for field in self._fields.values():
            field.clear()
        self._new, self._removes = {}, {}


def _json_value(field: Staged) -> Any:
    if isinstance(field, Map):
        return field.json_value()
    if isinstance(field, _Elements):
        return sorted(field.value)
    return field.value


DATATYPES: dict[str, type[Datatype[Any]]] = {
    "counter": Counter, "set": Set, "gset": GSet, "hll": HyperLogLog, "map": Map,
}


def datatype_class(type_name: str) -> type[Datatype[Any]]:
    cls = DATATYPES.get(type_name)
    if cls is None:
        raise BadRequest(f"unknown data type {type_name!r}; expected one of {sorted(DATATYPES)}")
    return cls


def make_datatype(bucket: Any, key: str | None, fetched: DatatypeFetched) -> Datatype[Any]:
    """The typed object for a fetch: its class comes from the fetched type."""
    return datatype_class(fetched.type_name)(bucket, key, value=fetched.value,
                                             context=fetched.context)


def staged_op(dt: Datatype[Any]) -> Any:
    op = dt.to_op()
    if op is None:
        raise BadRequest(f"{dt.describe()} has no staged changes to store")
    return op
