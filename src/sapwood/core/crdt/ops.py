"""Data type operations: Riak's JSON op shapes parsed into typed, validated op values.

Every limit an op can hit is checked here, before any state is touched, so a rejected op is a
BadRequest that changed nothing. Strings become UTF-8 bytes (surrogateescape, so values read back
from `value()` round-trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sapwood.core.errors import BadRequest

MAX_SET_ELEMENT_BYTES = 64 * 1024
MAX_REGISTER_BYTES = 1024 * 1024
MAX_FIELD_NAME_BYTES = 1024
# Elements, registers, flags, counters and field removes in one op, nested maps included.
MAX_OP_ELEMENTS = 10_000
MAX_MAP_DEPTH = 8
MAX_COUNTER_DELTA = 2**63 - 1

MAP_FIELD_TYPES = ("counter", "set", "register", "flag", "map")


class FieldKey(NamedTuple):
    """A map field: fields with one name but different types are different fields."""

    name: str
    type: str

    @property
    def json_name(self) -> str:
        return f"{self.name}_{self.type}"


@dataclass(frozen=True, slots=True)
class CounterOp:
    """Add `delta` (negative to decrement)."""

    delta: int


@dataclass(frozen=True, slots=True)
class SetOp:
    """Removes are applied before adds, so an element both added and removed stays (add wins)."""

    adds: tuple[bytes, ...] = ()
    removes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class HllOp:
    adds: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RegisterOp:
    value: bytes


@dataclass(frozen=True, slots=True)
class FlagOp:
    enable: bool


@dataclass(frozen=True, slots=True)
class MapOp:
    """Removes are applied before updates: a field removed and updated keeps only the update."""

    removes: tuple[FieldKey, ...] = ()
    updates: tuple[tuple[FieldKey, Op], ...] = ()


Op = CounterOp | SetOp | HllOp | RegisterOp | FlagOp | MapOp


class _Budget:
    """Counts the elements of one op across nesting so a huge op fails before it is applied."""

    def __init__(self) -> None:
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > MAX_OP_ELEMENTS:
            raise BadRequest(f"operation has more than {MAX_OP_ELEMENTS} elements")


def parse_op(type_name: str, body: Any) -> Op:
    """Riak JSON op for a data type of `type_name` -> typed op; wrong shapes -> BadRequest.

    A top-level "context" key is ignored: the caller extracts and decodes it.
    """
    if isinstance(body, dict) and "context" in body:
        body = {k: v for k, v in body.items() if k != "context"}
    return _parse(type_name, body, _Budget(), 0)


def parse_field_name(name: Any) -> FieldKey:
    """`"likes_counter"` -> FieldKey("likes", "counter"); the suffix names the field's type."""
    if not isinstance(name, str):
        raise BadRequest(f"map field name must be a string, got {_kind(name)}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FIELD_NAME_BYTES:
        raise BadRequest(f"map field name is longer than {MAX_FIELD_NAME_BYTES} bytes")
    base, _, kind = name.rpartition("_")
    if not base or kind not in MAP_FIELD_TYPES:
        raise BadRequest(
            f"map field {name!r} must be a name ending in one of "
            + ", ".join(f"_{t}" for t in MAP_FIELD_TYPES)
        )
    return FieldKey(base, kind)


def _parse(type_name: str, body: Any, budget: _Budget, depth: int) -> Op:
    if type_name == "counter":
        return _parse_counter(body, budget)
    if type_name in ("set", "gset"):
        return _parse_set(body, budget, allow_remove=type_name == "set", type_name=type_name)
    if type_name == "hll":
        return HllOp(_parse_set(body, budget, allow_remove=False, type_name="hll").adds)
    if type_name == "register":
        return _parse_register(body, budget)
    if type_name == "flag":
        return _parse_flag(body, budget)
    if type_name == "map":
        return _parse_map(body, budget, depth)
    raise BadRequest(f"unknown data type {type_name!r}")


def _parse_counter(body: Any, budget: _Budget) -> CounterOp:
    budget.spend(1)
    if isinstance(body, dict):
        keys = set(body)
        if len(keys) != 1 or not keys <= {"increment", "decrement"}:
            raise BadRequest('counter op must be {"increment": N}, {"decrement": N} or an integer')
        (key,) = keys
        amount = _integer(body[key])
        return CounterOp(amount if key == "increment" else -amount)
    return CounterOp(_integer(body))


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"counter amount must be an integer, got {_kind(value)}")
    if abs(value) > MAX_COUNTER_DELTA:
        raise BadRequest(f"counter amount is beyond +/-{MAX_COUNTER_DELTA}")
    return value


def _parse_set(body: Any, budget: _Budget, allow_remove: bool, type_name: str) -> SetOp:
    allowed = {"add", "add_all", "remove", "remove_all"} if allow_remove else {"add", "add_all"}
    shapes = " / ".join(f'{{"{k}": ...}}' for k in sorted(allowed))
    if not isinstance(body, dict) or not body:
        raise BadRequest(f"{type_name} op must be an object: {shapes}")
    unknown = set(body) - allowed
    if unknown:
        raise BadRequest(f"{type_name} op has unknown keys {sorted(unknown)}; expected {shapes}")
    adds = _elements(body, "add", "add_all", budget)
    removes = _elements(body, "remove", "remove_all", budget) if allow_remove else ()
    return SetOp(adds, removes)


def _elements(body: dict[str, Any], one: str, many: str, budget: _Budget) -> tuple[bytes, ...]:
    items: list[Any] = []
    if one in body:
        items.append(body[one])
    if many in body:
        if not isinstance(body[many], list):
            raise BadRequest(f'"{many}" must be a list, got {_kind(body[many])}')
        items.extend(body[many])
    budget.spend(len(items))
    elements = [_to_bytes(item, "set element", MAX_SET_ELEMENT_BYTES) for item in items]
    return tuple(dict.fromkeys(elements))


def _to_bytes(value: Any, what: str, limit: int) -> bytes:
    if isinstance(value, str):
        try:
            value = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise BadRequest(f"{what} is not valid text") from exc
    if not isinstance(value, bytes):
        raise BadRequest(f"{what} must be a string, got {_kind(value)}")
    if len(value) > limit:
        raise BadRequest(f"{what} is larger than {limit} bytes")
    return value


def _parse_register(body: Any, budget: _Budget) -> RegisterOp:
    budget.spend(1)
    return RegisterOp(_to_bytes(body, "register value", MAX_REGISTER_BYTES))


def _parse_flag(body: Any, budget: _Budget) -> FlagOp:
    budget.spend(1)
    if body not in ("enable", "disable"):
        raise BadRequest(f'flag op must be "enable" or "disable", got {body!r:.100}')
    return FlagOp(body == "enable")


def _parse_map(body: Any, budget: _Budget, depth: int) -> MapOp:
    if depth >= MAX_MAP_DEPTH:
        raise BadRequest(f"maps nest deeper than {MAX_MAP_DEPTH} levels")
    shape = 'map op must be an object: {"remove": [fields], "update": {field: op}}'
    if not isinstance(body, dict) or not body:
        raise BadRequest(shape)
    unknown = set(body) - {"remove", "update"}
    if unknown:
        raise BadRequest(f"map op has unknown keys {sorted(unknown)}; {shape}")
    removes = _field_removes(body.get("remove", []), budget)
    updates_body = body.get("update", {})
    if not isinstance(updates_body, dict):
        raise BadRequest(f'"update" must be an object of field: op, got {_kind(updates_body)}')
    if not removes and not updates_body:
        raise BadRequest("map op removes and updates nothing")
    updates = []
    for name, sub in updates_body.items():
        field = parse_field_name(name)
        updates.append((field, _parse(field.type, sub, budget, depth + 1)))
    return MapOp(removes, tuple(updates))


def _field_removes(raw: Any, budget: _Budget) -> tuple[FieldKey, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list):
        raise BadRequest(f'"remove" must be a list of field names, got {_kind(raw)}')
    budget.spend(len(names))
    return tuple(dict.fromkeys(parse_field_name(name) for name in names))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
