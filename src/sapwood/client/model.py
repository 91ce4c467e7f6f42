"""The public object model shared by the embedded store and the HTTP clients.

An object is a key plus the siblings the store holds for it and the opaque causal context they came
with. Reading or changing a single value of an object that has several siblings first asks a
resolver to pick (or merge) one; writing it back with the fetched context replaces them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, cast, overload

from sapwood.core.errors import SapwoodError

if TYPE_CHECKING:
    from sapwood.client.buckets import AsyncBucket, Bucket

Term = str | int
Index = tuple[str, Term]
Link = tuple[str, str, str]  # (bucket, key, tag)
Resolver = Callable[[Sequence["Sibling"]], "Sibling"]
ReadT = TypeVar("ReadT")
WriteT = TypeVar("WriteT")

DEFAULT_CONTENT_TYPE = "application/octet-stream"
TEXT_CHARSET = "utf-8"
SIBLINGS_LISTED_IN_ERRORS = 10  # an error message names at most this many siblings


class SiblingsError(SapwoodError):
    """An object has several siblings and no resolver picked one; `siblings` holds them all."""

    status = 300

    def __init__(self, message: str, siblings: Sequence[Sibling] = ()) -> None:
        super().__init__(message)
        self.siblings = list(siblings)


class ClosedError(SapwoodError):
    """The store or client was closed; open a new one."""

    status = 503


# --- values -----------------------------------------------------------------------------------


def is_json_type(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def is_text_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("text/")


def encode_data(
    data: Any, content_type: str | None, charset: str | None = None
) -> tuple[bytes, str, str | None]:
    """(value, content type, charset) for a Python value.

    Without a content type: bytes stay bytes (application/octet-stream), str becomes text
    (text/plain, UTF-8 unless `charset` says otherwise) and anything else JSON (application/json).
    """
    if content_type is not None and is_json_type(content_type):
        return _json_bytes(data), content_type, None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), content_type or DEFAULT_CONTENT_TYPE, charset
    if isinstance(data, str):
        charset = charset or TEXT_CHARSET
        return data.encode(charset), content_type or "text/plain", charset
    if content_type is not None and content_type != DEFAULT_CONTENT_TYPE:
        raise TypeError(f"cannot store a {type(data).__name__} as {content_type}; "
                        "pass bytes, a str, or use application/json")
    return _json_bytes(data), "application/json", None


def _json_bytes(data: Any) -> bytes:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value is not JSON serialisable: {exc}") from None


def decode_data(value: bytes, content_type: str, charset: str | None) -> Any:
    """JSON content types decode to Python values, text/* to str, anything else stays bytes."""
    if is_json_type(content_type):
        return json.loads(value.decode(charset or "utf-8")) if value else None
    if is_text_type(content_type):
        return value.decode(charset or TEXT_CHARSET, errors="replace")
    return value


# --- siblings ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Sibling:
    """One version of a value with its metadata. `deleted` marks a tombstone sibling."""

    value: bytes = b""
    content_type: str = DEFAULT_CONTENT_TYPE
    charset: str | None = None
    content_encoding: str | None = None
    usermeta: dict[str, str] = field(default_factory=dict)
    indexes: set[Index] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)
    last_modified: datetime | None = None
    vtag: str | None = None
    deleted: bool = False

    @property
    def data(self) -> Any:
        return decode_data(self.value, self.content_type, self.charset)

    @data.setter
    def data(self, data: Any) -> None:
        # An explicit content type is kept when the new value fits it; text becomes JSON for
        # values that are not text.
        keep = None if self.content_type == DEFAULT_CONTENT_TYPE else self.content_type
        if keep is not None and is_text_type(keep) and not isinstance(data, str | bytes):
            keep = None
        self.value, self.content_type, self.charset = encode_data(data, keep, self.charset)

    def describe(self) -> str:
        state = "tombstone" if self.deleted else f"{self.content_type}, {len(self.value)} bytes"
        when = f", modified {self.last_modified.isoformat()}" if self.last_modified else ""
        return f"vtag {self.vtag or '?'} ({state}{when})"

    def copy(self) -> Sibling:
        return Sibling(self.value, self.content_type, self.charset, self.content_encoding,
                       dict(self.usermeta), set(self.indexes), list(self.links),
                       self.last_modified, self.vtag, self.deleted)


def make_sibling(
    data: Any = None,
    *,
    encoded_data: bytes | None = None,
    content_type: str | None = None,
    charset: str | None = None,
    content_encoding: str | None = None,
    usermeta: dict[str, str] | None = None,
    indexes: Iterable[Index] | None = None,
    links: Iterable[Link] | None = None,
) -> Sibling:
    if encoded_data is not None:
        value, ctype, cset = bytes(encoded_data), content_type or DEFAULT_CONTENT_TYPE, charset
    else:
        value, ctype, cset = encode_data(data, content_type, charset)
    return Sibling(value, ctype, cset, content_encoding, dict(usermeta or {}),
                   set(indexes or ()), list(links or ()))


# --- resolvers --------------------------------------------------------------------------------


def raise_on_siblings(siblings: Sequence[Sibling]) -> Sibling:
    """The default resolver: refuse to guess between values; the error lists the siblings.

    Tombstones do not count: a delete concurrent with one write loses to that write (otherwise
    re-creating a key right after deleting it would leave siblings with its own tombstone).
    """
    live = [s for s in siblings if not s.deleted]
    if len(live) == 1:
        return live[0]
    listed = live or list(siblings)
    raise SiblingsError(
        f"{len(listed)} siblings: " + "; ".join(
            s.describe() for s in listed[:SIBLINGS_LISTED_IN_ERRORS])
        + ("; ..." if len(listed) > SIBLINGS_LISTED_IN_ERRORS else "")
        + ". Set a resolver (bucket.resolver = ...) or pick one with obj.resolve(...)",
        siblings,
    )


def last_write_wins(siblings: Sequence[Sibling]) -> Sibling:
    """Pick the most recently modified live sibling (a tombstone only if nothing else is left).

    Equal times (HTTP dates have one-second resolution) go to the later sibling in the list.
    """
    live = [s for s in siblings if not s.deleted] or list(siblings)
    ranked = [(s.last_modified.timestamp() if s.last_modified else 0.0, i)
              for i, s in enumerate(live)]
    return live[max(ranked)[1]]


# --- objects ----------------------------------------------------------------------------------


def _none() -> None:
    return None


class SiblingField(Generic[ReadT, WriteT]):
    """An object attribute that stands for its single (resolved) sibling's attribute of the
    same name: reading it resolves siblings and gives empty() when the object holds nothing;
    setting it (unless read-only) stores convert(value) in the sibling, created if need be."""

    def __init__(self, empty: Callable[[], ReadT], convert: Callable[[WriteT], Any] | None = None,
                 *, writable: bool = True) -> None:
        self.empty = empty
        self.convert = convert
        self.writable = writable
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        # An alias (encoded_data = value) names the same field: the first name is the sibling's.
        if not self.name:
            self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, obj: ObjectBase, owner: type | None = None) -> ReadT: ...

    def __get__(self, obj: ObjectBase | None, owner: type | None = None) -> ReadT | Self:
        if obj is None:
            return self
        content = obj.content
        return self.empty() if content is None else cast(ReadT, getattr(content, self.name))

    def __set__(self, obj: ObjectBase, value: WriteT) -> None:
        if not self.writable:
            raise AttributeError(f"{self.name} is read-only")
        setattr(obj._writable(), self.name, value if self.convert is None else self.convert(value))


class BucketLike(Protocol):
    """What an object asks of its bucket."""

    def effective_resolver(self) -> Resolver | None: ...

    def describe(self) -> str: ...


class ObjectBase:
    """State and sibling handling of an object of `bucket`; `Object` and `AsyncObject` add
    the I/O."""

    def __init__(self, bucket: BucketLike, key: str | None, siblings: list[Sibling] | None = None,
                 context: str | None = None, *, exists: bool = False) -> None:
        self.bucket = bucket
        self.key = key
        self.siblings: list[Sibling] = siblings if siblings is not None else []
        self.context = context
        self.exists = exists
        self.resolver: Resolver | None = None

    # The bucket's resolver is used when the object has none of its own.
    def _bucket_resolver(self) -> Resolver | None:
        return self.bucket.effective_resolver()

    def _describe(self) -> str:
        return f"key {self.key!r} in {self.bucket.describe()}"

    def resolve(self, resolver: Resolver | None = None) -> Sibling:
        """Collapse the siblings to one using `resolver` (or the object's, or the bucket's)."""
        if len(self.siblings) == 1:
            return self.siblings[0]
        if not self.siblings:
            raise SiblingsError(f"{self._describe()} has no value to resolve")
        chosen_by = resolver or self.resolver or self._bucket_resolver() or raise_on_siblings
        try:
            chosen = chosen_by(list(self.siblings))
        except SiblingsError as exc:
            raise SiblingsError(f"{self._describe()} has {exc.message}", self.siblings) from None
        self.siblings = [chosen]
        return chosen

    @property
    def content(self) -> Sibling | None:
        """The single (resolved) sibling, or None when the object holds nothing."""
        return self.resolve() if self.siblings else None

    def _writable(self) -> Sibling:
        if not self.siblings:
            self.siblings.append(Sibling())
        return self.resolve()

    @property
    def has_siblings(self) -> bool:
        return len(self.siblings) > 1

    # The single (resolved) sibling's attributes; reading one of an empty object gives the
    # default, setting one creates the sibling.
    data = SiblingField[Any, Any](_none)  # decoded: JSON -> Python, text/* -> str, else bytes
    value = SiblingField[bytes | None, bytes](_none, bytes)  # the raw stored bytes
    encoded_data = value  # the Riak Python client's name
    content_type = SiblingField[str, str](lambda: DEFAULT_CONTENT_TYPE)
    charset = SiblingField[str | None, str | None](_none)
    content_encoding = SiblingField[str | None, str | None](_none)
    usermeta = SiblingField[dict[str, str], dict[str, str]](dict, dict)
    indexes = SiblingField[set[Index], Iterable[Index]](set, set)
    links = SiblingField[list[Link], Iterable[Link]](list, list)
    last_modified = SiblingField[datetime | None, None](_none, writable=False)
    vtag = SiblingField[str | None, None](_none, writable=False)

    def add_index(self, field: str, value: Term) -> Self:
        self._writable().indexes.add((field.lower(), value))
        return self

    def remove_index(self, field: str | None = None, value: Term | None = None) -> Self:
        """Remove one entry, every entry of a field, or (no arguments) every index entry."""
        content = self._writable()
        content.indexes = {
            (f, v) for f, v in content.indexes
            if not ((field is None or f == field.lower()) and (value is None or v == value))
        }
        return self

    def add_link(self, bucket: str, key: str, tag: str = "") -> Self:
        self._writable().links.append((bucket, key, tag))
        return self

    def load(self, fetched: Fetched) -> None:
        self.siblings = fetched.visible
        self.context = fetched.context
        self.exists = fetched.exists

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self._describe()} siblings={len(self.siblings)} "
                f"exists={self.exists}>")


class Object(ObjectBase):
    """An object of a synchronous store or client."""

    bucket: Bucket

    def store(self, **options: Any) -> Object:
        """Write this object's (single, resolved) value with its context; see Bucket.put."""
        return self.bucket.put(self, **options)

    def reload(self, **options: Any) -> Object:
        if self.key is None:
            raise SapwoodError("the object has no key yet; store it first")
        self.load(self.bucket.fetch(self.key, **options))
        return self

    def delete(self, **options: Any) -> bool:
        return self.bucket.delete(self, **options)


class AsyncObject(ObjectBase):
    """An object of an `AsyncClient`; its I/O methods are coroutines."""

    bucket: AsyncBucket

    async def store(self, **options: Any) -> AsyncObject:
        return await self.bucket.put(self, **options)

    async def reload(self, **options: Any) -> AsyncObject:
        if self.key is None:
            raise SapwoodError("the object has no key yet; store it first")
        self.load(await self.bucket.fetch(self.key, **options))
        return self

    async def delete(self, **options: Any) -> bool:
        return await self.bucket.delete(self, **options)


# --- results ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Fetched:
    """What a transport read: the siblings (tombstones included) and the causal context."""

    siblings: list[Sibling]
    context: str | None

    @property
    def exists(self) -> bool:
        return any(not s.deleted for s in self.siblings)

    @property
    def visible(self) -> list[Sibling]:
        """The siblings an object shows: none when only tombstones were found."""
        return self.siblings if self.exists else []


@dataclass(slots=True)
class IndexPage:
    """One page of a 2i query. `terms` holds (term, key) pairs when return_terms was asked for."""

    keys: list[str]
    terms: list[tuple[Term, str]] | None = None
    continuation: str | None = None

    @property
    def has_next_page(self) -> bool:
        return self.continuation is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class BucketTypeInfo:
    name: str
    active: bool
    props: dict[str, Any]

    @property
    def status(self) -> str:
        return "active" if self.active else "created"
