"""A cheaper constructor for the frozen, slotted dataclasses the cores create per event.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`, looked up
anew for every field, to get past its own `__setattr__` guard. Messages, effects and requests are
built several times per client request, and those lookups were ~8% of a single-node GET's core
time. `fast_init` replaces the `__init__` with one that calls each slot's descriptor directly;
instances stay frozen (assignment after construction still raises), equal, hashable and picklable
exactly as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
_UNSET = object()  # a default_factory field's argument when the caller gave none


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, placed above `@dataclass(frozen=True, slots=True)`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init: {cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {"_UNSET": _UNSET}
    params_src: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(f"fast_init: field {cls.__name__}.{f.name} needs the dataclass init")
        namespace[f"_set_{f.name}"] = _slot_setter(cls, f.name)
        if f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params_src.append(f"{f.name}=_UNSET")
            body.append(f"    if {f.name} is _UNSET: {f.name} = _factory_{f.name}()")
        elif f.default is dataclasses.MISSING:
            params_src.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params_src.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params_src)}):\n" + ("\n".join(body) or "    pass")
    exec(source, namespace)  # what dataclasses itself does to build an __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


def _slot_setter(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None and hasattr(descriptor, "__set__"):
            return descriptor.__set__
    raise TypeError(f"fast_init: no slot for {cls.__name__}.{name}")
